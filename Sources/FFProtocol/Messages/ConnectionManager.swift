/// rdma_cm through the router (docs/protocol.md, "Connection manager"; docs/rdma-cm.md).
///
/// A client makes event channels (`cmCreateChannel`, whose reply carries the descriptor the router writes
/// `CMEvent` datagrams to) and sends every other connection-manager call as one `cmCall` carrying a
/// `CMRequest`, answered by `cmCallReply` (`CMReply`) or `error`. Addresses are always vips.

/// An rdma_cm event channel handle.
public struct CMChannelHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// An rdma_cm identifier handle (`struct rdma_cm_id`).
public struct CMIDHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// `enum rdma_port_space` values the router serves.
public enum CMPortSpace: UInt16, Sendable, CaseIterable {
    /// `RDMA_PS_IPOIB` (UD).
    case ipoib = 0x0002
    /// `RDMA_PS_TCP` (RC).
    case tcp = 0x0106
    /// `RDMA_PS_UDP` (UD).
    case udp = 0x0111
    /// `RDMA_PS_IB` (RC or UD).
    case ib = 0x013F
}

/// `enum rdma_cm_event_type`.
public enum CMEventType: UInt32, Sendable, CaseIterable {
    /// `RDMA_CM_EVENT_ADDR_RESOLVED`.
    case addressResolved = 0
    /// `RDMA_CM_EVENT_ADDR_ERROR`.
    case addressError = 1
    /// `RDMA_CM_EVENT_ROUTE_RESOLVED`.
    case routeResolved = 2
    /// `RDMA_CM_EVENT_ROUTE_ERROR`.
    case routeError = 3
    /// `RDMA_CM_EVENT_CONNECT_REQUEST`.
    case connectRequest = 4
    /// `RDMA_CM_EVENT_CONNECT_RESPONSE`.
    case connectResponse = 5
    /// `RDMA_CM_EVENT_CONNECT_ERROR`.
    case connectError = 6
    /// `RDMA_CM_EVENT_UNREACHABLE`.
    case unreachable = 7
    /// `RDMA_CM_EVENT_REJECTED`.
    case rejected = 8
    /// `RDMA_CM_EVENT_ESTABLISHED`.
    case established = 9
    /// `RDMA_CM_EVENT_DISCONNECTED`.
    case disconnected = 10
    /// `RDMA_CM_EVENT_DEVICE_REMOVAL`.
    case deviceRemoval = 11
    /// `RDMA_CM_EVENT_MULTICAST_JOIN`.
    case multicastJoin = 12
    /// `RDMA_CM_EVENT_MULTICAST_ERROR`.
    case multicastError = 13
    /// `RDMA_CM_EVENT_ADDR_CHANGE`.
    case addressChange = 14
    /// `RDMA_CM_EVENT_TIMEWAIT_EXIT`.
    case timewaitExit = 15
}

/// Private-data sizes (bytes) the router passes through, after its own header on connect.
public enum CMPrivateData {
    /// The most any CM message carries on the wire of this protocol (an RC accept's REP).
    public static let maxLength = 196
    /// The router's header in a connect request's private data: magic, version, flags, destination vip, source vip.
    public static let headerLength = 12
    /// The header of a UD (SIDR) connect: the 12 bytes and the connecting pod's QP number, which a SIDR REQ does not
    /// carry.
    public static let datagramHeaderLength = headerLength + 4
    /// What an RC connect leaves the application: 56 (IB CM REQ after the kernel's rdma_cm header) − 12.
    public static let connectRC = 56 - headerLength
    /// What a UD (SIDR) connect leaves the application: 180 (SIDR REQ after the kernel's rdma_cm header) − 16.
    public static let connectUD = 180 - datagramHeaderLength
    /// An RC accept (REP): all of it.
    public static let acceptRC = 196
    /// A UD accept (SIDR REP).
    public static let acceptUD = 136
    /// A reject (REJ).
    public static let reject = 148
}

/// What connect, accept and reject carry (`struct rdma_conn_param`); the QP is named by its number, which
/// the router looks up among the session's own QPs.
public struct CMConnectionParameters: WireCodable {
    /// The cm id.
    public var id: CMIDHandle
    /// The QP number (`conn_param->qp_num` or the id's QP); 0 for none (reject).
    public var qpNum: UInt32
    /// `responder_resources`.
    public var responderResources: UInt8
    /// `initiator_depth`.
    public var initiatorDepth: UInt8
    /// `retry_count` ≤ 7.
    public var retryCount: UInt8
    /// `rnr_retry_count` ≤ 7.
    public var rnrRetryCount: UInt8
    /// `flow_control`.
    public var flowControl: Bool
    /// `srq`.
    public var srq: Bool
    /// The application's private data, ≤ `CMPrivateData.maxLength` (the router checks the operation's own budget).
    public var privateData: [UInt8]

    /// Creates the parameters.
    public init(id: CMIDHandle, qpNum: UInt32 = 0, responderResources: UInt8 = 0, initiatorDepth: UInt8 = 0,
                retryCount: UInt8 = 7,
                rnrRetryCount: UInt8 = 7, flowControl: Bool = false, srq: Bool = false, privateData: [UInt8] = []) {
        self.id = id
        self.qpNum = qpNum
        self.responderResources = responderResources
        self.initiatorDepth = initiatorDepth
        self.retryCount = retryCount
        self.rnrRetryCount = rnrRetryCount
        self.flowControl = flowControl
        self.srq = srq
        self.privateData = privateData
    }

    /// Appends 16 + private data bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(id, "cm.id")
        try w.bounded(qpNum, 0...0xFF_FFFF, "cm.qpNum")
        w.u8(responderResources)
        w.u8(initiatorDepth)
        try w.bounded(retryCount, 0...7, "cm.retryCount")
        try w.bounded(rnrRetryCount, 0...7, "cm.rnrRetryCount")
        w.bool(flowControl)
        w.bool(srq)
        try w.count16(privateData.count, max: CMPrivateData.maxLength, "cm.privateData")
        w.raw(privateData)
    }

    /// Reads 16 + private data bytes.
    public init(from r: inout WireReader) throws(WireError) {
        id = try r.handle(CMIDHandle.self, "cm.id")
        qpNum = try r.bounded(UInt32.self, 0...0xFF_FFFF, "cm.qpNum")
        responderResources = try r.u8("cm.responderResources")
        initiatorDepth = try r.u8("cm.initiatorDepth")
        retryCount = try r.bounded(UInt8.self, 0...7, "cm.retryCount")
        rnrRetryCount = try r.bounded(UInt8.self, 0...7, "cm.rnrRetryCount")
        flowControl = try r.bool("cm.flowControl")
        srq = try r.bool("cm.srq")
        let count = try r.count16(max: CMPrivateData.maxLength, "cm.privateData")
        privateData = try r.raw(count, "cm.privateData")
    }
}

/// One connection-manager call (`cmCall`): a `u16` operation, 2 reserved bytes, then the operation's fields.
public enum CMRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CMReply
    /// `cmCall`.
    public static let kind = MessageKind(0x0091, "cmCall")
    /// rdma_create_id: events go to `channel`.
    case createID(channel: CMChannelHandle, portSpace: CMPortSpace)
    /// rdma_destroy_id.
    case destroyID(CMIDHandle)
    /// rdma_bind_addr: the pod's vip or 0.0.0.0 (any), port 0 for one the router picks.
    case bind(CMIDHandle, address: IPv4Address, port: UInt16)
    /// rdma_resolve_addr: `source` 0.0.0.0 for the pod's vip; answered by an ADDR_RESOLVED or ADDR_ERROR event.
    case resolveAddress(CMIDHandle, source: IPv4Address, destination: IPv4Address, port: UInt16,
                        timeoutMilliseconds: UInt32)
    /// rdma_resolve_route: answered by a ROUTE_RESOLVED event.
    case resolveRoute(CMIDHandle, timeoutMilliseconds: UInt32)
    /// rdma_listen.
    case listen(CMIDHandle, backlog: Int32)
    /// rdma_connect.
    case connect(CMConnectionParameters)
    /// rdma_accept.
    case accept(CMConnectionParameters)
    /// rdma_reject (only the id and the private data are used).
    case reject(CMConnectionParameters)
    /// rdma_disconnect.
    case disconnect(CMIDHandle)
    /// rdma_create_qp on an id: binds the session's QP `qp` to the id; the router moves it to INIT (RC) or RTS (UD).
    case attachQP(CMIDHandle, qp: QPHandle)
    /// rdma_establish (and the end of the active side's connect): the QP is ready to receive.
    case establish(CMIDHandle)
    /// rdma_migrate_id: later events go to `channel`.
    case migrate(CMIDHandle, channel: CMChannelHandle)
    /// rdma_destroy_event_channel: the router closes its end; events of ids still on it are dropped.
    case destroyChannel(CMChannelHandle)
    /// ibv_init_ah_from_wc: the vip of the pod whose QP `sourceQPN` sent a UD message (the GRH's source GID `gid`, a
    /// node's GID or zeros) that the session's QP `receiverQPN` received; the reply's address is that vip.
    case resolveSender(gid: GID, sourceQPN: UInt32, receiverQPN: UInt32)

    /// The operation number on the wire.
    public var operation: UInt16 {
        switch self {
        case .createID: 1
        case .destroyID: 2
        case .bind: 3
        case .resolveAddress: 4
        case .resolveRoute: 5
        case .listen: 6
        case .connect: 7
        case .accept: 8
        case .reject: 9
        case .disconnect: 10
        case .attachQP: 11
        case .establish: 12
        case .migrate: 13
        case .destroyChannel: 14
        case .resolveSender: 15
        }
    }

    /// Appends the operation and its fields.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u16(operation)
        w.reserved(2)
        switch self {
        case .createID(let channel, let space):
            try w.handle(channel, "cm.channel")
            w.u16(space.rawValue)
            w.reserved(2)
        case .destroyID(let id), .disconnect(let id), .establish(let id):
            try w.handle(id, "cm.id")
        case .bind(let id, let address, let port):
            try w.handle(id, "cm.id")
            try address.encode(to: &w)
            w.u16(port)
            w.reserved(2)
        case .resolveAddress(let id, let source, let destination, let port, let timeout):
            try w.handle(id, "cm.id")
            try source.encode(to: &w)
            try destination.encode(to: &w)
            w.u16(port)
            w.reserved(2)
            w.u32(timeout)
        case .resolveRoute(let id, let timeout):
            try w.handle(id, "cm.id")
            w.u32(timeout)
        case .listen(let id, let backlog):
            try w.handle(id, "cm.id")
            try w.nonNegativeI32(backlog, "cm.backlog")
        case .connect(let p), .accept(let p), .reject(let p):
            try p.encode(to: &w)
        case .attachQP(let id, let qp):
            try w.handle(id, "cm.id")
            try w.handle(qp, "cm.qp")
        case .migrate(let id, let channel):
            try w.handle(id, "cm.id")
            try w.handle(channel, "cm.channel")
        case .destroyChannel(let channel):
            try w.handle(channel, "cm.channel")
        case .resolveSender(let gid, let source, let receiver):
            try gid.encode(to: &w)
            try w.bounded(source, 0...0xFF_FFFF, "cm.sourceQPN")
            try w.bounded(receiver, 0...0xFF_FFFF, "cm.receiverQPN")
        }
    }

    /// Reads the operation and its fields; unknown operations are rejected.
    public init(from r: inout WireReader) throws(WireError) {
        let at = r.offset
        let operation = try r.u16("cm.operation")
        try r.reserved(2, "cm.reserved")
        switch operation {
        case 1:
            let channel = try r.handle(CMChannelHandle.self, "cm.channel")
            let space = try r.enumeration(CMPortSpace.self, "cm.portSpace")
            try r.reserved(2, "cm.reserved")
            self = .createID(channel: channel, portSpace: space)
        case 2: self = .destroyID(try r.handle(CMIDHandle.self, "cm.id"))
        case 3:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            let address = try IPv4Address(from: &r)
            let port = try r.u16("cm.port")
            try r.reserved(2, "cm.reserved")
            self = .bind(id, address: address, port: port)
        case 4:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            let source = try IPv4Address(from: &r)
            let destination = try IPv4Address(from: &r)
            let port = try r.u16("cm.port")
            try r.reserved(2, "cm.reserved")
            self = .resolveAddress(id, source: source, destination: destination, port: port,
                                   timeoutMilliseconds: try r.u32("cm.timeout"))
        case 5:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            self = .resolveRoute(id, timeoutMilliseconds: try r.u32("cm.timeout"))
        case 6:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            self = .listen(id, backlog: try r.nonNegativeI32("cm.backlog"))
        case 7: self = .connect(try CMConnectionParameters(from: &r))
        case 8: self = .accept(try CMConnectionParameters(from: &r))
        case 9: self = .reject(try CMConnectionParameters(from: &r))
        case 10: self = .disconnect(try r.handle(CMIDHandle.self, "cm.id"))
        case 11:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            self = .attachQP(id, qp: try r.handle(QPHandle.self, "cm.qp"))
        case 12: self = .establish(try r.handle(CMIDHandle.self, "cm.id"))
        case 13:
            let id = try r.handle(CMIDHandle.self, "cm.id")
            self = .migrate(id, channel: try r.handle(CMChannelHandle.self, "cm.channel"))
        case 14: self = .destroyChannel(try r.handle(CMChannelHandle.self, "cm.channel"))
        case 15:
            let gid = try GID(from: &r)
            let source = try r.bounded(UInt32.self, 0...0xFF_FFFF, "cm.sourceQPN")
            self = .resolveSender(gid: gid, sourceQPN: source,
                                  receiverQPN: try r.bounded(UInt32.self, 0...0xFF_FFFF, "cm.receiverQPN"))
        default:
            throw WireError(.valueOutOfRange(UInt64(operation)), field: "cm.operation", offset: at)
        }
    }
}

/// `cmCallReply`: the id a createID made (else none) and the id's local address after bind (else 0.0.0.0:0).
public struct CMReply: WireCodable {
    /// The new id (createID), else nil.
    public var id: CMIDHandle?
    /// The local vip.
    public var address: IPv4Address
    /// The local port.
    public var port: UInt16

    /// Creates the reply.
    public init(id: CMIDHandle? = nil, address: IPv4Address = IPv4Address(0, 0, 0, 0), port: UInt16 = 0) {
        self.id = id
        self.address = address
        self.port = port
    }

    /// Appends 12 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.optionalHandle(id, "cmReply.id")
        try address.encode(to: &w)
        w.u16(port)
        w.reserved(2)
    }

    /// Reads 12 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        id = try r.optionalHandle(CMIDHandle.self, "cmReply.id")
        address = try IPv4Address(from: &r)
        port = try r.u16("cmReply.port")
        try r.reserved(2, "cmReply.reserved")
    }
}

/// One rdma_cm event, one datagram on an event channel's descriptor (router → client).
///
/// Besides what `struct rdma_cm_event` holds, it carries what librdmacm would ask the kernel for with
/// `rdma_init_qp_attr`: the peer's QP number and PSN, the local PSN, the path MTU, so that the client library
/// moves its QP to RTR and RTS itself, with the peer's virtual GID `::ffff:remoteVIP`.
public struct CMEvent: WireCodable {
    /// The id the event is for; a CONNECT_REQUEST's is a new id, owned by the listener's session.
    public var id: CMIDHandle
    /// CONNECT_REQUEST: the listening id.
    public var listenID: CMIDHandle?
    /// The event.
    public var type: CMEventType
    /// 0, a negative errno, or for REJECTED the IB CM reject reason (as `rdma_cm_event.status`); −4095…4095.
    public var status: Int32
    /// The id's local vip and port.
    public var localAddress: IPv4Address
    /// The id's local port.
    public var localPort: UInt16
    /// The peer's port.
    public var remotePort: UInt16
    /// The peer's vip.
    public var remoteAddress: IPv4Address
    /// The peer's QP number (connect request, established, UD accept).
    public var remoteQPN: UInt32
    /// The peer's Q_Key (UD).
    public var qkey: UInt32
    /// The PSN the peer sends with: the local QP's rq_psn.
    public var remotePSN: UInt32
    /// The PSN the local QP sends with: its sq_psn.
    public var localPSN: UInt32
    /// The peer's `responder_resources`.
    public var responderResources: UInt8
    /// The peer's `initiator_depth`.
    public var initiatorDepth: UInt8
    /// `retry_count`.
    public var retryCount: UInt8
    /// `rnr_retry_count`.
    public var rnrRetryCount: UInt8
    /// The path MTU (`ibv_mtu`), 0 when not known yet.
    public var pathMTU: UInt8
    /// The peer's private data (the router's own header removed).
    public var privateData: [UInt8]
    /// Why, for ADDR_ERROR, REJECTED, UNREACHABLE and the like; empty otherwise.
    public var reason: String

    /// Creates an event with the peer fields empty.
    public init(id: CMIDHandle, type: CMEventType, status: Int32 = 0, listenID: CMIDHandle? = nil,
                localAddress: IPv4Address = IPv4Address(0, 0, 0, 0), localPort: UInt16 = 0,
                remoteAddress: IPv4Address = IPv4Address(0, 0, 0, 0), remotePort: UInt16 = 0, reason: String = "") {
        self.id = id
        self.listenID = listenID
        self.type = type
        self.status = status
        self.localAddress = localAddress
        self.localPort = localPort
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        remoteQPN = 0
        qkey = 0
        remotePSN = 0
        localPSN = 0
        responderResources = 0
        initiatorDepth = 0
        retryCount = 0
        rnrRetryCount = 0
        pathMTU = 0
        privateData = []
        self.reason = reason
    }

    /// Appends 52 + private data + 2 + reason bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(id, "cmEvent.id")
        try w.optionalHandle(listenID, "cmEvent.listenID")
        w.u32(type.rawValue)
        guard status <= 4095, status >= -4095 else {
            throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: status))), field: "cmEvent.status",
                            offset: w.offset)
        }
        w.i32(status)
        try localAddress.encode(to: &w)
        w.u16(localPort)
        w.u16(remotePort)
        try remoteAddress.encode(to: &w)
        try w.bounded(remoteQPN, 0...0xFF_FFFF, "cmEvent.remoteQPN")
        w.u32(qkey)
        try w.bounded(remotePSN, 0...0xFF_FFFF, "cmEvent.remotePSN")
        try w.bounded(localPSN, 0...0xFF_FFFF, "cmEvent.localPSN")
        w.u8(responderResources)
        w.u8(initiatorDepth)
        try w.bounded(retryCount, 0...7, "cmEvent.retryCount")
        try w.bounded(rnrRetryCount, 0...7, "cmEvent.rnrRetryCount")
        try w.bounded(pathMTU, 0...5, "cmEvent.pathMTU")
        w.reserved(1)
        try w.count16(privateData.count, max: CMPrivateData.maxLength, "cmEvent.privateData")
        w.raw(privateData)
        try w.string(reason, max: WireLimits.maxReasonLength, "cmEvent.reason")
    }

    /// Reads an event.
    public init(from r: inout WireReader) throws(WireError) {
        id = try r.handle(CMIDHandle.self, "cmEvent.id")
        listenID = try r.optionalHandle(CMIDHandle.self, "cmEvent.listenID")
        type = try r.enumeration(CMEventType.self, "cmEvent.type")
        let at = r.offset
        status = try r.i32("cmEvent.status")
        guard status <= 4095, status >= -4095 else {
            throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: status))), field: "cmEvent.status", offset: at)
        }
        localAddress = try IPv4Address(from: &r)
        localPort = try r.u16("cmEvent.localPort")
        remotePort = try r.u16("cmEvent.remotePort")
        remoteAddress = try IPv4Address(from: &r)
        remoteQPN = try r.bounded(UInt32.self, 0...0xFF_FFFF, "cmEvent.remoteQPN")
        qkey = try r.u32("cmEvent.qkey")
        remotePSN = try r.bounded(UInt32.self, 0...0xFF_FFFF, "cmEvent.remotePSN")
        localPSN = try r.bounded(UInt32.self, 0...0xFF_FFFF, "cmEvent.localPSN")
        responderResources = try r.u8("cmEvent.responderResources")
        initiatorDepth = try r.u8("cmEvent.initiatorDepth")
        retryCount = try r.bounded(UInt8.self, 0...7, "cmEvent.retryCount")
        rnrRetryCount = try r.bounded(UInt8.self, 0...7, "cmEvent.rnrRetryCount")
        pathMTU = try r.bounded(UInt8.self, 0...5, "cmEvent.pathMTU")
        try r.reserved(1, "cmEvent.reserved")
        let count = try r.count16(max: CMPrivateData.maxLength, "cmEvent.privateData")
        privateData = try r.raw(count, "cmEvent.privateData")
        reason = try r.string(max: WireLimits.maxReasonLength, "cmEvent.reason")
    }

    /// The event as one datagram (no header: the channel carries nothing else).
    public func encode() throws(WireError) -> [UInt8] {
        var w = WireWriter(capacity: 64 + privateData.count + reason.utf8.count)
        try encode(to: &w)
        return w.bytes
    }

    /// Reads one datagram of an event channel.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CMEvent {
        var r = WireReader(bytes)
        let event = try CMEvent(from: &r)
        try r.finish("cmEvent")
        return event
    }
}

/// rdma_create_event_channel (empty body); the reply is the handle + 1 descriptor (its event datagrams).
public struct CMCreateChannelRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CMChannelHandle
    /// `cmCreateChannel`.
    public static let kind = MessageKind(0x0090, "cmCreateChannel")
    /// The reply carries one descriptor.
    public static var replyDescriptors: UInt8 { 1 }
    /// Creates the request.
    public init() {}
    /// Appends nothing (empty body).
    public func encode(to w: inout WireWriter) throws(WireError) {}
    /// Reads nothing (empty body).
    public init(from r: inout WireReader) throws(WireError) {}
}
