/// Reads little-endian fields from a datagram, checking every bound and naming the field on failure.
///
/// All reads are bounds-checked; none traps on hostile input.
public struct WireReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    /// Creates a reader over `bytes[start..<end]`; offsets reported in errors stay absolute.
    public init(_ bytes: [UInt8], start: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.position = start
        self.end = min(end ?? bytes.count, bytes.count)
    }

    /// Absolute offset of the next byte to read.
    public var offset: Int { position }

    /// Number of bytes left before the end.
    public var remaining: Int { end - position }

    /// Builds an error located at the current offset.
    public func error(_ reason: WireError.Reason, _ field: String) -> WireError {
        WireError(reason, field: field, offset: position)
    }

    mutating func take(_ count: Int, _ field: String) throws(WireError) -> Int {
        guard count <= end - position else { throw WireError(.truncated, field: field, offset: position) }
        let start = position
        position += count
        return start
    }

    /// Reads an unsigned little-endian integer.
    public mutating func read<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, _ field: String) throws(WireError)
        -> T {
        let size = MemoryLayout<T>.size
        let start = try take(size, field)
        var value: T = 0
        for i in 0..<size { value |= T(bytes[start + i]) << (8 * i) }
        return value
    }

    /// Reads a `u8`.
    public mutating func u8(_ field: String) throws(WireError) -> UInt8 { try read(UInt8.self, field) }
    /// Reads a `u16`.
    public mutating func u16(_ field: String) throws(WireError) -> UInt16 { try read(UInt16.self, field) }
    /// Reads a `u32`.
    public mutating func u32(_ field: String) throws(WireError) -> UInt32 { try read(UInt32.self, field) }
    /// Reads a `u64`.
    public mutating func u64(_ field: String) throws(WireError) -> UInt64 { try read(UInt64.self, field) }

    /// Reads an `i32` (two's complement).
    public mutating func i32(_ field: String) throws(WireError) -> Int32 {
        Int32(bitPattern: try u32(field))
    }

    /// Reads an `i32` that must not be negative (verbs' `int` limits and counts).
    public mutating func nonNegativeI32(_ field: String) throws(WireError) -> Int32 {
        let at = position
        let v = try i32(field)
        guard v >= 0 else { throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: v))), field: field, offset: at) }
        return v
    }

    /// Reads a `u8` boolean: 0 or 1, anything else is rejected.
    public mutating func bool(_ field: String) throws(WireError) -> Bool {
        let at = position
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let v: throw WireError(.valueOutOfRange(UInt64(v)), field: field, offset: at)
        }
    }

    /// Reads `count` reserved bytes, which must all be zero.
    public mutating func reserved(_ count: Int, _ field: String) throws(WireError) {
        let start = try take(count, field)
        for i in start..<(start + count) where bytes[i] != 0 {
            throw WireError(.nonZeroReserved, field: field, offset: start)
        }
    }

    /// Reads `count` raw bytes.
    public mutating func raw(_ count: Int, _ field: String) throws(WireError) -> [UInt8] {
        let start = try take(count, field)
        return Array(bytes[start..<(start + count)])
    }

    /// Reads a `u32` and maps it through a `RawRepresentable` enum; unknown values are rejected.
    public mutating func enumeration<E: RawRepresentable>(_: E.Type, _ field: String) throws(WireError) -> E
    where E.RawValue: FixedWidthInteger & UnsignedInteger {
        let at = position
        let raw = try read(E.RawValue.self, field)
        guard let value = E(rawValue: raw) else {
            throw WireError(.valueOutOfRange(UInt64(raw)), field: field, offset: at)
        }
        return value
    }

    /// Reads a bit set whose bits must all lie within `allowed`.
    public mutating func bits<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, allowed: T,
                                                                      _ field: String) throws(WireError) -> T {
        let at = position
        let raw = try read(T.self, field)
        guard raw & ~allowed == 0 else { throw WireError(.valueOutOfRange(UInt64(raw)), field: field, offset: at) }
        return raw
    }

    /// Reads a count (`u16`) and checks it against `max`.
    public mutating func count16(max: Int, _ field: String) throws(WireError) -> Int {
        let at = position
        let n = Int(try u16(field))
        guard n <= max else { throw WireError(.countTooLarge(count: n, max: max), field: field, offset: at) }
        return n
    }

    /// Reads a count (`u32`) and checks it against `min` (value out of range) and `max` (count too large).
    public mutating func count32(min: Int = 0, max: Int, _ field: String) throws(WireError) -> Int {
        let at = position
        let n = Int(try u32(field))
        guard n >= min else { throw WireError(.valueOutOfRange(UInt64(n)), field: field, offset: at) }
        guard n <= max else { throw WireError(.countTooLarge(count: n, max: max), field: field, offset: at) }
        return n
    }

    /// Reads a string: `u16` byte length (at most `max`), then that many UTF-8 bytes without NUL.
    public mutating func string(max: Int, _ field: String) throws(WireError) -> String {
        let at = position
        let length = Int(try u16(field))
        guard length <= max else { throw WireError(.stringTooLong(length: length, max: max), field: field, offset: at) }
        let start = try take(length, field)
        let slice = bytes[start..<(start + length)]
        guard !slice.contains(0), let s = String(validating: slice, as: UTF8.self) else {
            throw WireError(.invalidString, field: field, offset: start)
        }
        return s
    }

    /// Checks that the body has been read completely.
    public func finish(_ field: String) throws(WireError) {
        guard position == end else {
            throw WireError(.trailingBytes(count: end - position), field: field, offset: position)
        }
    }
}
