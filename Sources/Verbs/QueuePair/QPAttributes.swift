import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// Transport type of a QP (`enum ibv_qp_type`).
public enum QPType: UInt32, Sendable, CustomStringConvertible {
    /// Reliable connected.
    case rc = 2
    /// Unreliable connected.
    case uc = 3
    /// Unreliable datagram.
    case ud = 4

    /// "RC", "UC", "UD".
    public var description: String {
        switch self {
        case .rc: "RC"
        case .uc: "UC"
        case .ud: "UD"
        }
    }
}

/// State of a QP (`enum ibv_qp_state`).
public enum QPState: UInt32, Sendable, CustomStringConvertible {
    /// Just created, or reset.
    case reset = 0
    /// Initialised: receives may be posted.
    case initialized = 1
    /// Ready to receive.
    case readyToReceive = 2
    /// Ready to send.
    case readyToSend = 3
    /// Send queue drained.
    case sendQueueDrained = 4
    /// Send queue error.
    case sendQueueError = 5
    /// Error: outstanding requests are flushed.
    case error = 6

    /// The short name the man pages use: RESET, INIT, RTR, RTS, SQD, SQE, ERR.
    public var description: String {
        switch self {
        case .reset: "RESET"
        case .initialized: "INIT"
        case .readyToReceive: "RTR"
        case .readyToSend: "RTS"
        case .sendQueueDrained: "SQD"
        case .sendQueueError: "SQE"
        case .error: "ERR"
        }
    }
}

/// Queue sizes of a QP (`struct ibv_qp_cap`).
public struct QPCapabilities: Hashable, Sendable {
    /// Outstanding send work requests.
    public var maxSendWorkRequests: UInt32
    /// Outstanding receive work requests.
    public var maxReceiveWorkRequests: UInt32
    /// Scatter/gather entries per send.
    public var maxSendSGE: UInt32
    /// Scatter/gather entries per receive.
    public var maxReceiveSGE: UInt32
    /// Bytes that may be sent inline.
    public var maxInlineData: UInt32

    /// Queue sizes; the device may round them up.
    public init(maxSendWorkRequests: UInt32 = 16, maxReceiveWorkRequests: UInt32 = 16, maxSendSGE: UInt32 = 1,
                maxReceiveSGE: UInt32 = 1, maxInlineData: UInt32 = 0) {
        self.maxSendWorkRequests = maxSendWorkRequests
        self.maxReceiveWorkRequests = maxReceiveWorkRequests
        self.maxSendSGE = maxSendSGE
        self.maxReceiveSGE = maxReceiveSGE
        self.maxInlineData = maxInlineData
    }

    var raw: ibv_qp_cap {
        ibv_qp_cap(max_send_wr: maxSendWorkRequests, max_recv_wr: maxReceiveWorkRequests, max_send_sge: maxSendSGE,
                   max_recv_sge: maxReceiveSGE, max_inline_data: maxInlineData)
    }

    init(_ cap: ibv_qp_cap) {
        self.init(maxSendWorkRequests: cap.max_send_wr, maxReceiveWorkRequests: cap.max_recv_wr,
                  maxSendSGE: cap.max_send_sge,
                  maxReceiveSGE: cap.max_recv_sge, maxInlineData: cap.max_inline_data)
    }
}

/// The attributes of one `ibv_modify_qp(3)` call. Each field that is set goes into the attribute mask,
/// so the mask can never disagree with the values.
public struct QPAttributes: Hashable, Sendable {
    /// IBV_QP_STATE: the state to move to.
    public var state: QPState?
    /// IBV_QP_CUR_STATE: the state the caller believes the QP is in.
    public var currentState: QPState?
    /// IBV_QP_PKEY_INDEX.
    public var pkeyIndex: UInt16?
    /// IBV_QP_PORT.
    public var port: UInt8?
    /// IBV_QP_ACCESS_FLAGS: what remote peers may do (RC/UC).
    public var access: AccessFlags?
    /// IBV_QP_QKEY (UD).
    public var qkey: UInt32?
    /// IBV_QP_AV: the peer's address (RC/UC at RTR).
    public var address: AddressVector?
    /// IBV_QP_PATH_MTU.
    public var pathMTU: MTU?
    /// IBV_QP_DEST_QPN.
    public var destinationQPN: UInt32?
    /// IBV_QP_RQ_PSN.
    public var receivePSN: UInt32?
    /// IBV_QP_MAX_DEST_RD_ATOMIC: READ/atomic requests the peer may have outstanding at us (RC).
    public var maxDestinationReadAtomic: UInt8?
    /// IBV_QP_MIN_RNR_TIMER (RC).
    public var minRNRTimer: UInt8?
    /// IBV_QP_SQ_PSN.
    public var sendPSN: UInt32?
    /// IBV_QP_TIMEOUT: local ACK timeout, 4.096 µs × 2^timeout (RC).
    public var timeout: UInt8?
    /// IBV_QP_RETRY_CNT (RC).
    public var retryCount: UInt8?
    /// IBV_QP_RNR_RETRY (RC); 7 means retry for ever.
    public var rnrRetry: UInt8?
    /// IBV_QP_MAX_QP_RD_ATOMIC: READ/atomic requests we may have outstanding (RC).
    public var maxReadAtomic: UInt8?

    /// No attributes set.
    public init() {}

    /// The `IBV_QP_*` attribute mask for the fields that are set.
    public var mask: Int32 {
        var m: UInt32 = 0
        func add(_ present: Bool, _ bit: ibv_qp_attr_mask) { if present { m |= bit.rawValue } }
        add(state != nil, IBV_QP_STATE)
        add(currentState != nil, IBV_QP_CUR_STATE)
        add(pkeyIndex != nil, IBV_QP_PKEY_INDEX)
        add(port != nil, IBV_QP_PORT)
        add(access != nil, IBV_QP_ACCESS_FLAGS)
        add(qkey != nil, IBV_QP_QKEY)
        add(address != nil, IBV_QP_AV)
        add(pathMTU != nil, IBV_QP_PATH_MTU)
        add(destinationQPN != nil, IBV_QP_DEST_QPN)
        add(receivePSN != nil, IBV_QP_RQ_PSN)
        add(maxDestinationReadAtomic != nil, IBV_QP_MAX_DEST_RD_ATOMIC)
        add(minRNRTimer != nil, IBV_QP_MIN_RNR_TIMER)
        add(sendPSN != nil, IBV_QP_SQ_PSN)
        add(timeout != nil, IBV_QP_TIMEOUT)
        add(retryCount != nil, IBV_QP_RETRY_CNT)
        add(rnrRetry != nil, IBV_QP_RNR_RETRY)
        add(maxReadAtomic != nil, IBV_QP_MAX_QP_RD_ATOMIC)
        return Int32(bitPattern: m)
    }

    /// The `struct ibv_qp_attr` carrying the fields that are set (the rest zero).
    var raw: ibv_qp_attr {
        var a = ibv_qp_attr()
        if let state { a.qp_state = ibv_qp_state(rawValue: state.rawValue) }
        if let currentState { a.cur_qp_state = ibv_qp_state(rawValue: currentState.rawValue) }
        if let pkeyIndex { a.pkey_index = pkeyIndex }
        if let port { a.port_num = port }
        if let access { a.qp_access_flags = access.rawValue }
        if let qkey { a.qkey = qkey }
        if let address { a.ah_attr = address.raw }
        if let pathMTU { a.path_mtu = ibv_mtu(rawValue: pathMTU.rawValue) }
        if let destinationQPN { a.dest_qp_num = destinationQPN }
        if let receivePSN { a.rq_psn = receivePSN }
        if let maxDestinationReadAtomic { a.max_dest_rd_atomic = maxDestinationReadAtomic }
        if let minRNRTimer { a.min_rnr_timer = minRNRTimer }
        if let sendPSN { a.sq_psn = sendPSN }
        if let timeout { a.timeout = timeout }
        if let retryCount { a.retry_cnt = retryCount }
        if let rnrRetry { a.rnr_retry = rnrRetry }
        if let maxReadAtomic { a.max_rd_atomic = maxReadAtomic }
        return a
    }
}

/// What RTR needs to know about the peer of a connected QP.
public struct RemotePath: Hashable, Sendable {
    /// The peer's address (with a global route on RoCE).
    public var address: AddressVector
    /// The peer QP's number.
    public var destinationQPN: UInt32
    /// The first PSN the peer will send (our receive PSN).
    public var receivePSN: UInt32
    /// Path MTU; at most both ports' active MTU.
    public var mtu: MTU
    /// READ/atomic requests the peer may have outstanding at us (RC).
    public var maxDestinationReadAtomic: UInt8
    /// RNR NAK timer code (RC).
    public var minRNRTimer: UInt8

    /// A path to QP `destinationQPN` at `address`.
    public init(address: AddressVector, destinationQPN: UInt32, receivePSN: UInt32, mtu: MTU = .mtu1024,
                maxDestinationReadAtomic: UInt8 = 1, minRNRTimer: UInt8 = 12) {
        self.address = address
        self.destinationQPN = destinationQPN
        self.receivePSN = receivePSN
        self.mtu = mtu
        self.maxDestinationReadAtomic = maxDestinationReadAtomic
        self.minRNRTimer = minRNRTimer
    }
}

/// The attribute sets that the RESET→INIT→RTR→RTS transitions require for each QP type, as the table in
/// ibv_modify_qp(3) lists them: asking for a transition with the wrong fields fails with EINVAL, so the
/// typed constructors below build exactly the required set.
extension QPAttributes {
    /// RESET→INIT: pkey index and port, plus access flags (RC/UC) or the Q_Key (UD).
    public static func toInit(type: QPType, port: UInt8 = 1, pkeyIndex: UInt16 = 0, access: AccessFlags = [],
                              qkey: UInt32 = 0) -> QPAttributes {
        var a = QPAttributes()
        a.state = .initialized
        a.pkeyIndex = pkeyIndex
        a.port = port
        if type == .ud { a.qkey = qkey } else { a.access = access }
        return a
    }

    /// INIT→RTR: the peer's address, QPN and PSN and the path MTU (RC/UC; RC also the responder's READ
    /// depth and RNR timer); UD needs the state alone.
    public static func toReadyToReceive(type: QPType, path: RemotePath?) throws(VerbsError) -> QPAttributes {
        var a = QPAttributes()
        a.state = .readyToReceive
        guard type != .ud else { return a }
        guard let path else {
            throw VerbsError(operation: "ibv_modify_qp", errno: EINVAL,
                             detail: "INIT->RTR of a \(type) QP needs the remote path")
        }
        a.address = path.address
        a.pathMTU = path.mtu
        a.destinationQPN = path.destinationQPN
        a.receivePSN = path.receivePSN
        if type == .rc {
            a.maxDestinationReadAtomic = path.maxDestinationReadAtomic
            a.minRNRTimer = path.minRNRTimer
        }
        return a
    }

    /// RTR→RTS: the send PSN (all types); RC also the ACK timeout, retry counts and initiator READ depth.
    public static func toReadyToSend(type: QPType, sendPSN: UInt32, timeout: UInt8 = 14, retryCount: UInt8 = 7,
                                     rnrRetry: UInt8 = 7, maxReadAtomic: UInt8 = 1) -> QPAttributes {
        var a = QPAttributes()
        a.state = .readyToSend
        a.sendPSN = sendPSN
        if type == .rc {
            a.timeout = timeout
            a.retryCount = retryCount
            a.rnrRetry = rnrRetry
            a.maxReadAtomic = maxReadAtomic
        }
        return a
    }
}
