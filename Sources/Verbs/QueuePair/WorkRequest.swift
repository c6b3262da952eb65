import CVerbs

/// One scatter/gather entry (`struct ibv_sge`): `length` bytes at `address` in a region with `lkey`.
public struct ScatterGatherElement: Hashable, Sendable {
    /// Local address.
    public var address: UInt64
    /// Byte count.
    public var length: UInt32
    /// Local key of the memory region holding the bytes.
    public var lkey: UInt32

    /// An entry for `length` bytes at `address`.
    public init(address: UInt64, length: UInt32, lkey: UInt32) {
        self.address = address
        self.length = length
        self.lkey = lkey
    }
}

/// Flags of a send work request (`enum ibv_send_flags`).
public struct SendFlags: OptionSet, Hashable, Sendable {
    /// The `IBV_SEND_*` bits.
    public let rawValue: UInt32
    /// Wraps `IBV_SEND_*` bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IBV_SEND_FENCE.
    public static let fence = SendFlags(rawValue: IBV_SEND_FENCE.rawValue)
    /// IBV_SEND_SIGNALED: generate a completion even when the QP does not signal all.
    public static let signaled = SendFlags(rawValue: IBV_SEND_SIGNALED.rawValue)
    /// IBV_SEND_SOLICITED.
    public static let solicited = SendFlags(rawValue: IBV_SEND_SOLICITED.rawValue)
    /// IBV_SEND_INLINE: copy the payload at post time (no lkey needed).
    public static let inline = SendFlags(rawValue: IBV_SEND_INLINE.rawValue)
}

/// The operation of a send work request, with what each needs (ibv_post_send(3)).
public enum SendOperation: Hashable, Sendable {
    /// IBV_WR_SEND.
    case send
    /// IBV_WR_SEND_WITH_IMM; the immediate is given in host order.
    case sendWithImmediate(UInt32)
    /// IBV_WR_RDMA_WRITE.
    case rdmaWrite(remoteAddress: UInt64, rkey: UInt32)
    /// IBV_WR_RDMA_WRITE_WITH_IMM; the immediate is given in host order.
    case rdmaWriteWithImmediate(remoteAddress: UInt64, rkey: UInt32, immediate: UInt32)
    /// IBV_WR_RDMA_READ.
    case rdmaRead(remoteAddress: UInt64, rkey: UInt32)
    /// IBV_WR_ATOMIC_CMP_AND_SWP on the 8 bytes at `remoteAddress`; the old value lands in the SGE.
    case compareAndSwap(remoteAddress: UInt64, rkey: UInt32, compare: UInt64, swap: UInt64)
    /// IBV_WR_ATOMIC_FETCH_AND_ADD on the 8 bytes at `remoteAddress`; the old value lands in the SGE.
    case fetchAndAdd(remoteAddress: UInt64, rkey: UInt32, add: UInt64)
}

/// Where a UD send goes.
public struct DatagramDestination: Sendable {
    /// The address handle of the peer; kept alive by the request.
    public var addressHandle: AddressHandle
    /// The peer QP's number.
    public var remoteQPN: UInt32
    /// The peer QP's Q_Key.
    public var remoteQKey: UInt32

    /// A destination QP `remoteQPN` behind `addressHandle`.
    public init(addressHandle: AddressHandle, remoteQPN: UInt32, remoteQKey: UInt32) {
        self.addressHandle = addressHandle
        self.remoteQPN = remoteQPN
        self.remoteQKey = remoteQKey
    }
}

/// A send work request. The memory its entries name must stay registered until its completion.
public struct SendWorkRequest: Sendable {
    /// Returned in the completion.
    public var id: UInt64
    /// What to do.
    public var operation: SendOperation
    /// Local data: the payload, or where READ and atomic results land.
    public var scatterGather: [ScatterGatherElement]
    /// Flags.
    public var flags: SendFlags
    /// The peer of a UD send; nil on connected QPs.
    public var destination: DatagramDestination?

    /// A request `id` doing `operation` over `scatterGather`.
    public init(id: UInt64, operation: SendOperation, scatterGather: [ScatterGatherElement],
                flags: SendFlags = [.signaled],
                destination: DatagramDestination? = nil) {
        self.id = id
        self.operation = operation
        self.scatterGather = scatterGather
        self.flags = flags
        self.destination = destination
    }

    /// Fills `wr` (already zeroed) with a request's fields, except its `sg_list` and `next`.
    static func fill(_ wr: inout ibv_send_wr, id: UInt64, operation: SendOperation, flags: SendFlags, sgeCount: Int,
                     destination: DatagramDestination?) {
        wr.wr_id = id
        wr.num_sge = Int32(clamping: sgeCount)
        wr.send_flags = flags.rawValue
        switch operation {
        case .send:
            wr.opcode = IBV_WR_SEND
        case .sendWithImmediate(let imm):
            wr.opcode = IBV_WR_SEND_WITH_IMM
            wr.imm_data = imm.bigEndian
        case .rdmaWrite(let address, let rkey):
            wr.opcode = IBV_WR_RDMA_WRITE
            wr.wr.rdma.remote_addr = address
            wr.wr.rdma.rkey = rkey
        case .rdmaWriteWithImmediate(let address, let rkey, let imm):
            wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM
            wr.wr.rdma.remote_addr = address
            wr.wr.rdma.rkey = rkey
            wr.imm_data = imm.bigEndian
        case .rdmaRead(let address, let rkey):
            wr.opcode = IBV_WR_RDMA_READ
            wr.wr.rdma.remote_addr = address
            wr.wr.rdma.rkey = rkey
        case .compareAndSwap(let address, let rkey, let compare, let swap):
            wr.opcode = IBV_WR_ATOMIC_CMP_AND_SWP
            wr.wr.atomic.remote_addr = address
            wr.wr.atomic.rkey = rkey
            wr.wr.atomic.compare_add = compare
            wr.wr.atomic.swap = swap
        case .fetchAndAdd(let address, let rkey, let add):
            wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD
            wr.wr.atomic.remote_addr = address
            wr.wr.atomic.rkey = rkey
            wr.wr.atomic.compare_add = add
        }
        if let destination {
            wr.wr.ud.ah = destination.addressHandle.raw
            wr.wr.ud.remote_qpn = destination.remoteQPN
            wr.wr.ud.remote_qkey = destination.remoteQKey
        }
    }
}

/// A receive work request: where an incoming SEND's payload lands.
public struct ReceiveWorkRequest: Hashable, Sendable {
    /// Returned in the completion.
    public var id: UInt64
    /// Buffers to fill, in order.
    public var scatterGather: [ScatterGatherElement]

    /// A request `id` over `scatterGather`.
    public init(id: UInt64, scatterGather: [ScatterGatherElement]) {
        self.id = id
        self.scatterGather = scatterGather
    }
}
