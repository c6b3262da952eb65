import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// A 128-bit global identifier (`union ibv_gid`). On RoCEv2 an IPv4 address appears as `::ffff:a.b.c.d`.
public struct GID: Hashable, Sendable, CustomStringConvertible {
    /// The 16 bytes in network order.
    public private(set) var bytes: [UInt8]

    /// The all-zero GID, which libibverbs uses for an empty table slot.
    public static let zero = GID(unchecked: [UInt8](repeating: 0, count: 16))

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Creates a GID from exactly 16 bytes in network order; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// The IPv4-mapped GID `::ffff:a.b.c.d` that RoCEv2 uses for an IPv4 address.
    public init(ipv4 octets: (UInt8, UInt8, UInt8, UInt8)) {
        self.bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets.0, octets.1, octets.2, octets.3]
    }

    /// Parses dotted IPv4 text ("10.0.2.15") into its IPv4-mapped GID; nil when it is not an IPv4 address.
    public init?(ipv4 text: String) {
        var addr = in_addr()
        guard inet_pton(AF_INET, text, &addr) == 1 else { return nil }
        let v = UInt32(bigEndian: addr.s_addr)
        self.init(ipv4: (UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)))
    }

    /// Parses a GID written as an IPv6 address ("::ffff:10.0.2.15", "fe80::1") or as the sysfs form of eight
    /// groups of four hex digits ("fe80:0000:…"); nil for anything else.
    public init?(_ text: String) {
        var addr = in6_addr()
        guard inet_pton(AF_INET6, text, &addr) == 1 else { return nil }
        self.bytes = withUnsafeBytes(of: &addr) { Array($0) }
    }

    init(_ raw: ibv_gid) {
        var raw = raw
        self.bytes = withUnsafeBytes(of: &raw.raw) { Array($0) }
    }

    var raw: ibv_gid {
        var gid = ibv_gid()
        withUnsafeMutableBytes(of: &gid.raw) { $0.copyBytes(from: bytes) }
        return gid
    }

    /// True for `::ffff:a.b.c.d`.
    public var isIPv4Mapped: Bool {
        bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
    }

    /// The IPv4 address in dotted form when this GID is IPv4-mapped.
    public var ipv4Address: String? {
        guard isIPv4Mapped else { return nil }
        return "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])"
    }

    /// The sysfs and `ibv_devinfo -v` form: eight groups of four lower-case hex digits.
    public var description: String {
        stride(from: 0, to: 16, by: 2).map { i in
            let group = UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])
            let hex = String(group, radix: 16)
            return String(repeating: "0", count: 4 - hex.count) + hex
        }.joined(separator: ":")
    }
}

/// The kind of a GID table entry (`enum ibv_gid_type`).
public enum GIDType: UInt32, Sendable, CustomStringConvertible {
    /// InfiniBand.
    case ib = 0
    /// RoCE v1 (Ethernet link layer, no IP header).
    case roceV1 = 1
    /// RoCE v2 (UDP/IP encapsulation; the type FreeFlow uses).
    case roceV2 = 2

    /// "IB", "RoCE v1", "RoCE v2".
    public var description: String {
        switch self {
        case .ib: "IB"
        case .roceV1: "RoCE v1"
        case .roceV2: "RoCE v2"
        }
    }
}

/// One valid entry of a port's GID table (`struct ibv_gid_entry`).
public struct GIDEntry: Hashable, Sendable {
    /// The GID itself.
    public var gid: GID
    /// Its index in the port's table (the `sgid_index` of an address vector).
    public var index: Int
    /// The port it belongs to.
    public var port: Int
    /// RoCE v1, RoCE v2 or IB; nil for a type this library does not know.
    public var type: GIDType?
    /// The ifindex of the net device the GID comes from, 0 for none.
    public var netdevIndex: UInt32
}
