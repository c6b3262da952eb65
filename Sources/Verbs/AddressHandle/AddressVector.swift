import CVerbs

/// The global routing header of an address (`struct ibv_global_route`); RoCE always needs one.
public struct GlobalRoute: Hashable, Sendable {
    /// Destination GID; on RoCEv2 the peer's IPv4-mapped address.
    public var destinationGID: GID
    /// Index of the local GID to send from (selects the source IP and RoCE version).
    public var sourceGIDIndex: UInt8
    /// IPv6 flow label / RoCEv2 UDP source port entropy.
    public var flowLabel: UInt32
    /// IP TTL.
    public var hopLimit: UInt8
    /// IP traffic class (DSCP/ECN).
    public var trafficClass: UInt8

    /// A route to `destinationGID` from local GID `sourceGIDIndex`.
    public init(destinationGID: GID, sourceGIDIndex: UInt8, flowLabel: UInt32 = 0, hopLimit: UInt8 = 64,
                trafficClass: UInt8 = 0) {
        self.destinationGID = destinationGID
        self.sourceGIDIndex = sourceGIDIndex
        self.flowLabel = flowLabel
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
    }
}

/// Where a QP or UD send goes (`struct ibv_ah_attr`).
public struct AddressVector: Hashable, Sendable, CustomStringConvertible {
    /// Global route; required on RoCE, nil for LID-only InfiniBand addressing.
    public var global: GlobalRoute?
    /// Destination LID (0 on RoCE).
    public var destinationLID: UInt16
    /// Service level.
    public var serviceLevel: UInt8
    /// Source path bits.
    public var sourcePathBits: UInt8
    /// Static rate code (0: port's rate).
    public var staticRate: UInt8
    /// Local port to send from.
    public var port: UInt8

    /// An address with the given route, from `port`.
    public init(global: GlobalRoute?, destinationLID: UInt16 = 0, serviceLevel: UInt8 = 0, sourcePathBits: UInt8 = 0,
                staticRate: UInt8 = 0, port: UInt8 = 1) {
        self.global = global
        self.destinationLID = destinationLID
        self.serviceLevel = serviceLevel
        self.sourcePathBits = sourcePathBits
        self.staticRate = staticRate
        self.port = port
    }

    var raw: ibv_ah_attr {
        var attr = ibv_ah_attr()
        attr.dlid = destinationLID
        attr.sl = serviceLevel
        attr.src_path_bits = sourcePathBits
        attr.static_rate = staticRate
        attr.port_num = port
        if let global {
            attr.is_global = 1
            attr.grh.dgid = global.destinationGID.raw
            attr.grh.sgid_index = global.sourceGIDIndex
            attr.grh.flow_label = global.flowLabel
            attr.grh.hop_limit = global.hopLimit
            attr.grh.traffic_class = global.trafficClass
        }
        return attr
    }

    init(_ attr: ibv_ah_attr) {
        global = attr.is_global != 0
            ? GlobalRoute(destinationGID: GID(attr.grh.dgid), sourceGIDIndex: attr.grh.sgid_index,
                          flowLabel: attr.grh.flow_label,
                          hopLimit: attr.grh.hop_limit, trafficClass: attr.grh.traffic_class)
            : nil
        destinationLID = attr.dlid
        serviceLevel = attr.sl
        sourcePathBits = attr.src_path_bits
        staticRate = attr.static_rate
        port = attr.port_num
    }

    /// "port 1 lid 0 -> gid ::ffff… (sgid 1)".
    public var description: String {
        var text = "port \(port) lid \(destinationLID)"
        if let global { text += " -> gid \(global.destinationGID) (sgid index \(global.sourceGIDIndex))" }
        return text
    }
}

/// An address handle for UD sends (`ibv_create_ah(3)`); destroyed when the last reference goes. Keeps
/// its protection domain alive.
public final class AddressHandle: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_ah>
    /// The protection domain it belongs to.
    public let pd: ProtectionDomain
    /// The address it was made from.
    public let attributes: AddressVector

    init(raw: UnsafeMutablePointer<ibv_ah>, pd: ProtectionDomain, attributes: AddressVector) {
        self.raw = raw
        self.pd = pd
        self.attributes = attributes
    }

    deinit { ibv_destroy_ah(raw) }
}
