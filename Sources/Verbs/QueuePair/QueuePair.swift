import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// What a QP is created with (`struct ibv_qp_init_attr`), apart from its PD.
public struct QueuePairConfiguration: Sendable {
    /// Transport type.
    public var type: QPType
    /// CQ for send completions.
    public var sendCQ: CompletionQueue
    /// CQ for receive completions.
    public var receiveCQ: CompletionQueue
    /// Shared receive queue; receives are then posted there, not on the QP.
    public var sharedReceiveQueue: SharedReceiveQueue?
    /// Queue sizes.
    public var capabilities: QPCapabilities
    /// Every send generates a completion (otherwise only those with `.signaled`).
    public var signalAll: Bool

    /// A configuration of `type` with the given CQs.
    public init(type: QPType, sendCQ: CompletionQueue, receiveCQ: CompletionQueue,
                sharedReceiveQueue: SharedReceiveQueue? = nil,
                capabilities: QPCapabilities = QPCapabilities(), signalAll: Bool = false) {
        self.type = type
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.sharedReceiveQueue = sharedReceiveQueue
        self.capabilities = capabilities
        self.signalAll = signalAll
    }

    var raw: ibv_qp_init_attr {
        var attr = ibv_qp_init_attr()
        attr.send_cq = sendCQ.raw
        attr.recv_cq = receiveCQ.raw
        attr.srq = sharedReceiveQueue?.raw
        attr.cap = capabilities.raw
        attr.qp_type = ibv_qp_type(rawValue: type.rawValue)
        attr.sq_sig_all = signalAll ? 1 : 0
        return attr
    }
}

/// A queue pair (`ibv_create_qp(3)` or `rdma_create_qp(3)`); destroyed when the last reference goes.
/// Keeps its PD, CQs and SRQ (and the cm_id it was made on) alive.
public final class QueuePair: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_qp>
    /// The protection domain.
    public let pd: ProtectionDomain
    /// What the QP was created with.
    public let configuration: QueuePairConfiguration
    /// The queue sizes the device granted (at least those asked).
    public let capabilities: QPCapabilities
    private let connection: ConnectionID?

    init(raw: UnsafeMutablePointer<ibv_qp>, pd: ProtectionDomain, configuration: QueuePairConfiguration,
         granted: QPCapabilities, connection: ConnectionID?) {
        self.raw = raw
        self.pd = pd
        self.configuration = configuration
        self.capabilities = granted
        self.connection = connection
    }

    deinit {
        if let connection { rdma_destroy_qp(connection.raw) } else { ibv_destroy_qp(raw) }
    }

    /// The QP number peers address.
    public var number: UInt32 { raw.pointee.qp_num }
    /// Transport type.
    public var type: QPType { configuration.type }

    /// `ibv_modify_qp(3)` with exactly the attributes that are set.
    public func modify(_ attributes: QPAttributes) throws(VerbsError) {
        var attr = attributes.raw
        let target = attributes.state.map { " to \($0)" } ?? ""
        try Call.returnsErrno("ibv_modify_qp",
            detail: "\(type) QP \(number)\(target), mask 0x\(String(UInt32(bitPattern: attributes.mask), radix: 16))") {
            ibv_modify_qp(raw, &attr, attributes.mask)
        }
    }

    /// RESET→INIT with the attributes this QP's type requires.
    public func moveToInit(port: UInt8 = 1, pkeyIndex: UInt16 = 0, access: AccessFlags = [],
                           qkey: UInt32 = 0) throws(VerbsError) {
        try modify(.toInit(type: type, port: port, pkeyIndex: pkeyIndex, access: access, qkey: qkey))
    }

    /// INIT→RTR; connected QPs need the remote path.
    public func moveToReadyToReceive(_ path: RemotePath?) throws(VerbsError) {
        try modify(.toReadyToReceive(type: type, path: path))
    }

    /// RTR→RTS.
    public func moveToReadyToSend(sendPSN: UInt32, timeout: UInt8 = 14, retryCount: UInt8 = 7, rnrRetry: UInt8 = 7,
                                  maxReadAtomic: UInt8 = 1) throws(VerbsError) {
        try modify(.toReadyToSend(type: type, sendPSN: sendPSN, timeout: timeout, retryCount: retryCount,
                                  rnrRetry: rnrRetry, maxReadAtomic: maxReadAtomic))
    }

    /// `ibv_query_qp(3)`: the current state.
    public func state() throws(VerbsError) -> QPState {
        var attr = ibv_qp_attr()
        var initAttr = ibv_qp_init_attr()
        try Call.returnsErrno("ibv_query_qp", detail: "QP \(number)") {
            ibv_query_qp(raw, &attr, Int32(bitPattern: IBV_QP_STATE.rawValue), &initAttr)
        }
        guard let state = QPState(rawValue: attr.qp_state.rawValue) else {
            throw VerbsError(operation: "ibv_query_qp", errno: EPROTO,
                             detail: "unknown state \(attr.qp_state.rawValue)")
        }
        return state
    }

    /// `ibv_post_send(3)`: posts the requests as one chained list.
    public func postSend(_ requests: [SendWorkRequest]) throws(VerbsError) {
        try postSend(WorkRequestScratch.holding(requests))
    }

    /// `ibv_post_send(3)` of one request.
    public func postSend(_ request: SendWorkRequest) throws(VerbsError) { try postSend([request]) }

    /// `ibv_post_recv(3)`: posts the requests as one chained list.
    public func postReceive(_ requests: [ReceiveWorkRequest]) throws(VerbsError) {
        try postReceive(WorkRequestScratch.holding(requests))
    }

    /// `ibv_post_recv(3)` of one request.
    public func postReceive(_ request: ReceiveWorkRequest) throws(VerbsError) { try postReceive([request]) }
}

extension ProtectionDomain {
    /// `ibv_create_qp(3)`.
    public func createQueuePair(_ configuration: QueuePairConfiguration) throws(VerbsError) -> QueuePair {
        var attr = configuration.raw
        let qp = try Call.returnsPointer("ibv_create_qp", detail: "\(configuration.type) QP") {
            ibv_create_qp(raw, &attr)
        }
        return QueuePair(raw: qp, pd: self, configuration: configuration, granted: QPCapabilities(attr.cap),
                         connection: nil)
    }
}
