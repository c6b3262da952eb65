/// Appends little-endian fields to a growing byte array; bounds are checked so an encoder never emits
/// something the decoder would refuse.
public struct WireWriter {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer, reserving `capacity` bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Offset of the next byte to be written.
    public var offset: Int { bytes.count }

    /// Appends an unsigned integer in little-endian order.
    public mutating func write<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        for i in 0..<MemoryLayout<T>.size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    /// Appends a `u8`.
    public mutating func u8(_ v: UInt8) { write(v) }
    /// Appends a `u16`.
    public mutating func u16(_ v: UInt16) { write(v) }
    /// Appends a `u32`.
    public mutating func u32(_ v: UInt32) { write(v) }
    /// Appends a `u64`.
    public mutating func u64(_ v: UInt64) { write(v) }
    /// Appends an `i32` (two's complement).
    public mutating func i32(_ v: Int32) { write(UInt32(bitPattern: v)) }
    /// Appends a boolean as a `u8` 0 or 1.
    public mutating func bool(_ v: Bool) { write(UInt8(v ? 1 : 0)) }
    /// Appends `count` zero bytes.
    public mutating func reserved(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
    /// Appends raw bytes verbatim.
    public mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }

    /// Appends an `i32` that must not be negative (mirrors `WireReader.nonNegativeI32`).
    public mutating func nonNegativeI32(_ v: Int32, _ field: String) throws(WireError) {
        guard v >= 0 else {
            throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: v))), field: field, offset: offset)
        }
        i32(v)
    }

    /// Appends a `u16` count after checking it against `max`.
    public mutating func count16(_ n: Int, max: Int, _ field: String) throws(WireError) {
        guard n <= max else { throw WireError(.countTooLarge(count: n, max: max), field: field, offset: offset) }
        u16(UInt16(n))
    }

    /// Appends a `u32` count after checking it against `min` (value out of range) and `max` (count too large).
    public mutating func count32(_ n: Int, min: Int = 0, max: Int, _ field: String) throws(WireError) {
        guard n >= min else { throw WireError(.valueOutOfRange(UInt64(n)), field: field, offset: offset) }
        guard n <= max else { throw WireError(.countTooLarge(count: n, max: max), field: field, offset: offset) }
        u32(UInt32(n))
    }

    /// Appends a bit set after checking that it only uses `allowed` bits.
    public mutating func bits<T: FixedWidthInteger & UnsignedInteger>(_ v: T, allowed: T,
                                                                      _ field: String) throws(WireError) {
        guard v & ~allowed == 0 else { throw WireError(.valueOutOfRange(UInt64(v)), field: field, offset: offset) }
        write(v)
    }

    /// Appends a value that must lie in `range` (e.g. a 20-bit flow label).
    public mutating func bounded<T: FixedWidthInteger & UnsignedInteger>(_ v: T, _ range: ClosedRange<T>,
        _ field: String) throws(WireError) {
        guard range.contains(v) else { throw WireError(.valueOutOfRange(UInt64(v)), field: field, offset: offset) }
        write(v)
    }

    /// Appends a string as `u16` length + UTF-8 bytes after checking its bound and that it has no NUL.
    public mutating func string(_ s: String, max: Int, _ field: String) throws(WireError) {
        let utf8 = Array(s.utf8)
        guard utf8.count <= max else {
            throw WireError(.stringTooLong(length: utf8.count, max: max), field: field, offset: offset)
        }
        guard !utf8.contains(0) else { throw WireError(.invalidString, field: field, offset: offset) }
        u16(UInt16(utf8.count))
        raw(utf8)
    }
}

extension WireReader {
    /// Reads a value that must lie in `range`.
    public mutating func bounded<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, _ range: ClosedRange<T>,
        _ field: String) throws(WireError) -> T {
        let at = offset
        let v = try read(T.self, field)
        guard range.contains(v) else { throw WireError(.valueOutOfRange(UInt64(v)), field: field, offset: at) }
        return v
    }
}
