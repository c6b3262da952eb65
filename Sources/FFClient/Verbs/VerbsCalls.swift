import FFProtocol
import FFSystem

/// One typed call per setup verb. Each returns the reply's payload or throws the router's error (an errno
/// and a reason), so a caller can hand both to an application as the verbs call's result.
extension RouterConnection {
    private func expect<T>(_ message: Message, descriptors: [Int32] = [], _ extract: (Message) -> T?) throws(ClientError) -> T {
        let (reply, _) = try call(message, descriptors: descriptors)
        guard let value = extract(reply) else { throw .protocolViolation("unexpected \(reply.kind) for \(message.kind)") }
        return value
    }

    private func expectEmpty(_ message: Message, _ check: (Message) -> Bool) throws(ClientError) {
        let (reply, _) = try call(message)
        guard check(reply) else { throw .protocolViolation("unexpected \(reply.kind) for \(message.kind)") }
    }

    /// ibv_query_device: the virtual device this pod sees.
    public func queryDevice() throws(ClientError) -> DeviceAttributes {
        try expect(.queryDevice) { if case .queryDeviceReply(let a) = $0 { a } else { nil } }
    }

    /// ibv_query_port.
    public func queryPort(_ port: UInt8 = 1) throws(ClientError) -> PortAttributes {
        try expect(.queryPort(QueryPortRequest(port: port))) { if case .queryPortReply(let a) = $0 { a } else { nil } }
    }

    /// ibv_query_gid: index 0 is this pod's virtual GID.
    public func queryGID(port: UInt8 = 1, index: Int32) throws(ClientError) -> GID {
        try expect(.queryGID(QueryGIDRequest(port: port, index: index))) { if case .queryGIDReply(let g) = $0 { g } else { nil } }
    }

    /// ibv_alloc_pd.
    public func allocatePD() throws(ClientError) -> PDHandle {
        try expect(.allocPD) { if case .allocPDReply(let h) = $0 { h } else { nil } }
    }

    /// ibv_dealloc_pd.
    public func deallocatePD(_ pd: PDHandle) throws(ClientError) {
        try expectEmpty(.deallocPD(pd)) { if case .deallocPDReply = $0 { true } else { false } }
    }

    /// ibv_reg_mr of `length` bytes at `offset` into `memory`: the router maps the same pages from the
    /// memfd and registers them at this process's address, so peers use this process's addresses.
    public func registerMemory(pd: PDHandle, memory: SharedMemory, offset: Int = 0, length: Int? = nil,
                               access: AccessFlags) throws(ClientError) -> RegMRReply {
        let count = length ?? (memory.bytes.count - offset)
        let request = RegMRRequest(pd: pd, access: access, address: memory.address + UInt64(offset), length: UInt64(count),
                                   memfdOffset: UInt64(offset))
        return try expect(.regMR(request), descriptors: [memory.descriptor.rawValue]) { if case .regMRReply(let r) = $0 { r } else { nil } }
    }

    /// ibv_dereg_mr.
    public func deregisterMemory(_ mr: MRHandle) throws(ClientError) {
        try expectEmpty(.deregMR(mr)) { if case .deregMRReply = $0 { true } else { false } }
    }

    /// ibv_create_comp_channel: the handle, and the descriptor on which `CompletionEvent` records arrive.
    public func createCompletionChannel() throws(ClientError) -> (CompChannelHandle, OwnedDescriptor) {
        let (reply, descriptors) = try call(.createCompChannel)
        guard case .createCompChannelReply(let handle) = reply, descriptors.count == 1 else {
            throw .protocolViolation("expected a completion channel reply with one descriptor")
        }
        return (handle, descriptors[0])
    }

    /// ibv_destroy_comp_channel.
    public func destroyCompletionChannel(_ channel: CompChannelHandle) throws(ClientError) {
        try expectEmpty(.destroyCompChannel(channel)) { if case .destroyCompChannelReply = $0 { true } else { false } }
    }

    /// ibv_create_cq.
    public func createCQ(entries: UInt32, channel: CompChannelHandle? = nil) throws(ClientError) -> CreateCQReply {
        try expect(.createCQ(CreateCQRequest(cqe: entries, channel: channel))) { if case .createCQReply(let r) = $0 { r } else { nil } }
    }

    /// ibv_destroy_cq.
    public func destroyCQ(_ cq: CQHandle) throws(ClientError) {
        try expectEmpty(.destroyCQ(cq)) { if case .destroyCQReply = $0 { true } else { false } }
    }

    /// ibv_req_notify_cq.
    public func requestNotification(_ cq: CQHandle, solicitedOnly: Bool = false) throws(ClientError) {
        try expectEmpty(.reqNotifyCQ(ReqNotifyCQRequest(cq: cq, solicitedOnly: solicitedOnly))) { if case .reqNotifyCQReply = $0 { true } else { false } }
    }

    /// ibv_create_qp.
    public func createQP(_ request: CreateQPRequest) throws(ClientError) -> CreateQPReply {
        try expect(.createQP(request)) { if case .createQPReply(let r) = $0 { r } else { nil } }
    }

    /// ibv_modify_qp with the client's own mask; GIDs in the address vector are virtual.
    public func modifyQP(_ qp: QPHandle, mask: QPAttributeMask, attributes: QPAttributes) throws(ClientError) {
        try expectEmpty(.modifyQP(ModifyQPRequest(qp: qp, mask: mask, attributes: attributes))) { if case .modifyQPReply = $0 { true } else { false } }
    }

    /// ibv_query_qp.
    public func queryQP(_ qp: QPHandle, mask: QPAttributeMask = .state) throws(ClientError) -> QueryQPReply {
        try expect(.queryQP(QueryQPRequest(qp: qp, mask: mask))) { if case .queryQPReply(let r) = $0 { r } else { nil } }
    }

    /// ibv_destroy_qp.
    public func destroyQP(_ qp: QPHandle) throws(ClientError) {
        try expectEmpty(.destroyQP(qp)) { if case .destroyQPReply = $0 { true } else { false } }
    }

    /// ibv_create_srq.
    public func createSRQ(_ request: CreateSRQRequest) throws(ClientError) -> CreateSRQReply {
        try expect(.createSRQ(request)) { if case .createSRQReply(let r) = $0 { r } else { nil } }
    }

    /// ibv_destroy_srq.
    public func destroySRQ(_ srq: SRQHandle) throws(ClientError) {
        try expectEmpty(.destroySRQ(srq)) { if case .destroySRQReply = $0 { true } else { false } }
    }

    /// ibv_create_ah; the destination GID is virtual.
    public func createAH(pd: PDHandle, attributes: AHAttributes) throws(ClientError) -> AHHandle {
        try expect(.createAH(CreateAHRequest(pd: pd, attributes: attributes))) { if case .createAHReply(let h) = $0 { h } else { nil } }
    }

    /// ibv_destroy_ah.
    public func destroyAH(_ ah: AHHandle) throws(ClientError) {
        try expectEmpty(.destroyAH(ah)) { if case .destroyAHReply = $0 { true } else { false } }
    }

    /// ibv_post_send; a refused request is thrown with its index, as `bad_wr` reports it.
    public func postSend(_ qp: QPHandle, _ requests: [SendWorkRequest]) throws(ClientError) {
        try checkPost(try expect(.postSend(PostSendRequest(qp: qp, requests: requests))) { if case .postSendReply(let r) = $0 { r } else { nil } })
    }

    /// ibv_post_recv.
    public func postReceive(_ qp: QPHandle, _ requests: [ReceiveWorkRequest]) throws(ClientError) {
        try checkPost(try expect(.postRecv(PostRecvRequest(target: qp, requests: requests))) { if case .postRecvReply(let r) = $0 { r } else { nil } })
    }

    /// ibv_post_srq_recv.
    public func postSRQReceive(_ srq: SRQHandle, _ requests: [ReceiveWorkRequest]) throws(ClientError) {
        try checkPost(try expect(.postSRQRecv(PostRecvRequest(target: srq, requests: requests))) { if case .postSRQRecvReply(let r) = $0 { r } else { nil } })
    }

    /// ibv_poll_cq for up to `maxEntries` completions.
    public func pollCQ(_ cq: CQHandle, maxEntries: UInt32 = 16) throws(ClientError) -> [WorkCompletion] {
        try expect(.pollCQ(PollCQRequest(cq: cq, maxEntries: maxEntries))) { if case .pollCQReply(let r) = $0 { r.completions } else { nil } }
    }

    private func checkPost(_ reply: PostReply) throws(ClientError) {
        if reply.errno != 0 {
            throw .router(ErrorReply(errno: reply.errno, reason: "work request \(reply.failedIndex) refused"))
        }
    }
}
