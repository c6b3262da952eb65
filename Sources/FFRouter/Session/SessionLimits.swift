import FFProtocol

/// What one client session may hold. Every limit is checked before the verbs call that would exceed it, and a refusal
/// is the errno verbs would give when the device runs out (ENOMEM; EMFILE for descriptors) with a reason naming the
/// limit and its `ffrouter` flag; other sessions are unaffected. `ffrouter --help` and docs/router.md list the defaults.
public struct SessionLimits: Sendable, Equatable {
    /// Protection domains (`--max-pds`).
    public var pds = 64
    /// Memory regions (`--max-mrs`).
    public var mrs = 8192
    /// Completion channels (`--max-comp-channels`).
    public var completionChannels = 128
    /// Completion queues (`--max-cqs`).
    public var cqs = 2048
    /// Queue pairs (`--max-qps`).
    public var qps = 2048
    /// Shared receive queues (`--max-srqs`).
    public var srqs = 256
    /// Address handles (`--max-ahs`).
    public var ahs = 8192
    /// Router descriptors held for the session (`--max-descriptors`): two per completion channel (the channel and
    /// the router's end of the event socket), and a reg_mr's memfds while they are mapped. MRs hold none: the router
    /// maps the client's memfds and closes them.
    public var descriptors = 256
    /// Bytes of client memory registered, counted in whole pages of the mapping (`--max-pinned-bytes`).
    public var pinnedBytes: UInt64 = 64 << 30
    /// Outstanding work requests: the sum of the send and receive queue depths of the session's QPs and the depths of
    /// its SRQs, each the most work requests that can be outstanding on it at once (`--max-work-requests`).
    public var workRequests: UInt64 = 1 << 20
    /// Completion queue entries over all the session's CQs (`--max-cq-entries`).
    public var cqEntries: UInt64 = 1 << 22

    /// The defaults.
    public init() {}
}

/// What a session holds now, checked against its `SessionLimits`.
struct SessionUsage: Equatable {
    var descriptors = 0
    var pinnedBytes: UInt64 = 0
    var workRequests: UInt64 = 0
    var cqEntries: UInt64 = 0
}

extension SessionLimits {
    /// Refuses one more object of a kind that already has `count` when `limit` allows no more.
    static func checkCount(_ count: Int, _ limit: Int, _ what: String, flag: String) throws(ErrorReply) {
        guard count < limit else {
            throw ErrorReply(errno: Errno.outOfMemory, reason: "session limit reached: \(limit) \(what) (ffrouter --\(flag))")
        }
    }

    /// Refuses adding `amount` to `used` when the sum would pass `limit` (or not fit 64 bits).
    static func checkBudget(_ used: UInt64, adding amount: UInt64, _ limit: UInt64, _ what: String, flag: String,
                            errno: Int32 = Errno.outOfMemory) throws(ErrorReply) {
        let (total, overflow) = used.addingReportingOverflow(amount)
        guard !overflow, total <= limit else {
            throw ErrorReply(errno: errno, reason: "session limit reached: \(what) would be \(overflow ? "over 2^64" : "\(total)"), the limit is \(limit) (ffrouter --\(flag))")
        }
    }
}
