import FFProtocol
import FFSystem

/// Typed conveniences over `call` for the setup verbs, for Swift callers (ffctl, benchmarks, tests). Each returns
/// the reply's body or throws the router's error (an errno and a reason), so a caller can hand both to an
/// application as the verbs call's result. A new verb needs none of these: `call(SomeRequest(...))` is the API.
extension RouterConnection {
    /// ibv_query_device: the virtual device this pod sees.
    public func queryDevice() throws(ClientError) -> DeviceAttributes { try call(QueryDeviceRequest()).0 }

    /// ibv_query_port.
    public func queryPort(_ port: UInt8 = 1) throws(ClientError) -> PortAttributes {
        try call(QueryPortRequest(port: port)).0
    }

    /// ibv_query_gid: index 0 is this pod's virtual GID.
    public func queryGID(port: UInt8 = 1, index: Int32) throws(ClientError) -> GID {
        try call(QueryGIDRequest(port: port, index: index)).0
    }

    /// ibv_alloc_pd.
    public func allocatePD() throws(ClientError) -> PDHandle { try call(AllocPDRequest()).0 }

    /// ibv_dealloc_pd.
    public func deallocatePD(_ pd: PDHandle) throws(ClientError) { _ = try call(DeallocPDRequest(pd: pd)) }

    /// ibv_reg_mr of `length` bytes at `offset` into `memory`: the router maps the same pages from the
    /// memfd and registers them at this process's address, so peers use this process's addresses.
    public func registerMemory(pd: PDHandle, memory: SharedMemory, offset: Int = 0, length: Int? = nil,
                               access: AccessFlags) throws(ClientError) -> RegMRReply {
        let count = length ?? (memory.bytes.count - offset)
        let request = RegMRRequest(pd: pd, access: access, address: memory.address + UInt64(offset),
                                   length: UInt64(count), memfdOffset: UInt64(offset))
        return try call(request, descriptors: [memory.descriptor.rawValue]).0
    }

    /// ibv_dereg_mr.
    public func deregisterMemory(_ mr: MRHandle) throws(ClientError) { _ = try call(DeregMRRequest(mr: mr)) }

    /// ibv_create_comp_channel: the handle, and the descriptor on which `CompletionEvent` records arrive.
    public func createCompletionChannel() throws(ClientError) -> (CompChannelHandle, OwnedDescriptor) {
        let (handle, descriptors) = try call(CreateCompChannelRequest())
        return (handle, descriptors[0])
    }

    /// ibv_destroy_comp_channel.
    public func destroyCompletionChannel(_ channel: CompChannelHandle) throws(ClientError) {
        _ = try call(DestroyCompChannelRequest(channel: channel))
    }

    /// ibv_create_cq.
    public func createCQ(entries: UInt32, channel: CompChannelHandle? = nil) throws(ClientError) -> CreateCQReply {
        try call(CreateCQRequest(cqe: entries, channel: channel)).0
    }

    /// ibv_destroy_cq.
    public func destroyCQ(_ cq: CQHandle) throws(ClientError) { _ = try call(DestroyCQRequest(cq: cq)) }

    /// ibv_req_notify_cq.
    public func requestNotification(_ cq: CQHandle, solicitedOnly: Bool = false) throws(ClientError) {
        _ = try call(ReqNotifyCQRequest(cq: cq, solicitedOnly: solicitedOnly))
    }

    /// ibv_create_qp.
    public func createQP(_ request: CreateQPRequest) throws(ClientError) -> CreateQPReply { try call(request).0 }

    /// ibv_modify_qp with the client's own mask; GIDs in the address vector are virtual.
    public func modifyQP(_ qp: QPHandle, mask: QPAttributeMask, attributes: QPAttributes) throws(ClientError) {
        _ = try call(ModifyQPRequest(qp: qp, mask: mask, attributes: attributes))
    }

    /// ibv_query_qp.
    public func queryQP(_ qp: QPHandle, mask: QPAttributeMask = .state) throws(ClientError) -> QueryQPReply {
        try call(QueryQPRequest(qp: qp, mask: mask)).0
    }

    /// ibv_destroy_qp.
    public func destroyQP(_ qp: QPHandle) throws(ClientError) { _ = try call(DestroyQPRequest(qp: qp)) }

    /// ibv_create_srq.
    public func createSRQ(_ request: CreateSRQRequest) throws(ClientError) -> CreateSRQReply { try call(request).0 }

    /// ibv_destroy_srq.
    public func destroySRQ(_ srq: SRQHandle) throws(ClientError) { _ = try call(DestroySRQRequest(srq: srq)) }

    /// ibv_create_ah; the destination GID is virtual.
    public func createAH(pd: PDHandle, attributes: AHAttributes) throws(ClientError) -> AHHandle {
        try call(CreateAHRequest(pd: pd, attributes: attributes)).0
    }

    /// ibv_destroy_ah.
    public func destroyAH(_ ah: AHHandle) throws(ClientError) { _ = try call(DestroyAHRequest(ah: ah)) }

    /// ibv_post_send; a refused request is thrown with its index, as `bad_wr` reports it.
    public func postSend(_ qp: QPHandle, _ requests: [SendWorkRequest]) throws(ClientError) {
        try checkPost(try call(PostSendRequest(qp: qp, requests: requests)).0)
    }

    /// ibv_post_recv.
    public func postReceive(_ qp: QPHandle, _ requests: [ReceiveWorkRequest]) throws(ClientError) {
        try checkPost(try call(PostRecvRequest(target: qp, requests: requests)).0)
    }

    /// ibv_post_srq_recv.
    public func postSRQReceive(_ srq: SRQHandle, _ requests: [ReceiveWorkRequest]) throws(ClientError) {
        try checkPost(try call(PostRecvRequest(target: srq, requests: requests)).0)
    }

    /// ibv_poll_cq for up to `maxEntries` completions.
    public func pollCQ(_ cq: CQHandle, maxEntries: UInt32 = 16) throws(ClientError) -> [WorkCompletion] {
        try call(PollCQRequest(cq: cq, maxEntries: maxEntries)).0.completions
    }

    private func checkPost(_ reply: PostReply) throws(ClientError) {
        if reply.errno != 0 {
            throw .router(ErrorReply(errno: reply.errno, reason: "work request \(reply.failedIndex) refused"))
        }
    }
}
