import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// An rdma_cm event channel (`rdma_create_event_channel(3)`): a file descriptor on which the connection
/// manager reports events of the cm_ids made on it. Destroyed when the last reference goes.
public final class EventChannel: @unchecked Sendable {
    let raw: UnsafeMutablePointer<rdma_event_channel>

    /// `rdma_create_event_channel(3)`.
    public init() throws(VerbsError) {
        raw = try Call.returnsPointer("rdma_create_event_channel") { rdma_create_event_channel() }
    }

    deinit { rdma_destroy_event_channel(raw) }

    /// The channel's file descriptor.
    public var fileDescriptor: Int32 { raw.pointee.fd }

    /// `rdma_create_id(3)` in the TCP port space (reliable connected QPs), or with `datagram` in the UDP port space
    /// (UD QPs; a connect is a SIDR REQ, an accept its SIDR REP).
    public func createID(datagram: Bool = false) throws(VerbsError) -> ConnectionID {
        var id: UnsafeMutablePointer<rdma_cm_id>?
        try Call.returnsMinusOne("rdma_create_id", detail: datagram ? "UDP port space" : "TCP port space") {
            rdma_create_id(raw, &id, nil, datagram ? RDMA_PS_UDP : RDMA_PS_TCP)
        }
        return ConnectionID(raw: id!, channel: self)
    }

    /// `rdma_get_cm_event(3)`, blocking unless the fd was made non-blocking. The event is copied and
    /// acknowledged at once (rdma_ack_cm_event) so that destroying its cm_id never waits for it.
    public func getEvent() throws(VerbsError) -> ConnectionEvent {
        var event: UnsafeMutablePointer<rdma_cm_event>?
        try Call.returnsMinusOne("rdma_get_cm_event") { rdma_get_cm_event(raw, &event) }
        guard let event else { throw VerbsError(operation: "rdma_get_cm_event", errno: EIO, detail: "no event") }
        let e = event.pointee
        let type = ConnectionEvent.Kind(rawValue: e.event.rawValue)
        var privateData: [UInt8] = []
        if let data = e.param.conn.private_data, e.param.conn.private_data_len > 0 {
            privateData = Array(UnsafeRawBufferPointer(start: data, count: Int(e.param.conn.private_data_len)))
        }
        // A connect request carries a new cm_id; from here on this library owns it.
        let newConnection = type == .connectRequest ? ConnectionID(raw: e.id, channel: self) : nil
        var result = ConnectionEvent(kind: type, status: e.status, id: ConnectionID.Identifier(e.id),
                                     newConnection: newConnection, privateData: privateData)
        result.listenID = e.listen_id.map(ConnectionID.Identifier.init)
        if e.id.pointee.ps == RDMA_PS_UDP {
            // A UD id's events carry `param.ud` (same private-data fields; then the peer's QP number and Q_Key).
            result.datagramQPN = e.param.ud.qp_num
            result.datagramQKey = e.param.ud.qkey
        } else {
            result.responderResources = e.param.conn.responder_resources
            result.initiatorDepth = e.param.conn.initiator_depth
        }
        rdma_ack_cm_event(event)
        return result
    }

    /// Waits, without blocking a thread, for the next event.
    public func nextEvent() async throws -> ConnectionEvent {
        try await ChannelEvents.next(fd: fileDescriptor, what: "rdma_cm event channel") { () throws(VerbsError) in
            try getEvent()
        }
    }
}

/// One rdma_cm event, copied out of librdmacm and already acknowledged.
public struct ConnectionEvent: Sendable {
    /// The event type (`enum rdma_cm_event_type`).
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The `RDMA_CM_EVENT_*` value.
        public let rawValue: UInt32
        /// Wraps an `RDMA_CM_EVENT_*` value.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// RDMA_CM_EVENT_ADDR_RESOLVED.
        public static let addressResolved = Kind(rawValue: RDMA_CM_EVENT_ADDR_RESOLVED.rawValue)
        /// RDMA_CM_EVENT_ROUTE_RESOLVED.
        public static let routeResolved = Kind(rawValue: RDMA_CM_EVENT_ROUTE_RESOLVED.rawValue)
        /// RDMA_CM_EVENT_CONNECT_REQUEST.
        public static let connectRequest = Kind(rawValue: RDMA_CM_EVENT_CONNECT_REQUEST.rawValue)
        /// RDMA_CM_EVENT_ESTABLISHED.
        public static let established = Kind(rawValue: RDMA_CM_EVENT_ESTABLISHED.rawValue)
        /// RDMA_CM_EVENT_DISCONNECTED.
        public static let disconnected = Kind(rawValue: RDMA_CM_EVENT_DISCONNECTED.rawValue)
        /// RDMA_CM_EVENT_REJECTED.
        public static let rejected = Kind(rawValue: RDMA_CM_EVENT_REJECTED.rawValue)
        /// RDMA_CM_EVENT_UNREACHABLE: the peer did not answer, or a SIDR REP refused a UD connect.
        public static let unreachable = Kind(rawValue: RDMA_CM_EVENT_UNREACHABLE.rawValue)
        /// RDMA_CM_EVENT_TIMEWAIT_EXIT.
        public static let timewaitExit = Kind(rawValue: RDMA_CM_EVENT_TIMEWAIT_EXIT.rawValue)
        /// RDMA_CM_EVENT_CONNECT_RESPONSE: the peer accepted a connect made without a QP on the cm_id.
        public static let connectResponse = Kind(rawValue: RDMA_CM_EVENT_CONNECT_RESPONSE.rawValue)
        /// `rdma_event_str(3)`, e.g. "RDMA_CM_EVENT_ESTABLISHED".
        public var description: String { String(cString: rdma_event_str(rdma_cm_event_type(rawValue: rawValue))) }
    }

    /// What happened.
    public var kind: Kind
    /// 0, or a negative errno / reject reason (rdma_get_cm_event(3)).
    public var status: Int32
    /// The cm_id the event is about (for a connect request, the new one).
    public var id: ConnectionID.Identifier
    /// For a connect request: the new cm_id, owned by the receiver of this event (accept or drop it).
    public var newConnection: ConnectionID?
    /// Private data the peer sent with connect/accept.
    public var privateData: [UInt8]
    /// For a connect request: the listening cm_id it arrived on.
    public var listenID: ConnectionID.Identifier?
    /// The peer's `responder_resources` / `initiator_depth`, as this side sees them (connect request and response).
    public var responderResources: UInt8 = 0
    /// See `responderResources`.
    public var initiatorDepth: UInt8 = 0
    /// A UD id's ESTABLISHED (the SIDR REP): the peer's QP number; 0 otherwise.
    public var datagramQPN: UInt32 = 0
    /// A UD id's ESTABLISHED: the peer's Q_Key; 0 otherwise.
    public var datagramQKey: UInt32 = 0

    /// An event as librdmacm reported it.
    public init(kind: Kind, status: Int32, id: ConnectionID.Identifier, newConnection: ConnectionID?,
                privateData: [UInt8]) {
        self.kind = kind
        self.status = status
        self.id = id
        self.newConnection = newConnection
        self.privateData = privateData
    }
}

/// Connection parameters (`struct rdma_conn_param`) for connect and accept.
public struct ConnectionParameters: Sendable {
    /// Up to 56 bytes (connect) or 196 bytes (accept) sent to the peer.
    public var privateData: [UInt8]
    /// READ/atomic requests the peer may have outstanding at us.
    public var responderResources: UInt8
    /// READ/atomic requests we may have outstanding.
    public var initiatorDepth: UInt8
    /// Transport retries.
    public var retryCount: UInt8
    /// RNR retries (7: for ever).
    public var rnrRetryCount: UInt8
    /// The QP number to announce when the cm_id has no QP of its own (the QP is moved by its owner).
    public var qpNumber: UInt32 = 0

    /// Parameters with the given private data.
    public init(privateData: [UInt8] = [], responderResources: UInt8 = 1, initiatorDepth: UInt8 = 1,
                retryCount: UInt8 = 7,
                rnrRetryCount: UInt8 = 7) {
        self.privateData = privateData
        self.responderResources = responderResources
        self.initiatorDepth = initiatorDepth
        self.retryCount = retryCount
        self.rnrRetryCount = rnrRetryCount
    }

    func withRaw<R>(_ body: (UnsafeMutablePointer<rdma_conn_param>) -> R) -> R {
        privateData.withUnsafeBytes { bytes in
            var p = rdma_conn_param()
            p.private_data = bytes.isEmpty ? nil : bytes.baseAddress
            p.private_data_len = UInt8(min(bytes.count, 255))
            p.responder_resources = responderResources
            p.initiator_depth = initiatorDepth
            p.retry_count = retryCount
            p.rnr_retry_count = rnrRetryCount
            p.qp_num = qpNumber
            return body(&p)
        }
    }
}

/// An rdma_cm identifier (`rdma_create_id(3)`), the connection manager's socket; destroyed with
/// `rdma_destroy_id` when the last reference goes. Keeps its event channel alive.
public final class ConnectionID: @unchecked Sendable {
    /// Names a cm_id in events: the address of its `struct rdma_cm_id`.
    public struct Identifier: RawRepresentable, Hashable, Sendable {
        /// The address.
        public let rawValue: UInt
        /// Wraps an address.
        public init(rawValue: UInt) { self.rawValue = rawValue }
        init(_ id: UnsafeMutablePointer<rdma_cm_id>) { rawValue = UInt(bitPattern: id) }
    }

    let raw: UnsafeMutablePointer<rdma_cm_id>
    /// The channel its events arrive on.
    public let channel: EventChannel

    init(raw: UnsafeMutablePointer<rdma_cm_id>, channel: EventChannel) {
        self.raw = raw
        self.channel = channel
    }

    deinit { rdma_destroy_id(raw) }

    /// This cm_id's identifier, as events report it.
    public var identifier: Identifier { Identifier(raw) }

    /// The device context librdmacm bound this cm_id to, once an address is bound or resolved.
    public var context: Context? {
        raw.pointee.verbs.map { Context(borrowing: $0, owner: self) }
    }

    /// The local port of the device the cm_id is bound to.
    public var portNumber: UInt8 { raw.pointee.port_num }

    /// `rdma_bind_addr(3)` to an IPv4 address (nil: any) and port (0: any).
    public func bind(ipv4: String?, port: UInt16) throws(VerbsError) {
        var sin = try Self.socketAddress(ipv4 ?? "0.0.0.0", port: port)
        try withUnsafeMutablePointer(to: &sin) { pointer throws(VerbsError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(VerbsError) in
                try Call.returnsMinusOne("rdma_bind_addr", detail: "\(ipv4 ?? "*"):\(port)") { rdma_bind_addr(raw, sa) }
            }
        }
    }

    /// The local TCP-space port after bind (`rdma_get_src_port(3)`).
    public var localPort: UInt16 { UInt16(bigEndian: rdma_get_src_port(raw)) }

    /// `rdma_listen(3)`.
    public func listen(backlog: Int32 = 8) throws(VerbsError) {
        try Call.returnsMinusOne("rdma_listen") { rdma_listen(raw, backlog) }
    }

    /// `rdma_resolve_addr(3)`: starts resolving `destination`; an addressResolved event follows.
    public func resolveAddress(source: String? = nil, destination: String, port: UInt16,
                               timeoutMilliseconds: Int32 = 2000) throws(VerbsError) {
        var dst = try Self.socketAddress(destination, port: port)
        var src = try Self.socketAddress(source ?? "0.0.0.0", port: 0)
        try withUnsafeMutablePointer(to: &dst) { d throws(VerbsError) in
            try withUnsafeMutablePointer(to: &src) { s throws(VerbsError) in
                try d.withMemoryRebound(to: sockaddr.self, capacity: 1) { dsa throws(VerbsError) in
                    try s.withMemoryRebound(to: sockaddr.self, capacity: 1) { ssa throws(VerbsError) in
                        try Call.returnsMinusOne("rdma_resolve_addr", detail: "\(destination):\(port)") {
                            rdma_resolve_addr(raw, source == nil ? nil : ssa, dsa, timeoutMilliseconds)
                        }
                    }
                }
            }
        }
    }

    /// `rdma_resolve_route(3)`: a routeResolved event follows.
    public func resolveRoute(timeoutMilliseconds: Int32 = 2000) throws(VerbsError) {
        try Call.returnsMinusOne("rdma_resolve_route") { rdma_resolve_route(raw, timeoutMilliseconds) }
    }

    /// `rdma_create_qp(3)`: a QP bound to this cm_id, whose state transitions rdma_cm performs.
    public func createQueuePair(pd: ProtectionDomain, _ configuration: QueuePairConfiguration) throws(VerbsError)
        -> QueuePair {
        var attr = configuration.raw
        try Call.returnsMinusOne("rdma_create_qp", detail: "\(configuration.type) QP") {
            rdma_create_qp(raw, pd.raw, &attr)
        }
        guard let qp = raw.pointee.qp else {
            throw VerbsError(operation: "rdma_create_qp", errno: EIO, detail: "no QP on the cm_id")
        }
        return QueuePair(raw: qp, pd: pd, configuration: configuration, granted: QPCapabilities(attr.cap),
                         connection: self)
    }

    /// `rdma_connect(3)`: an established (or rejected/unreachable) event follows.
    public func connect(_ parameters: ConnectionParameters = ConnectionParameters()) throws(VerbsError) {
        try Call.returnsMinusOne("rdma_connect") { parameters.withRaw { rdma_connect(raw, $0) } }
    }

    /// `rdma_accept(3)` of a connect request received on this cm_id.
    public func accept(_ parameters: ConnectionParameters = ConnectionParameters()) throws(VerbsError) {
        try Call.returnsMinusOne("rdma_accept") { parameters.withRaw { rdma_accept(raw, $0) } }
    }

    /// `rdma_disconnect(3)`: both sides get a disconnected event.
    public func disconnect() throws(VerbsError) {
        try Call.returnsMinusOne("rdma_disconnect") { rdma_disconnect(raw) }
    }

    /// `rdma_reject(3)` of a connect request received on this cm_id.
    public func reject(privateData: [UInt8] = []) throws(VerbsError) {
        try Call.returnsMinusOne("rdma_reject", detail: "\(privateData.count) bytes of private data") {
            privateData.withUnsafeBytes { rdma_reject(raw, $0.baseAddress, UInt8(min($0.count, 255))) }
        }
    }

    /// `rdma_establish(3)`: after a connect response, once the owner moved its QP to RTS (sends the RTU).
    public func establish() throws(VerbsError) {
        try Call.returnsMinusOne("rdma_establish") { rdma_establish(raw) }
    }

    /// `rdma_init_qp_attr(3)` for a transition to `state` (RTR or RTS): what the connection manager negotiated.
    public func transitionAttributes(to state: QPState) throws(VerbsError) -> ConnectionTransition {
        var attr = ibv_qp_attr()
        attr.qp_state = ibv_qp_state(rawValue: state.rawValue)
        var mask: Int32 = 0
        try Call.returnsMinusOne("rdma_init_qp_attr", detail: "\(state)") { rdma_init_qp_attr(raw, &attr, &mask) }
        return ConnectionTransition(destinationQPN: attr.dest_qp_num, receivePSN: attr.rq_psn, sendPSN: attr.sq_psn,
                                    pathMTU: UInt8(truncatingIfNeeded: attr.path_mtu.rawValue),
                                    maxDestinationReadAtomic: attr.max_dest_rd_atomic,
                                    maxReadAtomic: attr.max_rd_atomic, retryCount: attr.retry_cnt,
                                    rnrRetry: attr.rnr_retry)
    }

    /// The peer's IPv4 address (`rdma_get_peer_addr(3)`): for a connect request, the address it came from; nil if
    /// the peer's address is not IPv4.
    public var remoteIPv4: String? {
        guard let sa = rdma_get_peer_addr(raw), sa.pointee.sa_family == sa_family_t(AF_INET) else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let ok = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
            var address = sin.pointee.sin_addr
            return inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil
        }
        return ok ? String(cString: text) : nil
    }

    /// The peer's port (`rdma_get_dst_port(3)`).
    public var remotePort: UInt16 { UInt16(bigEndian: rdma_get_dst_port(raw)) }

    static func socketAddress(_ ipv4: String, port: UInt16) throws(VerbsError) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, ipv4, &sin.sin_addr) == 1 else {
            throw VerbsError(operation: "inet_pton", errno: EINVAL, detail: "not an IPv4 address: \(ipv4)")
        }
        return sin
    }
}

/// What `rdma_init_qp_attr(3)` reports for a QP transition of a connection.
public struct ConnectionTransition: Sendable, Equatable {
    /// The peer's QP number.
    public var destinationQPN: UInt32
    /// The PSN the peer sends with (RTR).
    public var receivePSN: UInt32
    /// The PSN to send with (RTS).
    public var sendPSN: UInt32
    /// `ibv_mtu` of the path (RTR).
    public var pathMTU: UInt8
    /// Reads and atomics the peer may have outstanding here (RTR).
    public var maxDestinationReadAtomic: UInt8
    /// Reads and atomics this side may have outstanding (RTS).
    public var maxReadAtomic: UInt8
    /// Transport retries (RTS).
    public var retryCount: UInt8
    /// RNR retries (RTS).
    public var rnrRetry: UInt8
}
