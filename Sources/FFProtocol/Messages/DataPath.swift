/// post_send: a list of send work requests for one QP (the control-socket path).
public struct PostSendRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = PostReply
    /// `postSend`.
    public static let kind = MessageKind(0x0060, "postSend")
    /// The QP.
    public var qp: QPHandle
    /// 1 to `WireLimits.maxWRsPerPost` requests, posted in order.
    public var requests: [SendWorkRequest]

    /// Creates the request.
    public init(qp: QPHandle, requests: [SendWorkRequest]) {
        self.qp = qp
        self.requests = requests
    }

    /// Appends 8 bytes and the requests.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(qp, "postSend.qp")
        try w.count32(requests.count, min: 1, max: WireLimits.maxWRsPerPost, "postSend.count")
        for wr in requests { try wr.encode(to: &w) }
    }

    /// Reads a post_send.
    public init(from r: inout WireReader) throws(WireError) {
        qp = try r.handle(QPHandle.self, "postSend.qp")
        let n = try r.count32(min: 1, max: WireLimits.maxWRsPerPost, "postSend.count")
        var list: [SendWorkRequest] = []
        list.reserveCapacity(n)
        for _ in 0..<n { list.append(try SendWorkRequest(from: &r)) }
        requests = list
    }
}

/// post_recv (to a QP) or post_srq_recv (to an SRQ): a list of receive work requests.
public struct PostRecvRequest<Target: ReceiveQueueHandle>: WireRequest {
    /// The successful reply's body.
    public typealias Reply = PostReply
    /// `postRecv` for a QP, `postSRQRecv` for an SRQ.
    public static var kind: MessageKind { Target.postReceiveKind }
    /// The QP or SRQ.
    public var target: Target
    /// 1 to `WireLimits.maxWRsPerPost` requests, posted in order.
    public var requests: [ReceiveWorkRequest]

    /// Creates the request.
    public init(target: Target, requests: [ReceiveWorkRequest]) {
        self.target = target
        self.requests = requests
    }

    /// Appends 8 bytes and the requests.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(target, "postRecv.target")
        try w.count32(requests.count, min: 1, max: WireLimits.maxWRsPerPost, "postRecv.count")
        for wr in requests { try wr.encode(to: &w) }
    }

    /// Reads a post_recv / post_srq_recv.
    public init(from r: inout WireReader) throws(WireError) {
        target = try r.handle(Target.self, "postRecv.target")
        let n = try r.count32(min: 1, max: WireLimits.maxWRsPerPost, "postRecv.count")
        var list: [ReceiveWorkRequest] = []
        list.reserveCapacity(n)
        for _ in 0..<n { list.append(try ReceiveWorkRequest(from: &r)) }
        requests = list
    }
}

/// The reply to any post: either all requests were posted, or the index of the first that was not.
///
/// Mirrors verbs' `bad_wr`: requests before `failedIndex` were posted, that one and later ones not.
/// Unknown handles are not reported here but with an `ErrorReply` (EBADF), since nothing was posted.
public struct PostReply: WireCodable {
    /// 0 if all were posted, else the positive errno of the first failure.
    public var errno: Int32
    /// Index of the first request not posted; 0 when `errno` is 0.
    public var failedIndex: UInt32

    /// All requests posted.
    public static let success = PostReply(errno: 0, failedIndex: 0)

    /// Creates the reply.
    public init(errno: Int32, failedIndex: UInt32) {
        self.errno = errno
        self.failedIndex = failedIndex
    }

    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        guard (0...4095).contains(errno) else {
            throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: errno))), field: "postReply.errno",
                            offset: w.offset)
        }
        w.i32(errno)
        try w.bounded(failedIndex, 0...(errno == 0 ? 0 : UInt32(WireLimits.maxWRsPerPost - 1)), "postReply.failedIndex")
    }

    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        let at = r.offset
        errno = try r.i32("postReply.errno")
        guard (0...4095).contains(errno) else {
            throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: errno))), field: "postReply.errno", offset: at)
        }
        failedIndex = try r.bounded(UInt32.self, 0...(errno == 0 ? 0 : UInt32(WireLimits.maxWRsPerPost - 1)),
                                    "postReply.failedIndex")
    }
}

/// poll_cq: take up to `maxEntries` completions.
public struct PollCQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = PollCQReply
    /// `pollCQ`.
    public static let kind = MessageKind(0x0063, "pollCQ")
    /// The CQ.
    public var cq: CQHandle
    /// 1 to `WireLimits.maxWCsPerPoll`.
    public var maxEntries: UInt32

    /// Creates the request.
    public init(cq: CQHandle, maxEntries: UInt32) {
        self.cq = cq
        self.maxEntries = maxEntries
    }

    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(cq, "pollCQ.cq")
        try w.count32(Int(maxEntries), min: 1, max: WireLimits.maxWCsPerPoll, "pollCQ.maxEntries")
    }

    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        cq = try r.handle(CQHandle.self, "pollCQ.cq")
        maxEntries = UInt32(try r.count32(min: 1, max: WireLimits.maxWCsPerPoll, "pollCQ.maxEntries"))
    }
}

/// poll_cq's reply: 0 or more completions, oldest first.
public struct PollCQReply: WireCodable {
    /// The completions (at most the request's `maxEntries`, and `WireLimits.maxWCsPerPoll`).
    public var completions: [WorkCompletion]

    /// Creates the reply.
    public init(completions: [WorkCompletion]) { self.completions = completions }

    /// Appends 4 bytes and 48 per completion.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.count32(completions.count, max: WireLimits.maxWCsPerPoll, "pollCQReply.count")
        for wc in completions { try wc.encode(to: &w) }
    }

    /// Reads a poll reply.
    public init(from r: inout WireReader) throws(WireError) {
        let n = try r.count32(max: WireLimits.maxWCsPerPoll, "pollCQReply.count")
        var list: [WorkCompletion] = []
        list.reserveCapacity(n)
        for _ in 0..<n { list.append(try WorkCompletion(from: &r)) }
        completions = list
    }
}

/// A queue work requests are received into: a QP (post_recv) or an SRQ (post_srq_recv), each with its kind.
public protocol ReceiveQueueHandle: ObjectHandle {
    /// The kind of a post to this queue.
    static var postReceiveKind: MessageKind { get }
}

extension QPHandle: ReceiveQueueHandle {
    /// `postRecv`.
    public static let postReceiveKind = MessageKind(0x0061, "postRecv")
}

extension SRQHandle: ReceiveQueueHandle {
    /// `postSRQRecv`.
    public static let postReceiveKind = MessageKind(0x0062, "postSRQRecv")
}
