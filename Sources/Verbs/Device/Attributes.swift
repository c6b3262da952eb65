import CVerbs

/// The device limits and identity that `ibv_query_device(3)` reports (the fields FreeFlow uses).
public struct DeviceAttributes: Hashable, Sendable {
    /// Firmware version text.
    public var firmwareVersion: String
    /// Node GUID in host order.
    public var nodeGUID: UInt64
    /// System image GUID in host order.
    public var systemImageGUID: UInt64
    /// Largest registrable memory region, bytes.
    public var maxMRSize: UInt64
    /// Supported page sizes, a bit per size.
    public var pageSizeCap: UInt64
    /// IEEE OUI of the vendor (0xffffff for rxe).
    public var vendorID: UInt32
    /// Vendor's part number.
    public var vendorPartID: UInt32
    /// Hardware version.
    public var hardwareVersion: UInt32
    /// Maximum number of QPs.
    public var maxQP: Int
    /// Maximum outstanding work requests per queue.
    public var maxQPWorkRequests: Int
    /// `IBV_DEVICE_*` capability flags.
    public var capabilityFlags: UInt32
    /// Maximum scatter/gather entries per work request.
    public var maxSGE: Int
    /// Maximum number of CQs.
    public var maxCQ: Int
    /// Maximum entries per CQ.
    public var maxCQE: Int
    /// Maximum number of MRs.
    public var maxMR: Int
    /// Maximum number of PDs.
    public var maxPD: Int
    /// Maximum outstanding RDMA READ/atomic as target, per QP.
    public var maxQPReadAtomic: Int
    /// Maximum outstanding RDMA READ/atomic as initiator, per QP.
    public var maxQPInitiatorReadAtomic: Int
    /// Atomic support (`enum ibv_atomic_cap`): 0 none, 1 within the HCA, 2 global.
    public var atomicCapability: UInt32
    /// Maximum number of address handles.
    public var maxAH: Int
    /// Maximum number of SRQs.
    public var maxSRQ: Int
    /// Maximum work requests per SRQ.
    public var maxSRQWorkRequests: Int
    /// Maximum scatter entries per SRQ work request.
    public var maxSRQSGE: Int
    /// Number of pkeys per port.
    public var maxPkeys: UInt16
    /// Local CA ACK delay.
    public var localCAAckDelay: UInt8
    /// Number of physical ports.
    public var physicalPortCount: Int

    init(_ a: ibv_device_attr) {
        var fw = a.fw_ver
        firmwareVersion = withUnsafeBytes(of: &fw) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        nodeGUID = UInt64(bigEndian: a.node_guid)
        systemImageGUID = UInt64(bigEndian: a.sys_image_guid)
        maxMRSize = a.max_mr_size
        pageSizeCap = a.page_size_cap
        vendorID = a.vendor_id
        vendorPartID = a.vendor_part_id
        hardwareVersion = a.hw_ver
        maxQP = Int(a.max_qp)
        maxQPWorkRequests = Int(a.max_qp_wr)
        capabilityFlags = UInt32(a.device_cap_flags)
        maxSGE = Int(a.max_sge)
        maxCQ = Int(a.max_cq)
        maxCQE = Int(a.max_cqe)
        maxMR = Int(a.max_mr)
        maxPD = Int(a.max_pd)
        maxQPReadAtomic = Int(a.max_qp_rd_atom)
        maxQPInitiatorReadAtomic = Int(a.max_qp_init_rd_atom)
        atomicCapability = a.atomic_cap.rawValue
        maxAH = Int(a.max_ah)
        maxSRQ = Int(a.max_srq)
        maxSRQWorkRequests = Int(a.max_srq_wr)
        maxSRQSGE = Int(a.max_srq_sge)
        maxPkeys = a.max_pkeys
        localCAAckDelay = a.local_ca_ack_delay
        physicalPortCount = Int(a.phys_port_cnt)
    }
}

/// Logical port state (`enum ibv_port_state`).
public enum PortState: UInt32, Sendable, CustomStringConvertible {
    /// No state change.
    case noChange = 0
    /// Link down.
    case down = 1
    /// Link up, not yet configured.
    case initialized = 2
    /// Configured, not yet active.
    case armed = 3
    /// Usable.
    case active = 4
    /// Active, deferred.
    case activeDefer = 5

    /// The name ibv_devinfo prints, e.g. PORT_ACTIVE.
    public var description: String {
        switch self {
        case .noChange: "PORT_NOP"
        case .down: "PORT_DOWN"
        case .initialized: "PORT_INIT"
        case .armed: "PORT_ARMED"
        case .active: "PORT_ACTIVE"
        case .activeDefer: "PORT_ACTIVE_DEFER"
        }
    }
}

/// Path MTU (`enum ibv_mtu`).
public enum MTU: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// 256 bytes.
    case mtu256 = 1
    /// 512 bytes.
    case mtu512 = 2
    /// 1024 bytes.
    case mtu1024 = 3
    /// 2048 bytes.
    case mtu2048 = 4
    /// 4096 bytes.
    case mtu4096 = 5

    /// The size in bytes.
    public var bytes: Int { 128 << Int(rawValue) }
    /// The size in bytes, as text.
    public var description: String { String(bytes) }
}

/// Link layer of a port.
public enum LinkLayer: UInt8, Sendable {
    /// Not reported.
    case unspecified = 0
    /// InfiniBand.
    case infiniband = 1
    /// Ethernet (RoCE).
    case ethernet = 2
}

/// Port attributes from `ibv_query_port(3)`.
public struct PortAttributes: Hashable, Sendable {
    /// Logical state; nil for a value this library does not know.
    public var state: PortState?
    /// Largest MTU the port supports.
    public var maxMTU: MTU?
    /// MTU in use.
    public var activeMTU: MTU?
    /// Entries in the GID table.
    public var gidTableLength: Int
    /// `IBV_PORT_*` capability flags.
    public var capabilityFlags: UInt32
    /// Largest message size.
    public var maxMessageSize: UInt32
    /// Entries in the pkey table.
    public var pkeyTableLength: UInt16
    /// Base LID (0 on Ethernet).
    public var lid: UInt16
    /// Subnet manager LID.
    public var smLID: UInt16
    /// LID mask control.
    public var lmc: UInt8
    /// Active width code.
    public var activeWidth: UInt8
    /// Active speed code.
    public var activeSpeed: UInt8
    /// Physical state code.
    public var physicalState: UInt8
    /// Link layer.
    public var linkLayer: LinkLayer?
    /// Raw `ibv_port_state` value, kept for callers that forward it.
    public var rawState: UInt32

    init(_ a: ibv_port_attr) {
        state = PortState(rawValue: a.state.rawValue)
        maxMTU = MTU(rawValue: a.max_mtu.rawValue)
        activeMTU = MTU(rawValue: a.active_mtu.rawValue)
        gidTableLength = Int(a.gid_tbl_len)
        capabilityFlags = a.port_cap_flags
        maxMessageSize = a.max_msg_sz
        pkeyTableLength = a.pkey_tbl_len
        lid = a.lid
        smLID = a.sm_lid
        lmc = a.lmc
        activeWidth = a.active_width
        activeSpeed = a.active_speed
        physicalState = a.phys_state
        linkLayer = LinkLayer(rawValue: a.link_layer)
        rawState = a.state.rawValue
    }
}
