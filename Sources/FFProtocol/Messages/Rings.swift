/// What a `mapRing` request asks for.
public enum RingTarget: UInt8, Sendable, CaseIterable {
    /// The session's doorbell (an eventfd, no mapping; handle 0).
    case doorbell = 0
    /// A CQ's completion ring.
    case cq = 1
    /// A QP's send ring and, without an SRQ, its receive ring.
    case qp = 2
    /// An SRQ's receive ring.
    case srq = 3
}

/// map_ring (fast path only): the rings of one object, or the session's doorbell. Body 8 bytes: target u8,
/// reserved 3, handle u32 (0 with the doorbell, non-zero otherwise).
public struct MapRingRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = MapRingReply
    /// `mapRing`.
    public static let kind = MessageKind(0x0070, "mapRing")
    /// The reply carries one descriptor.
    public static var replyDescriptors: UInt8 { 1 }
    /// What to map.
    public var target: RingTarget
    /// The object (0 for the doorbell).
    public var handle: UInt32

    /// Creates the request.
    public init(target: RingTarget, handle: UInt32) {
        self.target = target
        self.handle = handle
    }

    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u8(target.rawValue)
        w.reserved(3)
        try w.bounded(handle, target == .doorbell ? 0...0 : 1...UInt32.max, "mapRing.handle")
    }

    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        let at = r.offset
        let raw = try r.u8("mapRing.target")
        guard let target = RingTarget(rawValue: raw) else {
            throw WireError(.valueOutOfRange(UInt64(raw)), field: "mapRing.target", offset: at)
        }
        self.target = target
        try r.reserved(3, "mapRing.reserved")
        handle = try r.bounded(UInt32.self, target == .doorbell ? 0...0 : 1...UInt32.max, "mapRing.handle")
    }
}

/// map_ring's reply (+ 1 descriptor: the memfd of the mapping, or the doorbell eventfd). Body 8 bytes: the size to
/// map in bytes (0 for the doorbell); the control page at offset 0 describes the rings.
public struct MapRingReply: WireCodable {
    /// Bytes to map from offset 0 (a multiple of 4096), 0 for the doorbell.
    public var size: UInt64

    /// Creates the reply.
    public init(size: UInt64) { self.size = size }

    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        guard size % 4096 == 0, size <= 1 << 40 else {
            throw WireError(.valueOutOfRange(size), field: "mapRingReply.size", offset: w.offset)
        }
        w.u64(size)
    }

    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        let at = r.offset
        size = try r.u64("mapRingReply.size")
        guard size % 4096 == 0, size <= 1 << 40 else {
            throw WireError(.valueOutOfRange(size), field: "mapRingReply.size", offset: at)
        }
    }
}
