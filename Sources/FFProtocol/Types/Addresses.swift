/// A 128-bit InfiniBand/RoCE global identifier, carried as its 16 bytes in network order.
public struct GID: Hashable, Sendable, CustomStringConvertible {
    /// The 16 bytes, most significant first (the layout of `union ibv_gid.raw`).
    public let bytes: [UInt8]

    /// Wraps 16 bytes; returns nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// The all-zero GID.
    public static let zero = GID(bytes: [UInt8](repeating: 0, count: 16))!

    /// The IPv4-mapped GID `::ffff:a.b.c.d` that RoCE v2 uses for an IPv4 address (a pod's virtual GID).
    public init(ipv4Mapped address: IPv4Address) {
        bytes = [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + address.bytes
    }

    /// The IPv4 address if this GID is IPv4-mapped (`::ffff:a.b.c.d`), else nil.
    public var ipv4Mapped: IPv4Address? {
        guard bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return nil }
        return IPv4Address(bytes[12], bytes[13], bytes[14], bytes[15])
    }

    /// `::ffff:a.b.c.d` for mapped GIDs, else eight colon-separated hex groups.
    public var description: String {
        if let v4 = ipv4Mapped { return "::ffff:\(v4)" }
        return stride(from: 0, to: 16, by: 2)
            .map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }
}

/// An IPv4 address (a pod's vip or a node's pip), carried as 4 bytes in network order.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The 4 bytes, most significant first.
    public let bytes: [UInt8]

    /// Builds `a.b.c.d`.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) { bytes = [a, b, c, d] }

    /// Parses dotted-quad text such as `10.1.2.3`; returns nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt8(p) else {
                return nil
            }
            out.append(v)
        }
        bytes = out
    }

    /// Dotted-quad text.
    public var description: String { bytes.map(String.init).joined(separator: ".") }
}

extension GID: WireCodable {
    /// Appends the 16 bytes.
    public func encode(to writer: inout WireWriter) throws(WireError) { writer.raw(bytes) }
    /// Reads 16 bytes; every value is a valid GID.
    public init(from reader: inout WireReader) throws(WireError) { bytes = try reader.raw(16, "gid") }
}

extension IPv4Address: WireCodable {
    /// Appends the 4 bytes.
    public func encode(to writer: inout WireWriter) throws(WireError) { writer.raw(bytes) }
    /// Reads 4 bytes; every value is a valid address.
    public init(from reader: inout WireReader) throws(WireError) { bytes = try reader.raw(4, "ipv4") }
}
