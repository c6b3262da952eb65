/// Queue pair capacities (`struct ibv_qp_cap`): requested in create_qp, actual values in its reply.
public struct QPCapabilities: WireCodable {
    /// Most outstanding send work requests.
    public var maxSendWR: UInt32
    /// Most outstanding receive work requests.
    public var maxRecvWR: UInt32
    /// Most scatter/gather entries per send work request.
    public var maxSendSGE: UInt32
    /// Most scatter/gather entries per receive work request.
    public var maxRecvSGE: UInt32
    /// Most inline payload bytes per send work request.
    public var maxInlineData: UInt32

    /// Creates capacities.
    public init(maxSendWR: UInt32, maxRecvWR: UInt32, maxSendSGE: UInt32, maxRecvSGE: UInt32, maxInlineData: UInt32) {
        self.maxSendWR = maxSendWR
        self.maxRecvWR = maxRecvWR
        self.maxSendSGE = maxSendSGE
        self.maxRecvSGE = maxRecvSGE
        self.maxInlineData = maxInlineData
    }

    /// Appends 20 bytes; SGE counts and inline size are checked against `WireLimits`.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u32(maxSendWR)
        w.u32(maxRecvWR)
        try w.bounded(maxSendSGE, 0...UInt32(WireLimits.maxSGEPerWR), "cap.maxSendSGE")
        try w.bounded(maxRecvSGE, 0...UInt32(WireLimits.maxSGEPerWR), "cap.maxRecvSGE")
        try w.bounded(maxInlineData, 0...UInt32(WireLimits.maxInlineData), "cap.maxInlineData")
    }

    /// Reads 20 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        maxSendWR = try r.u32("cap.maxSendWR")
        maxRecvWR = try r.u32("cap.maxRecvWR")
        maxSendSGE = try r.bounded(UInt32.self, 0...UInt32(WireLimits.maxSGEPerWR), "cap.maxSendSGE")
        maxRecvSGE = try r.bounded(UInt32.self, 0...UInt32(WireLimits.maxSGEPerWR), "cap.maxRecvSGE")
        maxInlineData = try r.bounded(UInt32.self, 0...UInt32(WireLimits.maxInlineData), "cap.maxInlineData")
    }
}

/// The global routing header of an address vector (`struct ibv_global_route`).
///
/// `destinationGID` is always *virtual* (a pod's `::ffff:vip`); the router translates it to the
/// physical GID before touching the device.
public struct GlobalRoute: Sendable, Equatable {
    /// Destination GID (virtual).
    public var destinationGID: GID
    /// IPv6 flow label, 20 bits.
    public var flowLabel: UInt32
    /// Index of the source GID in the port's table.
    public var sourceGIDIndex: UInt8
    /// Hop limit (IPv6) / TTL.
    public var hopLimit: UInt8
    /// Traffic class (DSCP/ECN).
    public var trafficClass: UInt8

    /// Creates a route.
    public init(destinationGID: GID, flowLabel: UInt32 = 0, sourceGIDIndex: UInt8 = 0, hopLimit: UInt8 = 64,
                trafficClass: UInt8 = 0) {
        self.destinationGID = destinationGID
        self.flowLabel = flowLabel
        self.sourceGIDIndex = sourceGIDIndex
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
    }
}

/// An address vector (`struct ibv_ah_attr`), used by create_ah and by modify_qp to RTR.
public struct AHAttributes: WireCodable {
    /// The global route; nil means `is_global = 0`.
    public var globalRoute: GlobalRoute?
    /// Destination LID (0 on RoCE).
    public var destinationLID: UInt16
    /// Service level, 4 bits.
    public var serviceLevel: UInt8
    /// Source path bits, 7 bits.
    public var sourcePathBits: UInt8
    /// Static rate (`enum ibv_rate` value, passed through).
    public var staticRate: UInt8
    /// Port number (1-based).
    public var port: UInt8

    /// Creates an address vector.
    public init(globalRoute: GlobalRoute? = nil, destinationLID: UInt16 = 0, serviceLevel: UInt8 = 0,
                sourcePathBits: UInt8 = 0, staticRate: UInt8 = 0, port: UInt8 = 1) {
        self.globalRoute = globalRoute
        self.destinationLID = destinationLID
        self.serviceLevel = serviceLevel
        self.sourcePathBits = sourcePathBits
        self.staticRate = staticRate
        self.port = port
    }

    /// Appends 32 bytes: 8 bytes of path fields, then 24 bytes of GRH (zero when there is none).
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.bool(globalRoute != nil)
        try w.bounded(serviceLevel, 0...15, "ah.serviceLevel")
        try w.bounded(sourcePathBits, 0...127, "ah.sourcePathBits")
        w.u8(staticRate)
        w.u8(port)
        w.reserved(1)
        w.u16(destinationLID)
        if let g = globalRoute {
            try g.destinationGID.encode(to: &w)
            try w.bounded(g.flowLabel, 0...0xFFFFF, "ah.grh.flowLabel")
            w.u8(g.sourceGIDIndex)
            w.u8(g.hopLimit)
            w.u8(g.trafficClass)
            w.reserved(1)
        } else {
            w.reserved(24)
        }
    }

    /// Reads 32 bytes; without `is_global` the GRH bytes must be zero.
    public init(from r: inout WireReader) throws(WireError) {
        let isGlobal = try r.bool("ah.isGlobal")
        serviceLevel = try r.bounded(UInt8.self, 0...15, "ah.serviceLevel")
        sourcePathBits = try r.bounded(UInt8.self, 0...127, "ah.sourcePathBits")
        staticRate = try r.u8("ah.staticRate")
        port = try r.u8("ah.port")
        try r.reserved(1, "ah.reserved")
        destinationLID = try r.u16("ah.destinationLID")
        if isGlobal {
            let gid = try GID(from: &r)
            let flow = try r.bounded(UInt32.self, 0...0xFFFFF, "ah.grh.flowLabel")
            let index = try r.u8("ah.grh.sourceGIDIndex")
            let hop = try r.u8("ah.grh.hopLimit")
            let tclass = try r.u8("ah.grh.trafficClass")
            try r.reserved(1, "ah.grh.reserved")
            globalRoute = GlobalRoute(destinationGID: gid, flowLabel: flow, sourceGIDIndex: index, hopLimit: hop,
                                      trafficClass: tclass)
        } else {
            try r.reserved(24, "ah.grh")
            globalRoute = nil
        }
    }
}

/// Queue pair attributes (`struct ibv_qp_attr`, the fields RESET→INIT→RTR→RTS use).
///
/// Every field is always on the wire and always validated; the accompanying `QPAttributeMask` says
/// which ones the router applies (modify_qp) or filled in (query_qp).
public struct QPAttributes: WireCodable {
    /// Target state.
    public var state: QPState = .reset
    /// Path MTU.
    public var pathMTU: MTU = .mtu1024
    /// Q_Key (UD).
    public var qkey: UInt32 = 0
    /// Receive queue start PSN, 24 bits.
    public var rqPSN: UInt32 = 0
    /// Send queue start PSN, 24 bits.
    public var sqPSN: UInt32 = 0
    /// Destination QP number, 24 bits (RC/UC).
    public var destQPN: UInt32 = 0
    /// Remote access rights granted to the QP.
    public var accessFlags: AccessFlags = []
    /// Partition key index.
    public var pkeyIndex: UInt16 = 0
    /// Outstanding RDMA reads/atomics this QP may initiate.
    public var maxReadAtomic: UInt8 = 0
    /// Outstanding RDMA reads/atomics this QP accepts as target.
    public var maxDestReadAtomic: UInt8 = 0
    /// Minimum RNR NAK timer code, 5 bits.
    public var minRNRTimer: UInt8 = 0
    /// Port number (1-based).
    public var port: UInt8 = 0
    /// Local ACK timeout code, 5 bits.
    public var timeout: UInt8 = 0
    /// Retry count, 3 bits.
    public var retryCount: UInt8 = 0
    /// RNR retry count, 3 bits (7 = infinite).
    public var rnrRetry: UInt8 = 0
    /// Primary path address vector (destination GID virtual).
    public var addressVector = AHAttributes()

    /// Creates attributes with verbs' zero defaults (MTU 1024, since 0 is not an MTU).
    public init() {}

    /// Appends 72 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u32(state.rawValue)
        w.u32(pathMTU.rawValue)
        w.u32(qkey)
        try w.bounded(rqPSN, 0...0xFFFFFF, "qpAttr.rqPSN")
        try w.bounded(sqPSN, 0...0xFFFFFF, "qpAttr.sqPSN")
        try w.bounded(destQPN, 0...0xFFFFFF, "qpAttr.destQPN")
        try w.options(accessFlags, supported: .supported, "qpAttr.accessFlags")
        w.u16(pkeyIndex)
        w.u8(maxReadAtomic)
        w.u8(maxDestReadAtomic)
        try w.bounded(minRNRTimer, 0...31, "qpAttr.minRNRTimer")
        w.u8(port)
        try w.bounded(timeout, 0...31, "qpAttr.timeout")
        try w.bounded(retryCount, 0...7, "qpAttr.retryCount")
        try w.bounded(rnrRetry, 0...7, "qpAttr.rnrRetry")
        w.reserved(3)
        try addressVector.encode(to: &w)
    }

    /// Reads 72 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        state = try r.enumeration(QPState.self, "qpAttr.state")
        pathMTU = try r.enumeration(MTU.self, "qpAttr.pathMTU")
        qkey = try r.u32("qpAttr.qkey")
        rqPSN = try r.bounded(UInt32.self, 0...0xFFFFFF, "qpAttr.rqPSN")
        sqPSN = try r.bounded(UInt32.self, 0...0xFFFFFF, "qpAttr.sqPSN")
        destQPN = try r.bounded(UInt32.self, 0...0xFFFFFF, "qpAttr.destQPN")
        accessFlags = try r.options(AccessFlags.self, supported: .supported, "qpAttr.accessFlags")
        pkeyIndex = try r.u16("qpAttr.pkeyIndex")
        maxReadAtomic = try r.u8("qpAttr.maxReadAtomic")
        maxDestReadAtomic = try r.u8("qpAttr.maxDestReadAtomic")
        minRNRTimer = try r.bounded(UInt8.self, 0...31, "qpAttr.minRNRTimer")
        port = try r.u8("qpAttr.port")
        timeout = try r.bounded(UInt8.self, 0...31, "qpAttr.timeout")
        retryCount = try r.bounded(UInt8.self, 0...7, "qpAttr.retryCount")
        rnrRetry = try r.bounded(UInt8.self, 0...7, "qpAttr.rnrRetry")
        try r.reserved(3, "qpAttr.reserved")
        addressVector = try AHAttributes(from: &r)
    }
}

/// Device attributes (`struct ibv_device_attr`), as the router presents them: a *virtual* device.
///
/// The router must not claim to be a real vendor's adapter (no Mellanox vendor/part IDs). GUIDs are
/// carried as numbers; verbs stores them big-endian (`__be64`), so convert with `be64toh`/`htobe64`.
public struct DeviceAttributes: WireCodable {
    /// Firmware version text, at most `WireLimits.maxFirmwareVersionLength` bytes.
    public var firmwareVersion: String = ""
    /// Node GUID (numeric value).
    public var nodeGUID: UInt64 = 0
    /// System image GUID (numeric value).
    public var systemImageGUID: UInt64 = 0
    /// Largest registrable region, bytes.
    public var maxMRSize: UInt64 = 0
    /// Supported page sizes (bit n = 2^n bytes).
    public var pageSizeCap: UInt64 = 0
    /// IEEE OUI of the vendor.
    public var vendorID: UInt32 = 0
    /// Vendor part ID.
    public var vendorPartID: UInt32 = 0
    /// Hardware version.
    public var hardwareVersion: UInt32 = 0
    /// `device_cap_flags` (`enum ibv_device_cap_flags`, passed through).
    public var deviceCapFlags: UInt32 = 0
    /// Atomic support.
    public var atomicCap: AtomicCapability = .none
    /// Most QPs.
    public var maxQP: Int32 = 0
    /// Most work requests per QP.
    public var maxQPWR: Int32 = 0
    /// Most SGEs per work request.
    public var maxSGE: Int32 = 0
    /// Most SGEs per RDMA read.
    public var maxSGERead: Int32 = 0
    /// Most CQs.
    public var maxCQ: Int32 = 0
    /// Most entries per CQ.
    public var maxCQE: Int32 = 0
    /// Most MRs.
    public var maxMR: Int32 = 0
    /// Most PDs.
    public var maxPD: Int32 = 0
    /// Most outstanding reads/atomics per QP as target.
    public var maxQPReadAtomic: Int32 = 0
    /// Most outstanding reads/atomics on the device as target.
    public var maxResourceReadAtomic: Int32 = 0
    /// Most outstanding reads/atomics per QP as initiator.
    public var maxQPInitReadAtomic: Int32 = 0
    /// Most address handles.
    public var maxAH: Int32 = 0
    /// Most SRQs.
    public var maxSRQ: Int32 = 0
    /// Most work requests per SRQ.
    public var maxSRQWR: Int32 = 0
    /// Most SGEs per SRQ work request.
    public var maxSRQSGE: Int32 = 0
    /// Partition table size.
    public var maxPkeys: UInt16 = 0
    /// Local CA ACK delay.
    public var localCAAckDelay: UInt8 = 0
    /// Number of physical ports.
    public var physicalPortCount: UInt8 = 0

    /// Creates zeroed attributes.
    public init() {}

    /// Appends the string, then 116 fixed bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.string(firmwareVersion, max: WireLimits.maxFirmwareVersionLength, "device.firmwareVersion")
        w.u64(nodeGUID)
        w.u64(systemImageGUID)
        w.u64(maxMRSize)
        w.u64(pageSizeCap)
        w.u32(vendorID)
        w.u32(vendorPartID)
        w.u32(hardwareVersion)
        w.u32(deviceCapFlags)
        w.u32(atomicCap.rawValue)
        for (v, name) in limits { try w.nonNegativeI32(v, name) }
        w.u16(maxPkeys)
        w.u8(localCAAckDelay)
        w.u8(physicalPortCount)
    }

    private var limits: [(Int32, String)] {
        [(maxQP, "device.maxQP"), (maxQPWR, "device.maxQPWR"), (maxSGE, "device.maxSGE"),
         (maxSGERead, "device.maxSGERead"), (maxCQ, "device.maxCQ"), (maxCQE, "device.maxCQE"),
         (maxMR, "device.maxMR"), (maxPD, "device.maxPD"), (maxQPReadAtomic, "device.maxQPReadAtomic"),
         (maxResourceReadAtomic, "device.maxResourceReadAtomic"), (maxQPInitReadAtomic, "device.maxQPInitReadAtomic"),
         (maxAH, "device.maxAH"), (maxSRQ, "device.maxSRQ"), (maxSRQWR, "device.maxSRQWR"),
         (maxSRQSGE, "device.maxSRQSGE")]
    }

    /// Reads the string and 116 fixed bytes; `int` limits must not be negative.
    public init(from r: inout WireReader) throws(WireError) {
        firmwareVersion = try r.string(max: WireLimits.maxFirmwareVersionLength, "device.firmwareVersion")
        nodeGUID = try r.u64("device.nodeGUID")
        systemImageGUID = try r.u64("device.systemImageGUID")
        maxMRSize = try r.u64("device.maxMRSize")
        pageSizeCap = try r.u64("device.pageSizeCap")
        vendorID = try r.u32("device.vendorID")
        vendorPartID = try r.u32("device.vendorPartID")
        hardwareVersion = try r.u32("device.hardwareVersion")
        deviceCapFlags = try r.u32("device.deviceCapFlags")
        atomicCap = try r.enumeration(AtomicCapability.self, "device.atomicCap")
        maxQP = try r.nonNegativeI32("device.maxQP")
        maxQPWR = try r.nonNegativeI32("device.maxQPWR")
        maxSGE = try r.nonNegativeI32("device.maxSGE")
        maxSGERead = try r.nonNegativeI32("device.maxSGERead")
        maxCQ = try r.nonNegativeI32("device.maxCQ")
        maxCQE = try r.nonNegativeI32("device.maxCQE")
        maxMR = try r.nonNegativeI32("device.maxMR")
        maxPD = try r.nonNegativeI32("device.maxPD")
        maxQPReadAtomic = try r.nonNegativeI32("device.maxQPReadAtomic")
        maxResourceReadAtomic = try r.nonNegativeI32("device.maxResourceReadAtomic")
        maxQPInitReadAtomic = try r.nonNegativeI32("device.maxQPInitReadAtomic")
        maxAH = try r.nonNegativeI32("device.maxAH")
        maxSRQ = try r.nonNegativeI32("device.maxSRQ")
        maxSRQWR = try r.nonNegativeI32("device.maxSRQWR")
        maxSRQSGE = try r.nonNegativeI32("device.maxSRQSGE")
        maxPkeys = try r.u16("device.maxPkeys")
        localCAAckDelay = try r.u8("device.localCAAckDelay")
        physicalPortCount = try r.u8("device.physicalPortCount")
    }
}

/// Port attributes (`struct ibv_port_attr`), all fields.
public struct PortAttributes: WireCodable {
    /// Logical port state.
    public var state: PortState = .down
    /// Largest MTU the port supports.
    public var maxMTU: MTU = .mtu4096
    /// MTU in use.
    public var activeMTU: MTU = .mtu1024
    /// GID table length.
    public var gidTableLength: Int32 = 0
    /// `port_cap_flags` (`enum ibv_port_cap_flags`, passed through).
    public var portCapFlags: UInt32 = 0
    /// Largest message, bytes.
    public var maxMessageSize: UInt32 = 0
    /// Bad P_Key counter.
    public var badPkeyCounter: UInt32 = 0
    /// Q_Key violation counter.
    public var qkeyViolationCounter: UInt32 = 0
    /// P_Key table length.
    public var pkeyTableLength: UInt16 = 0
    /// Base LID (0 on RoCE).
    public var lid: UInt16 = 0
    /// Subnet manager LID.
    public var smLID: UInt16 = 0
    /// `port_cap_flags2`, passed through.
    public var portCapFlags2: UInt16 = 0
    /// LID mask control.
    public var lmc: UInt8 = 0
    /// Most virtual lanes.
    public var maxVLNum: UInt8 = 0
    /// Subnet manager service level.
    public var smSL: UInt8 = 0
    /// Subnet propagation delay.
    public var subnetTimeout: UInt8 = 0
    /// `init_type_reply`.
    public var initTypeReply: UInt8 = 0
    /// Active link width code.
    public var activeWidth: UInt8 = 0
    /// Active link speed code.
    public var activeSpeed: UInt8 = 0
    /// Physical port state code.
    public var physicalState: UInt8 = 0
    /// Link layer.
    public var linkLayer: LinkLayer = .ethernet
    /// `flags` (`IBV_QPF_*`), passed through.
    public var flags: UInt8 = 0

    /// Creates default attributes.
    public init() {}

    /// Appends 56 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u32(state.rawValue)
        w.u32(maxMTU.rawValue)
        w.u32(activeMTU.rawValue)
        try w.nonNegativeI32(gidTableLength, "port.gidTableLength")
        w.u32(portCapFlags)
        w.u32(maxMessageSize)
        w.u32(badPkeyCounter)
        w.u32(qkeyViolationCounter)
        w.u16(pkeyTableLength)
        w.u16(lid)
        w.u16(smLID)
        w.u16(portCapFlags2)
        for v in [lmc, maxVLNum, smSL, subnetTimeout, initTypeReply, activeWidth, activeSpeed, physicalState] {
            w.u8(v)
        }
        w.u8(linkLayer.rawValue)
        w.u8(flags)
        w.reserved(6)
    }

    /// Reads 56 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        state = try r.enumeration(PortState.self, "port.state")
        maxMTU = try r.enumeration(MTU.self, "port.maxMTU")
        activeMTU = try r.enumeration(MTU.self, "port.activeMTU")
        gidTableLength = try r.nonNegativeI32("port.gidTableLength")
        portCapFlags = try r.u32("port.portCapFlags")
        maxMessageSize = try r.u32("port.maxMessageSize")
        badPkeyCounter = try r.u32("port.badPkeyCounter")
        qkeyViolationCounter = try r.u32("port.qkeyViolationCounter")
        pkeyTableLength = try r.u16("port.pkeyTableLength")
        lid = try r.u16("port.lid")
        smLID = try r.u16("port.smLID")
        portCapFlags2 = try r.u16("port.portCapFlags2")
        lmc = try r.u8("port.lmc")
        maxVLNum = try r.u8("port.maxVLNum")
        smSL = try r.u8("port.smSL")
        subnetTimeout = try r.u8("port.subnetTimeout")
        initTypeReply = try r.u8("port.initTypeReply")
        activeWidth = try r.u8("port.activeWidth")
        activeSpeed = try r.u8("port.activeSpeed")
        physicalState = try r.u8("port.physicalState")
        linkLayer = try r.enumeration(LinkLayer.self, "port.linkLayer")
        flags = try r.u8("port.flags")
        try r.reserved(6, "port.reserved")
    }
}
