import FFProtocol
import Verbs

/// What a pod is shown of the device: the real limits, but an identity of its own. The vendor and part ids
/// are FreeFlow's, never a real vendor's (perftest calls Mellanox-only verbs when it sees Mellanox ids), the
/// GUIDs are made from the pod's vip, and the GID table has one entry, the pod's virtual GID.
public enum VirtualDevice {
    /// The virtual GID table: index 0 is `::ffff:vip`.
    public static let gidTableLength: Int32 = 1
    /// Not an IEEE OUI of any NIC vendor (0 is what software devices report for "none").
    public static let vendorID: UInt32 = 0
    /// FreeFlow's part id.
    public static let vendorPartID: UInt32 = 0xF4EE

    /// The node and system-image GUID a pod with `vip` sees: FreeFlow's prefix and the vip.
    public static func guid(vip: IPv4Address) -> UInt64 {
        0x0246_4600_0000_0000 | UInt64(vip.bytes[0]) << 24 | UInt64(vip.bytes[1]) << 16 | UInt64(vip.bytes[2]) << 8 | UInt64(vip.bytes[3])
    }

    static func attributes(of real: Verbs.DeviceAttributes, vip: IPv4Address) -> FFProtocol.DeviceAttributes {
        let guid = guid(vip: vip)
        var a = FFProtocol.DeviceAttributes()
        a.firmwareVersion = "freeflow-1"
        a.nodeGUID = guid
        a.systemImageGUID = guid
        a.maxMRSize = real.maxMRSize
        a.pageSizeCap = real.pageSizeCap
        a.vendorID = vendorID
        a.vendorPartID = vendorPartID
        a.hardwareVersion = 0
        a.deviceCapFlags = real.capabilityFlags
        a.atomicCap = AtomicCapability(rawValue: real.atomicCapability) ?? .none
        a.maxQP = Int32(clamping: real.maxQP)
        a.maxQPWR = Int32(clamping: real.maxQPWorkRequests)
        a.maxSGE = Int32(clamping: min(real.maxSGE, WireLimits.maxSGEPerWR))
        a.maxSGERead = a.maxSGE
        a.maxCQ = Int32(clamping: real.maxCQ)
        a.maxCQE = Int32(clamping: real.maxCQE)
        a.maxMR = Int32(clamping: real.maxMR)
        a.maxPD = Int32(clamping: real.maxPD)
        a.maxQPReadAtomic = Int32(clamping: real.maxQPReadAtomic)
        a.maxQPInitReadAtomic = Int32(clamping: real.maxQPInitiatorReadAtomic)
        a.maxAH = Int32(clamping: real.maxAH)
        a.maxSRQ = Int32(clamping: real.maxSRQ)
        a.maxSRQWR = Int32(clamping: real.maxSRQWorkRequests)
        a.maxSRQSGE = Int32(clamping: min(real.maxSRQSGE, WireLimits.maxSGEPerWR))
        a.maxPkeys = real.maxPkeys
        a.localCAAckDelay = real.localCAAckDelay
        a.physicalPortCount = 1
        return a
    }

    static func port(_ real: Verbs.PortAttributes) -> FFProtocol.PortAttributes {
        var p = FFProtocol.PortAttributes()
        p.state = FFProtocol.PortState(rawValue: real.rawState) ?? .down
        p.maxMTU = real.maxMTU.flatMap { FFProtocol.MTU(rawValue: $0.rawValue) } ?? .mtu1024
        p.activeMTU = real.activeMTU.flatMap { FFProtocol.MTU(rawValue: $0.rawValue) } ?? .mtu1024
        p.gidTableLength = gidTableLength
        p.portCapFlags = real.capabilityFlags
        p.maxMessageSize = real.maxMessageSize
        p.pkeyTableLength = real.pkeyTableLength
        p.lid = 0
        p.smLID = 0
        p.lmc = 0
        p.activeWidth = real.activeWidth
        p.activeSpeed = real.activeSpeed
        p.physicalState = real.physicalState
        p.linkLayer = .ethernet
        return p
    }
}
