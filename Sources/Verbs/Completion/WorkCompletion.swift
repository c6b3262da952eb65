import CVerbs

/// The status of a work completion (`enum ibv_wc_status`); raw values are libibverbs'.
public struct CompletionStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The `IBV_WC_*` status value.
    public let rawValue: UInt32
    /// Wraps an `IBV_WC_*` status value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IBV_WC_SUCCESS.
    public static let success = CompletionStatus(rawValue: IBV_WC_SUCCESS.rawValue)
    /// IBV_WC_WR_FLUSH_ERR: the QP went to the error state with this request outstanding.
    public static let flushError = CompletionStatus(rawValue: IBV_WC_WR_FLUSH_ERR.rawValue)
    /// IBV_WC_REM_ACCESS_ERR: the peer refused the rkey or range.
    public static let remoteAccessError = CompletionStatus(rawValue: IBV_WC_REM_ACCESS_ERR.rawValue)
    /// IBV_WC_RETRY_EXC_ERR: the peer did not answer within the retry budget.
    public static let retryExceeded = CompletionStatus(rawValue: IBV_WC_RETRY_EXC_ERR.rawValue)
    /// IBV_WC_RNR_RETRY_EXC_ERR: the peer had no receive posted.
    public static let receiverNotReadyRetryExceeded = CompletionStatus(rawValue: IBV_WC_RNR_RETRY_EXC_ERR.rawValue)

    /// `ibv_wc_status_str(3)`, e.g. "success" or "transport retry counter exceeded".
    public var description: String { String(cString: ibv_wc_status_str(ibv_wc_status(rawValue: rawValue))) }
}

/// What a completion completed (`enum ibv_wc_opcode`); raw values are libibverbs'.
public struct CompletionOpcode: RawRepresentable, Hashable, Sendable {
    /// The `IBV_WC_*` opcode value.
    public let rawValue: UInt32
    /// Wraps an `IBV_WC_*` opcode value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IBV_WC_SEND.
    public static let send = CompletionOpcode(rawValue: IBV_WC_SEND.rawValue)
    /// IBV_WC_RDMA_WRITE.
    public static let rdmaWrite = CompletionOpcode(rawValue: IBV_WC_RDMA_WRITE.rawValue)
    /// IBV_WC_RDMA_READ.
    public static let rdmaRead = CompletionOpcode(rawValue: IBV_WC_RDMA_READ.rawValue)
    /// IBV_WC_COMP_SWAP.
    public static let compareAndSwap = CompletionOpcode(rawValue: IBV_WC_COMP_SWAP.rawValue)
    /// IBV_WC_FETCH_ADD.
    public static let fetchAndAdd = CompletionOpcode(rawValue: IBV_WC_FETCH_ADD.rawValue)
    /// IBV_WC_RECV: a receive consumed by a SEND (with or without immediate).
    public static let receive = CompletionOpcode(rawValue: IBV_WC_RECV.rawValue)
    /// IBV_WC_RECV_RDMA_WITH_IMM: a receive consumed by an RDMA WRITE with immediate.
    public static let receiveRDMAWithImmediate = CompletionOpcode(rawValue: IBV_WC_RECV_RDMA_WITH_IMM.rawValue)
}

/// One polled completion (`struct ibv_wc`), copied out of the CQ.
public struct WorkCompletion: Hashable, Sendable {
    /// The work request id the poster chose.
    public var workRequestID: UInt64
    /// Success or the error.
    public var status: CompletionStatus
    /// The operation; valid only when `status` is success (ibv_poll_cq(3)).
    public var opcode: CompletionOpcode
    /// Vendor error syndrome.
    public var vendorError: UInt32
    /// Bytes transferred (receives, RDMA READ, atomics).
    public var byteLength: UInt32
    /// Immediate data in host order when `hasImmediate`.
    public var immediate: UInt32?
    /// The local QP number.
    public var qpNumber: UInt32
    /// The remote QP number (UD receives).
    public var sourceQP: UInt32
    /// `IBV_WC_*` flags (GRH present, with immediate, …).
    public var flags: UInt32
    /// Pkey index (GSI QPs).
    public var pkeyIndex: UInt16
    /// Source LID (0 on RoCE).
    public var sourceLID: UInt16
    /// Service level.
    public var serviceLevel: UInt8
    /// Destination LID path bits.
    public var destinationLIDPathBits: UInt8

    /// IBV_WC_GRH: a UD receive buffer begins with the 40-byte GRH.
    public var hasGlobalRouteHeader: Bool { flags & IBV_WC_GRH.rawValue != 0 }

    init(_ wc: ibv_wc) {
        workRequestID = wc.wr_id
        status = CompletionStatus(rawValue: wc.status.rawValue)
        opcode = CompletionOpcode(rawValue: wc.opcode.rawValue)
        vendorError = wc.vendor_err
        byteLength = wc.byte_len
        // imm_data is in network order (ibv_poll_cq(3)).
        immediate = wc.wc_flags & IBV_WC_WITH_IMM.rawValue != 0 ? UInt32(bigEndian: wc.imm_data) : nil
        qpNumber = wc.qp_num
        sourceQP = wc.src_qp
        flags = wc.wc_flags
        pkeyIndex = wc.pkey_index
        sourceLID = wc.slid
        serviceLevel = wc.sl
        destinationLIDPathBits = wc.dlid_path_bits
    }
}
