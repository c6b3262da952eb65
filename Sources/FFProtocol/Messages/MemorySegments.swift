/// One piece of a `RegMRSegmentsRequest`: `length` bytes at `memfdOffset` of the request's descriptor number
/// `descriptor`.
public struct MemorySegment: Sendable, Equatable {
    /// Which of the request's descriptors (0-based, in SCM_RIGHTS order) holds the bytes.
    public var descriptor: UInt8
    /// Byte offset of the segment's first byte inside that descriptor's file.
    public var memfdOffset: UInt64
    /// Length in bytes, at least 1.
    public var length: UInt64

    /// Creates a segment.
    public init(descriptor: UInt8, memfdOffset: UInt64, length: UInt64) {
        self.descriptor = descriptor
        self.memfdOffset = memfdOffset
        self.length = length
    }

    /// Size of one segment on the wire.
    public static let size = 24
}

/// reg_mr over several memfds (kind `regMRSegments`, capability `memorySegments`): the buffer's bytes, in order, are
/// the segments' bytes one after the other, so a registration can reuse pages that earlier registrations already
/// moved into memfds of their own and add new memfds for the rest.
///
/// The codec checks the structure: 1…`WireLimits.maxMRSegments` descriptors and segments, every segment naming a
/// descriptor that came with the message and every descriptor used, no segment empty or wrapping around 2^64, and
/// the lengths adding up to exactly `length`. Where the pages lie in the files (page alignment, file sizes, pages
/// used twice) is the router's check.
public struct RegMRSegmentsRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = RegMRReply
    /// `regMRSegments`.
    public static let kind = MessageKind(0x0014, "regMRSegments")
    /// Descriptors with the request (the memory's memfds).
    public static var descriptors: ClosedRange<UInt8> { 1...UInt8(WireLimits.maxMRSegments) }
    /// Protection domain.
    public var pd: PDHandle
    /// Access rights.
    public var access: AccessFlags
    /// The buffer's address in the app (becomes the MR's iova).
    public var address: UInt64
    /// Length in bytes, at least 1: the sum of the segments' lengths.
    public var length: UInt64
    /// Descriptors sent with the message (SCM_RIGHTS).
    public var descriptorCount: UInt8
    /// The buffer's bytes, in address order.
    public var segments: [MemorySegment]

    /// Creates the request.
    public init(pd: PDHandle, access: AccessFlags, address: UInt64, length: UInt64, descriptorCount: UInt8,
                segments: [MemorySegment]) {
        self.pd = pd
        self.access = access
        self.address = address
        self.length = length
        self.descriptorCount = descriptorCount
        self.segments = segments
    }

    /// The one-descriptor request as a list of one segment.
    public init(_ single: RegMRRequest) {
        self.init(pd: single.pd, access: single.access, address: single.address, length: single.length,
                  descriptorCount: 1,
                  segments: [MemorySegment(descriptor: 0, memfdOffset: single.memfdOffset, length: single.length)])
    }

    /// Appends 32 + 24 × segments bytes; throws where a decoder would refuse.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(pd, "regMRSegments.pd")
        try w.options(access, supported: .supported, "regMRSegments.access")
        w.u64(address)
        let lengthAt = w.offset
        w.u64(length)
        try w.bounded(descriptorCount, 1...UInt8(WireLimits.maxMRSegments), "regMRSegments.descriptorCount")
        w.reserved(1)
        try Self.checkCount(segments.count, at: w.offset)
        w.u16(UInt16(segments.count))
        w.reserved(4)
        for segment in segments {
            w.u8(segment.descriptor)
            w.reserved(7)
            w.u64(segment.memfdOffset)
            w.u64(segment.length)
        }
        try Self.validate(address: address, length: length, descriptorCount: descriptorCount, segments: segments,
                          lengthAt: lengthAt,
                          segmentsAt: w.offset - segments.count * MemorySegment.size)
    }

    /// Reads a request.
    public init(from r: inout WireReader) throws(WireError) {
        pd = try r.handle(PDHandle.self, "regMRSegments.pd")
        access = try r.options(AccessFlags.self, supported: .supported, "regMRSegments.access")
        address = try r.u64("regMRSegments.address")
        let lengthAt = r.offset
        length = try r.u64("regMRSegments.length")
        descriptorCount = try r.bounded(UInt8.self, 1...UInt8(WireLimits.maxMRSegments),
                                        "regMRSegments.descriptorCount")
        try r.reserved(1, "regMRSegments.reserved")
        let countAt = r.offset
        let count = Int(try r.u16("regMRSegments.segmentCount"))
        try Self.checkCount(count, at: countAt)
        try r.reserved(4, "regMRSegments.reserved")
        let segmentsAt = r.offset
        var segments: [MemorySegment] = []
        segments.reserveCapacity(count)
        for _ in 0..<count {
            let descriptor = try r.u8("regMRSegments.segment.descriptor")
            try r.reserved(7, "regMRSegments.segment.reserved")
            let offset = try r.u64("regMRSegments.segment.memfdOffset")
            segments.append(MemorySegment(descriptor: descriptor, memfdOffset: offset,
                                          length: try r.u64("regMRSegments.segment.length")))
        }
        self.segments = segments
        try Self.validate(address: address, length: length, descriptorCount: descriptorCount, segments: segments,
                          lengthAt: lengthAt,
                          segmentsAt: segmentsAt)
    }

    /// 1…`WireLimits.maxMRSegments` segments, checked before any is read.
    private static func checkCount(_ count: Int, at offset: Int) throws(WireError) {
        guard count <= WireLimits.maxMRSegments else {
            throw WireError(.countTooLarge(count: count, max: WireLimits.maxMRSegments),
                            field: "regMRSegments.segmentCount", offset: offset)
        }
        guard count >= 1 else {
            throw WireError(.valueOutOfRange(0), field: "regMRSegments.segmentCount", offset: offset)
        }
    }

    /// The structural rules, the same for encode and decode; every sum is overflow-checked.
    private static func validate(address: UInt64, length: UInt64, descriptorCount: UInt8, segments: [MemorySegment],
                                 lengthAt: Int,
                                 segmentsAt: Int) throws(WireError) {
        guard length >= 1, length <= UInt64.max - address else {
            throw WireError(.valueOutOfRange(length), field: "regMRSegments.length", offset: lengthAt)
        }
        var used = [Bool](repeating: false, count: Int(descriptorCount))
        var total: UInt64 = 0
        for (i, segment) in segments.enumerated() {
            let at = segmentsAt + i * MemorySegment.size
            guard Int(segment.descriptor) < used.count else {
                throw WireError(.valueOutOfRange(UInt64(segment.descriptor)), field: "regMRSegments.segment.descriptor",
                                offset: at)
            }
            used[Int(segment.descriptor)] = true
            guard segment.length >= 1, segment.length <= UInt64.max - segment.memfdOffset else {
                throw WireError(.valueOutOfRange(segment.length), field: "regMRSegments.segment.length",
                                offset: at + 16)
            }
            let (sum, overflow) = total.addingReportingOverflow(segment.length)
            guard !overflow, sum <= length else {
                throw WireError(.valueOutOfRange(segment.length), field: "regMRSegments.segment.length",
                                offset: at + 16)
            }
            total = sum
        }
        guard total == length else {
            throw WireError(.valueOutOfRange(length), field: "regMRSegments.length", offset: lengthAt)
        }
        if let unused = used.firstIndex(of: false) {
            throw WireError(.valueOutOfRange(UInt64(unused)), field: "regMRSegments.descriptorCount",
                            offset: lengthAt + 8)
        }
    }
}
