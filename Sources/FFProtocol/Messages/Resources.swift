/// query_port: which port (1-based).
public struct QueryPortRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = PortAttributes
    /// `queryPort`.
    public static let kind = MessageKind(0x0003, "queryPort")
    /// Port number, 1-based.
    public var port: UInt8
    /// Creates the request.
    public init(port: UInt8) { self.port = port }
    /// Appends 4 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.bounded(port, 1...UInt8.max, "queryPort.port")
        w.reserved(3)
    }
    /// Reads 4 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        port = try r.bounded(UInt8.self, 1...UInt8.max, "queryPort.port")
        try r.reserved(3, "queryPort.reserved")
    }
}

/// query_gid: port and GID table index.
public struct QueryGIDRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = GID
    /// `queryGID`.
    public static let kind = MessageKind(0x0004, "queryGID")
    /// Port number, 1-based.
    public var port: UInt8
    /// GID table index (verbs' `int index`, never negative).
    public var index: Int32
    /// Creates the request.
    public init(port: UInt8, index: Int32) {
        self.port = port
        self.index = index
    }
    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.bounded(port, 1...UInt8.max, "queryGID.port")
        w.reserved(3)
        try w.nonNegativeI32(index, "queryGID.index")
    }
    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        port = try r.bounded(UInt8.self, 1...UInt8.max, "queryGID.port")
        try r.reserved(3, "queryGID.reserved")
        index = try r.nonNegativeI32("queryGID.index")
    }
}

/// reg_mr: register the app's buffer, whose pages the client passes as a memfd (1 descriptor).
///
/// The router maps `length` bytes of the memfd starting at `memfdOffset` and registers them with
/// `ibv_reg_mr_iova(iova: address)`, so peers use the app's own virtual addresses.
public struct RegMRRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = RegMRReply
    /// `regMR`.
    public static let kind = MessageKind(0x0012, "regMR")
    /// Descriptors with the request (the memory's memfds).
    public static var descriptors: ClosedRange<UInt8> { 1...1 }
    /// Protection domain.
    public var pd: PDHandle
    /// Access rights.
    public var access: AccessFlags
    /// The buffer's address in the app (becomes the MR's iova).
    public var address: UInt64
    /// Length in bytes, at least 1.
    public var length: UInt64
    /// Byte offset of `address` inside the memfd.
    public var memfdOffset: UInt64

    /// Creates the request.
    public init(pd: PDHandle, access: AccessFlags, address: UInt64, length: UInt64, memfdOffset: UInt64) {
        self.pd = pd
        self.access = access
        self.address = address
        self.length = length
        self.memfdOffset = memfdOffset
    }

    /// Appends 32 bytes; neither range may wrap around 2^64.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(pd, "regMR.pd")
        try w.options(access, supported: .supported, "regMR.access")
        w.u64(address)
        // Written out rather than as a range: `1...0` (an address or offset of 2^64-1) would trap.
        guard length >= 1, length <= UInt64.max - address, length <= UInt64.max - memfdOffset else {
            throw WireError(.valueOutOfRange(length), field: "regMR.length", offset: w.offset)
        }
        w.u64(length)
        w.u64(memfdOffset)
    }

    /// Reads 32 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        pd = try r.handle(PDHandle.self, "regMR.pd")
        access = try r.options(AccessFlags.self, supported: .supported, "regMR.access")
        address = try r.u64("regMR.address")
        let lengthAt = r.offset
        length = try r.u64("regMR.length")
        memfdOffset = try r.u64("regMR.memfdOffset")
        guard length >= 1, length <= UInt64.max - address, length <= UInt64.max - memfdOffset else {
            throw WireError(.valueOutOfRange(length), field: "regMR.length", offset: lengthAt)
        }
    }
}

/// reg_mr's reply: the handle and the keys peers and SGEs use.
public struct RegMRReply: WireCodable {
    /// The new MR.
    public var mr: MRHandle
    /// Local key.
    public var lkey: UInt32
    /// Remote key.
    public var rkey: UInt32
    /// Creates the reply.
    public init(mr: MRHandle, lkey: UInt32, rkey: UInt32) {
        self.mr = mr
        self.lkey = lkey
        self.rkey = rkey
    }
    /// Appends 12 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(mr, "regMRReply.mr")
        w.u32(lkey)
        w.u32(rkey)
    }
    /// Reads 12 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        mr = try r.handle(MRHandle.self, "regMRReply.mr")
        lkey = try r.u32("regMRReply.lkey")
        rkey = try r.u32("regMRReply.rkey")
    }
}

/// create_cq: size, optional completion channel, completion vector.
public struct CreateCQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CreateCQReply
    /// `createCQ`.
    public static let kind = MessageKind(0x0022, "createCQ")
    /// Minimum number of entries, at least 1.
    public var cqe: UInt32
    /// Channel to deliver completion events on; nil for polling only.
    public var channel: CompChannelHandle?
    /// Completion vector (interrupt) hint.
    public var compVector: UInt32
    /// Creates the request.
    public init(cqe: UInt32, channel: CompChannelHandle? = nil, compVector: UInt32 = 0) {
        self.cqe = cqe
        self.channel = channel
        self.compVector = compVector
    }
    /// Appends 12 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.bounded(cqe, 1...UInt32(Int32.max), "createCQ.cqe")
        try w.optionalHandle(channel, "createCQ.channel")
        w.u32(compVector)
    }
    /// Reads 12 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        cqe = try r.bounded(UInt32.self, 1...UInt32(Int32.max), "createCQ.cqe")
        channel = try r.optionalHandle(CompChannelHandle.self, "createCQ.channel")
        compVector = try r.u32("createCQ.compVector")
    }
}

/// create_cq's reply: the handle and the actual size.
public struct CreateCQReply: WireCodable {
    /// The new CQ.
    public var cq: CQHandle
    /// Actual number of entries (at least the requested).
    public var cqe: UInt32
    /// Creates the reply.
    public init(cq: CQHandle, cqe: UInt32) {
        self.cq = cq
        self.cqe = cqe
    }
    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(cq, "createCQReply.cq")
        w.u32(cqe)
    }
    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        cq = try r.handle(CQHandle.self, "createCQReply.cq")
        cqe = try r.u32("createCQReply.cqe")
    }
}

/// req_notify_cq: arm the CQ's channel for the next (solicited) completion.
public struct ReqNotifyCQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `reqNotifyCQ`.
    public static let kind = MessageKind(0x0024, "reqNotifyCQ")
    /// The CQ; it must have a channel.
    public var cq: CQHandle
    /// Only solicited completions (and errors) raise an event.
    public var solicitedOnly: Bool
    /// Creates the request.
    public init(cq: CQHandle, solicitedOnly: Bool) {
        self.cq = cq
        self.solicitedOnly = solicitedOnly
    }
    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(cq, "reqNotifyCQ.cq")
        w.bool(solicitedOnly)
        w.reserved(3)
    }
    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        cq = try r.handle(CQHandle.self, "reqNotifyCQ.cq")
        solicitedOnly = try r.bool("reqNotifyCQ.solicitedOnly")
        try r.reserved(3, "reqNotifyCQ.reserved")
    }
}

/// One record on a completion channel's event descriptor: "this CQ has a completion event".
///
/// The router writes one 8-byte record per event to the descriptor it passed in
/// create_comp_channel's reply and acknowledges the real event itself (`ibv_ack_cq_events`), so the
/// client's `ibv_ack_cq_events` needs no message. 8-byte writes to a pipe are atomic (pipe(7), PIPE_BUF).
public struct CompletionEvent: Sendable, Equatable {
    /// Size of one record.
    public static let size = 8
    /// The CQ that raised the event.
    public var cq: CQHandle
    /// Creates a record.
    public init(cq: CQHandle) { self.cq = cq }

    /// The 8 bytes of the record.
    public func encode() throws(WireError) -> [UInt8] {
        var w = WireWriter(capacity: Self.size)
        try w.handle(cq, "completionEvent.cq")
        w.reserved(4)
        return w.bytes
    }

    /// Decodes exactly one 8-byte record.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CompletionEvent {
        var r = WireReader(bytes)
        let cq = try r.handle(CQHandle.self, "completionEvent.cq")
        try r.reserved(4, "completionEvent.reserved")
        try r.finish("completionEvent")
        return CompletionEvent(cq: cq)
    }
}

/// query_device: the virtual device's attributes (empty body).
public struct QueryDeviceRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = DeviceAttributes
    /// `queryDevice`.
    public static let kind = MessageKind(0x0002, "queryDevice")
    /// Creates the request.
    public init() {}
    /// Appends nothing (empty body).
    public func encode(to w: inout WireWriter) throws(WireError) {}
    /// Reads nothing (empty body).
    public init(from r: inout WireReader) throws(WireError) {}
}

/// alloc_pd (empty body); the reply is the new `PDHandle`.
public struct AllocPDRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = PDHandle
    /// `allocPD`.
    public static let kind = MessageKind(0x0010, "allocPD")
    /// Creates the request.
    public init() {}
    /// Appends nothing (empty body).
    public func encode(to w: inout WireWriter) throws(WireError) {}
    /// Reads nothing (empty body).
    public init(from r: inout WireReader) throws(WireError) {}
}

/// dealloc_pd: a `PDHandle`.
public struct DeallocPDRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `deallocPD`.
    public static let kind = MessageKind(0x0011, "deallocPD")
    /// The protection domain.
    public var pd: PDHandle
    /// Creates the request.
    public init(pd: PDHandle) { self.pd = pd }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(pd, "pd") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { pd = try r.handle(PDHandle.self, "pd") }
}

/// dereg_mr: an `MRHandle`.
public struct DeregMRRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `deregMR`.
    public static let kind = MessageKind(0x0013, "deregMR")
    /// The memory region.
    public var mr: MRHandle
    /// Creates the request.
    public init(mr: MRHandle) { self.mr = mr }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(mr, "mr") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { mr = try r.handle(MRHandle.self, "mr") }
}

/// create_comp_channel (empty body); the reply is the handle + 1 descriptor (the event fd).
public struct CreateCompChannelRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CompChannelHandle
    /// `createCompChannel`.
    public static let kind = MessageKind(0x0020, "createCompChannel")
    /// The reply carries one descriptor.
    public static var replyDescriptors: UInt8 { 1 }
    /// Creates the request.
    public init() {}
    /// Appends nothing (empty body).
    public func encode(to w: inout WireWriter) throws(WireError) {}
    /// Reads nothing (empty body).
    public init(from r: inout WireReader) throws(WireError) {}
}

/// destroy_comp_channel: a `CompChannelHandle`.
public struct DestroyCompChannelRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `destroyCompChannel`.
    public static let kind = MessageKind(0x0021, "destroyCompChannel")
    /// The completion channel.
    public var channel: CompChannelHandle
    /// Creates the request.
    public init(channel: CompChannelHandle) { self.channel = channel }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(channel, "channel") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) {
        channel = try r.handle(CompChannelHandle.self, "channel")
    }
}

/// destroy_cq: a `CQHandle`.
public struct DestroyCQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `destroyCQ`.
    public static let kind = MessageKind(0x0023, "destroyCQ")
    /// The completion queue.
    public var cq: CQHandle
    /// Creates the request.
    public init(cq: CQHandle) { self.cq = cq }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(cq, "cq") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { cq = try r.handle(CQHandle.self, "cq") }
}
