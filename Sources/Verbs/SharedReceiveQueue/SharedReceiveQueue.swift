import CVerbs

/// A shared receive queue (`ibv_create_srq(3)`); destroyed when the last reference goes. Keeps its PD alive.
public final class SharedReceiveQueue: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_srq>
    /// The protection domain.
    public let pd: ProtectionDomain
    /// Work requests the device granted.
    public let maxWorkRequests: UInt32
    /// Scatter entries per request the device granted.
    public let maxSGE: UInt32

    init(raw: UnsafeMutablePointer<ibv_srq>, pd: ProtectionDomain, maxWorkRequests: UInt32, maxSGE: UInt32) {
        self.raw = raw
        self.pd = pd
        self.maxWorkRequests = maxWorkRequests
        self.maxSGE = maxSGE
    }

    deinit { ibv_destroy_srq(raw) }

    /// `ibv_modify_srq(3)` with IBV_SRQ_LIMIT: arm the limit event at `limit` outstanding receives.
    public func setLimit(_ limit: UInt32) throws(VerbsError) {
        var attr = ibv_srq_attr(max_wr: 0, max_sge: 0, srq_limit: limit)
        try Call.returnsErrno("ibv_modify_srq", detail: "limit \(limit)") {
            ibv_modify_srq(raw, &attr, Int32(IBV_SRQ_LIMIT.rawValue))
        }
    }

    /// `ibv_post_srq_recv(3)`.
    public func postReceive(_ requests: [ReceiveWorkRequest]) throws(VerbsError) {
        try postReceive(WorkRequestScratch.holding(requests))
    }
}

extension ProtectionDomain {
    /// `ibv_create_srq(3)` with room for `maxWorkRequests` receives of up to `maxSGE` entries.
    public func createSharedReceiveQueue(maxWorkRequests: UInt32, maxSGE: UInt32 = 1) throws(VerbsError)
        -> SharedReceiveQueue {
        var attr = ibv_srq_init_attr()
        attr.attr.max_wr = maxWorkRequests
        attr.attr.max_sge = maxSGE
        let srq = try Call.returnsPointer("ibv_create_srq", detail: "\(maxWorkRequests) work requests") {
            ibv_create_srq(raw, &attr)
        }
        return SharedReceiveQueue(raw: srq, pd: self, maxWorkRequests: attr.attr.max_wr, maxSGE: attr.attr.max_sge)
    }
}
