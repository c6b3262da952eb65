// Every raw value below equals the libibverbs constant of the same name in <infiniband/verbs.h>
// (rdma-core), so the router and the client library convert with a plain integer cast. Only the values
// FreeFlow supports are listed; anything else is a decode error.

/// Queue pair transport type (`enum ibv_qp_type`).
public enum QPType: UInt32, Sendable, CaseIterable {
    /// Reliable connected (`IBV_QPT_RC`).
    case rc = 2
    /// Unreliable connected (`IBV_QPT_UC`).
    case uc = 3
    /// Unreliable datagram (`IBV_QPT_UD`).
    case ud = 4
}

/// Queue pair state (`enum ibv_qp_state`).
public enum QPState: UInt32, Sendable, CaseIterable {
    /// `IBV_QPS_RESET`.
    case reset = 0
    /// `IBV_QPS_INIT`.
    case initialized = 1
    /// `IBV_QPS_RTR` (ready to receive).
    case readyToReceive = 2
    /// `IBV_QPS_RTS` (ready to send).
    case readyToSend = 3
    /// `IBV_QPS_SQD` (send queue drained).
    case sendQueueDrained = 4
    /// `IBV_QPS_SQE` (send queue error).
    case sendQueueError = 5
    /// `IBV_QPS_ERR`.
    case error = 6
    /// `IBV_QPS_UNKNOWN`.
    case unknown = 7
}

/// Path MTU (`enum ibv_mtu`).
public enum MTU: UInt32, Sendable, CaseIterable {
    /// `IBV_MTU_256`.
    case mtu256 = 1
    /// `IBV_MTU_512`.
    case mtu512 = 2
    /// `IBV_MTU_1024`.
    case mtu1024 = 3
    /// `IBV_MTU_2048`.
    case mtu2048 = 4
    /// `IBV_MTU_4096`.
    case mtu4096 = 5
}

/// Logical port state (`enum ibv_port_state`).
public enum PortState: UInt32, Sendable, CaseIterable {
    /// `IBV_PORT_NOP`.
    case nop = 0
    /// `IBV_PORT_DOWN`.
    case down = 1
    /// `IBV_PORT_INIT`.
    case initialized = 2
    /// `IBV_PORT_ARMED`.
    case armed = 3
    /// `IBV_PORT_ACTIVE`.
    case active = 4
    /// `IBV_PORT_ACTIVE_DEFER`.
    case activeDefer = 5
}

/// Port link layer (`IBV_LINK_LAYER_*`, a `u8` in `struct ibv_port_attr`).
public enum LinkLayer: UInt8, Sendable, CaseIterable {
    /// `IBV_LINK_LAYER_UNSPECIFIED`.
    case unspecified = 0
    /// `IBV_LINK_LAYER_INFINIBAND`.
    case infiniband = 1
    /// `IBV_LINK_LAYER_ETHERNET` (RoCE).
    case ethernet = 2
}

/// Atomic operation support (`enum ibv_atomic_cap`).
public enum AtomicCapability: UInt32, Sendable, CaseIterable {
    /// `IBV_ATOMIC_NONE`.
    case none = 0
    /// `IBV_ATOMIC_HCA`: atomic within this adapter.
    case hca = 1
    /// `IBV_ATOMIC_GLOB`: atomic with respect to the whole system.
    case global = 2
}

/// Send work request opcode (`enum ibv_wr_opcode`); memory windows, invalidation and TSO are unsupported.
public enum SendOpcode: UInt32, Sendable, CaseIterable {
    /// `IBV_WR_RDMA_WRITE`.
    case rdmaWrite = 0
    /// `IBV_WR_RDMA_WRITE_WITH_IMM`.
    case rdmaWriteWithImmediate = 1
    /// `IBV_WR_SEND`.
    case send = 2
    /// `IBV_WR_SEND_WITH_IMM`.
    case sendWithImmediate = 3
    /// `IBV_WR_RDMA_READ`.
    case rdmaRead = 4
    /// `IBV_WR_ATOMIC_CMP_AND_SWP`.
    case atomicCompareAndSwap = 5
    /// `IBV_WR_ATOMIC_FETCH_AND_ADD`.
    case atomicFetchAndAdd = 6
}

/// Work completion status (`enum ibv_wc_status`), the full list.
public enum WCStatus: UInt32, Sendable, CaseIterable {
    /// `IBV_WC_SUCCESS`.
    case success = 0
    /// `IBV_WC_LOC_LEN_ERR`.
    case localLengthError = 1
    /// `IBV_WC_LOC_QP_OP_ERR`.
    case localQPOperationError = 2
    /// `IBV_WC_LOC_EEC_OP_ERR`.
    case localEECOperationError = 3
    /// `IBV_WC_LOC_PROT_ERR`.
    case localProtectionError = 4
    /// `IBV_WC_WR_FLUSH_ERR`.
    case workRequestFlushed = 5
    /// `IBV_WC_MW_BIND_ERR`.
    case memoryWindowBindError = 6
    /// `IBV_WC_BAD_RESP_ERR`.
    case badResponse = 7
    /// `IBV_WC_LOC_ACCESS_ERR`.
    case localAccessError = 8
    /// `IBV_WC_REM_INV_REQ_ERR`.
    case remoteInvalidRequest = 9
    /// `IBV_WC_REM_ACCESS_ERR`.
    case remoteAccessError = 10
    /// `IBV_WC_REM_OP_ERR`.
    case remoteOperationError = 11
    /// `IBV_WC_RETRY_EXC_ERR`.
    case retryExceeded = 12
    /// `IBV_WC_RNR_RETRY_EXC_ERR`.
    case rnrRetryExceeded = 13
    /// `IBV_WC_LOC_RDD_VIOL_ERR`.
    case localRDDViolation = 14
    /// `IBV_WC_REM_INV_RD_REQ_ERR`.
    case remoteInvalidRDRequest = 15
    /// `IBV_WC_REM_ABORT_ERR`.
    case remoteAborted = 16
    /// `IBV_WC_INV_EECN_ERR`.
    case invalidEECN = 17
    /// `IBV_WC_INV_EEC_STATE_ERR`.
    case invalidEECState = 18
    /// `IBV_WC_FATAL_ERR`.
    case fatal = 19
    /// `IBV_WC_RESP_TIMEOUT_ERR`.
    case responseTimeout = 20
    /// `IBV_WC_GENERAL_ERR`.
    case general = 21
    /// `IBV_WC_TM_ERR`.
    case tagMatchingError = 22
    /// `IBV_WC_TM_RNDV_INCOMPLETE`.
    case tagMatchingRendezvousIncomplete = 23
}

/// Work completion opcode (`enum ibv_wc_opcode`) for the operations FreeFlow supports.
///
/// verbs leaves `opcode` undefined when `status` is not success; the router must then send `.send`
/// (or the real value if it is one of these), never an arbitrary number.
public enum WCOpcode: UInt32, Sendable, CaseIterable {
    /// `IBV_WC_SEND`.
    case send = 0
    /// `IBV_WC_RDMA_WRITE`.
    case rdmaWrite = 1
    /// `IBV_WC_RDMA_READ`.
    case rdmaRead = 2
    /// `IBV_WC_COMP_SWAP`.
    case compareAndSwap = 3
    /// `IBV_WC_FETCH_ADD`.
    case fetchAndAdd = 4
    /// `IBV_WC_RECV` (`1 << 7`: receives test `opcode & IBV_WC_RECV`).
    case receive = 128
    /// `IBV_WC_RECV_RDMA_WITH_IMM`.
    case receiveRDMAWithImmediate = 129
}
