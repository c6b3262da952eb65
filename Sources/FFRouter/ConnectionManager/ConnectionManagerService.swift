import Dispatch
import FFProtocol
import FFSystem
import Logging
import Synchronization
import Verbs

/// The router's rdma_cm (docs/rdma-cm.md): every session's event channels and cm ids, the listeners by vip and
/// port, and the connections between ids. One per router, shared by its sessions; each call comes from the
/// calling session's own thread and takes the lock only for bookkeeping and non-blocking event sends.
///
/// A connect to a pod of this router is paired in process (the pod whose vip the connect was addressed to, so pods
/// share ports); the QP parameters travel in the events for the client libraries to apply. With a
/// `NodeConnectionManager` (the real device), a connect to a vip of another node goes over the device's rdma_cm on
/// the node IPs, with the router's header in the private data; without one (the fake device) it is UNREACHABLE.
final class ConnectionManagerService: Sendable {
    /// At most this many event channels per session (each holds one router descriptor).
    static let maxChannelsPerSession = 128
    /// At most this many cm ids per session.
    static let maxIDsPerSession = 4096
    /// At most this many UD senders of other nodes learned per session (the oldest goes first).
    static let maxSendersPerSession = 1024
    /// RDMA_UDP_QKEY: the Q_Key librdmacm gives UD QPs of the UDP and IPoIB port spaces.
    static let datagramQKey: UInt32 = 0x0123_4567
    /// IB CM reject reason IB_CM_REJ_INVALID_SERVICE_ID (`rdma_cm_event.status` of REJECTED): nothing listens there.
    static let rejectInvalidService: Int32 = 8
    /// IB CM reject reason IB_CM_REJ_CONSUMER_DEFINED: the application (or its going away) rejected the connect.
    static let rejectConsumer: Int32 = 28
    /// The path MTU the in-process connection manager reports (IBV_MTU_1024, what rxe uses).
    static let pathMTU: UInt8 = 3

    private let nodeIP: IPv4Address
    private let map: any VipResolver
    private let logger: Logger
    private let node: NodeConnectionManager?
    private let listenerGraceMilliseconds: Int
    private let state = Mutex(State())

    /// How long a connect to a pod of this router waits for a listener before it is refused (docs/rdma-cm.md).
    static let defaultListenerGraceMilliseconds = 1000

    /// A connection manager for the pods of the router on `nodeIP`, finding peers through `map`, reaching other nodes
    /// through `node` (nil: only this router's pods). A connect to a port of this router's pods that nobody listens on
    /// yet waits up to `listenerGraceMilliseconds` for the listener.
    init(nodeIP: IPv4Address, map: any VipResolver, logger: Logger, node: NodeConnectionManager? = nil,
         listenerGraceMilliseconds: Int = ConnectionManagerService.defaultListenerGraceMilliseconds) {
        self.nodeIP = nodeIP
        self.map = map
        self.logger = logger
        self.node = node
        self.listenerGraceMilliseconds = max(0, listenerGraceMilliseconds)
        if let node {
            do {
                try node.start { [weak self] event in self?.deviceEvent(event) }
            } catch {
                logger.error("rdma_cm between nodes is off: its event thread did not start", metadata: ["error": "\(error)"])
            }
        }
    }

    deinit { node?.stop() }

    struct Key: Hashable {
        var session: UInt64
        var id: UInt32
    }

    struct Endpoint: Hashable {
        var vip: IPv4Address
        var port: UInt16
        var datagram: Bool
    }

    enum Phase: Equatable {
        case idle, addressResolved, routeResolved, listening, connecting, requestReceived, accepted, connected, disconnected
    }

    struct Identifier {
        var channel: UInt32
        var portSpace: CMPortSpace
        var phase = Phase.idle
        /// The address the application bound (0.0.0.0 for any), reported back by bind.
        var boundAddress: IPv4Address?
        var localPort: UInt16 = 0
        var remote: IPv4Address = IPv4Address(0, 0, 0, 0)
        var remotePort: UInt16 = 0
        var peer: Key?
        var listener: Endpoint?
        var pendingRequests = 0
        var backlog = 0
        var listenID: Key?
        var qpNum: UInt32 = 0
        var psn: UInt32 = 0
        /// The device's cm_id of a connection to another node.
        var device: ConnectionID?
        /// The connect waiting for its route over the device, or for a listener at `awaitingListener`.
        var pendingConnect: CMConnectionParameters?
        /// A connect to a pod of this router waiting for a listener there (`ConnectionManagerService.connect`).
        var awaitingListener: Endpoint?
        /// The peer's node IP of a connection over the device (the sender of its UD messages).
        var peerNode: IPv4Address?
        var datagram: Bool { portSpace == .udp || portSpace == .ipoib }
    }

    struct SessionState {
        var vip: IPv4Address
        var channels: [UInt32: SeqPacketSocket] = [:]
        var ids: [UInt32: Identifier] = [:]
        var nextHandle: UInt32 = 1
        /// The senders this session's UD connects to other nodes taught the router, oldest first.
        var learned: [Sender] = []
    }

    /// A UD QP of another node: what a received message's GRH (the node's GID) and source QP name.
    struct Sender: Hashable {
        var node: IPv4Address
        var qpNum: UInt32
    }

    struct State {
        var sessions: [UInt64: SessionState] = [:]
        var listeners: [Endpoint: Key] = [:]
        var boundPorts: Set<Endpoint> = []
        var byDevice: [ConnectionID.Identifier: Key] = [:]
        /// Connects waiting for a listener at each endpoint, oldest first.
        var awaitingListener: [Endpoint: [Key]] = [:]
        /// The vip of each sender learned from a SIDR exchange, and the session whose exchange taught it.
        var senders: [Sender: (vip: IPv4Address, session: UInt64)] = [:]
        var nextPort: UInt16 = 0
        var random = SplitMix(seed: 0x5EED_C0DE)
    }

    // MARK: - Channels

    /// A new event channel of `session`: its handle and the client's end of the socket pair.
    func createChannel(session: UInt64, vip: IPv4Address) throws -> (CMChannelHandle, SeqPacketSocket) {
        let (routerEnd, clientEnd) = try SeqPacketSocket.pair()
        return try state.withLock { s throws(ErrorReply) in
            var entry = s.sessions[session] ?? SessionState(vip: vip)
            guard entry.channels.count < Self.maxChannelsPerSession else {
                routerEnd.close()
                clientEnd.close()
                throw ErrorReply(errno: Errno.tooManyDescriptors, reason: "a session holds at most \(Self.maxChannelsPerSession) rdma_cm event channels")
            }
            let handle = entry.nextHandle
            entry.nextHandle &+= 1
            entry.channels[handle] = routerEnd
            s.sessions[session] = entry
            return (CMChannelHandle(rawValue: handle), clientEnd)
        }
    }

    // MARK: - Calls

    /// Runs one cm call of `session` (whose pod has `vip`); `ownsQP` answers whether a QP number is one of the
    /// session's QPs.
    func call(_ request: CMRequest, session: UInt64, vip: IPv4Address, ownsQP: (UInt32) -> Bool) throws -> CMReply {
        try state.withLock { s throws in
            if s.sessions[session] == nil { s.sessions[session] = SessionState(vip: vip) }
            return try run(request, Context(session: session, vip: vip), &s, ownsQP: ownsQP)
        }
    }

    /// Records that `qpNum` now belongs to `id` (rdma_create_qp on an id).
    func attach(qpNum: UInt32, to id: CMIDHandle, session: UInt64) throws {
        try state.withLock { s throws in
            var identifier = try lookup(Key(session: session, id: id.rawValue), s)
            identifier.qpNum = qpNum
            s.sessions[session]?.ids[id.rawValue] = identifier
        }
    }

    /// Whether `id` serves datagrams (a UD QP), or nil when the session has no such id.
    func isDatagram(_ id: CMIDHandle, session: UInt64) -> Bool? {
        state.withLock { $0.sessions[session]?.ids[id.rawValue]?.datagram }
    }

    /// Everything of `session` goes: its listeners and ports are freed, the peers of its connections see
    /// DISCONNECTED (or REJECTED for a connect still pending), its channels are closed.
    func close(session: UInt64) {
        let closed: Int = state.withLock { s in
            guard let entry = s.sessions[session] else { return 0 }
            for handle in entry.ids.keys.sorted() { drop(Key(session: session, id: handle), &s) }
            for sender in entry.learned where s.senders[sender]?.session == session { s.senders[sender] = nil }
            for channel in entry.channels.values { channel.close() }
            s.sessions[session] = nil
            return entry.ids.count
        }
        if closed > 0 { logger.info("rdma_cm ids of the session released", metadata: ["session": "\(session)", "ids": "\(closed)"]) }
    }

    /// How many cm ids `session` holds and how many of them listen, for status.
    func counts(session: UInt64) -> (ids: Int, listeners: Int) {
        state.withLock { s in
            let ids = s.sessions[session]?.ids.values
            return (ids?.count ?? 0, ids?.filter { $0.phase == .listening }.count ?? 0)
        }
    }

    /// How many cm ids and listeners exist, for tests and status.
    var counts: (ids: Int, listeners: Int, channels: Int) {
        state.withLock { s in
            (s.sessions.values.reduce(0) { $0 + $1.ids.count }, s.listeners.count, s.sessions.values.reduce(0) { $0 + $1.channels.count })
        }
    }

    struct Context {
        var session: UInt64
        var vip: IPv4Address
    }

    private func run(_ request: CMRequest, _ c: Context, _ s: inout State, ownsQP: (UInt32) -> Bool) throws -> CMReply {
        switch request {
        case .createID(let channel, let space):
            guard s.sessions[c.session]?.channels[channel.rawValue] != nil else { throw noSuch("event channel", channel.rawValue) }
            guard let count = s.sessions[c.session]?.ids.count, count < Self.maxIDsPerSession else {
                throw ErrorReply(errno: Errno.outOfMemory, reason: "a session holds at most \(Self.maxIDsPerSession) rdma_cm ids")
            }
            let handle = s.sessions[c.session]!.nextHandle
            s.sessions[c.session]!.nextHandle &+= 1
            s.sessions[c.session]!.ids[handle] = Identifier(channel: channel.rawValue, portSpace: space)
            return CMReply(id: CMIDHandle(rawValue: handle))

        case .destroyID(let id):
            let key = Key(session: c.session, id: id.rawValue)
            _ = try lookup(key, s)
            drop(key, &s)
            return CMReply()

        case .bind(let id, let address, let port):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            guard identifier.phase == .idle, identifier.localPort == 0 else { throw invalid("rdma_bind_addr: the id is already bound") }
            guard address == Self.any || address == c.vip else {
                throw ErrorReply(errno: Self.addressNotAvailable, reason: "rdma_bind_addr: \(address) is not this pod's address (its vip is \(c.vip))")
            }
            identifier.localPort = try reserve(port, vip: c.vip, datagram: identifier.datagram, &s)
            identifier.boundAddress = address
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            return CMReply(address: address, port: identifier.localPort)

        case .resolveAddress(let id, let source, let destination, let port, _):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            guard [.idle, .addressResolved].contains(identifier.phase) else { throw invalid("rdma_resolve_addr: the id is \(identifier.phase)") }
            guard source == Self.any || source == c.vip else {
                throw ErrorReply(errno: Self.addressNotAvailable, reason: "rdma_resolve_addr: source \(source) is not this pod's address (its vip is \(c.vip))")
            }
            if identifier.localPort == 0 { identifier.localPort = try reserve(0, vip: c.vip, datagram: identifier.datagram, &s) }
            identifier.remote = destination
            identifier.remotePort = port
            var event = self.event(for: identifier, id: id, type: .addressResolved, vip: c.vip)
            if !map.isReady {
                event.type = .addressError
                event.status = -Errno.tryAgain
                event.reason = "the vip map is not loaded yet (\(map.summary.source)); try again"
            } else if destination != c.vip, map.physicalIP(for: destination) == nil {
                event.type = .addressError
                event.status = -Errno.hostUnreachable
                event.reason = "unknown vip \(destination): not in the vip map (\(map.summary.source))"
            } else {
                identifier.phase = .addressResolved
            }
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            deliver(event, to: key, &s)
            return CMReply(address: c.vip, port: identifier.localPort)

        case .resolveRoute(let id, _):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            guard identifier.phase == .addressResolved else { throw invalid("rdma_resolve_route: the address is not resolved (the id is \(identifier.phase))") }
            identifier.phase = .routeResolved
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            deliver(event(for: identifier, id: id, type: .routeResolved, vip: c.vip), to: key, &s)
            return CMReply()

        case .listen(let id, let backlog):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            guard identifier.phase == .idle else { throw invalid("rdma_listen: the id is \(identifier.phase)") }
            if identifier.localPort == 0 {
                identifier.localPort = try reserve(0, vip: c.vip, datagram: identifier.datagram, &s)
                identifier.boundAddress = Self.any
            }
            let endpoint = Endpoint(vip: c.vip, port: identifier.localPort, datagram: identifier.datagram)
            guard s.listeners[endpoint] == nil else {
                throw ErrorReply(errno: Self.addressInUse, reason: "rdma_listen: \(c.vip) port \(endpoint.port) already has a listener")
            }
            if let node { try node.retainListener(NodeConnectionManager.Listener(port: endpoint.port, datagram: endpoint.datagram)) }
            s.listeners[endpoint] = key
            identifier.listener = endpoint
            identifier.backlog = Int(backlog)
            identifier.phase = .listening
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            for waiting in s.awaitingListener.removeValue(forKey: endpoint) ?? [] { resumeConnect(waiting, at: endpoint, &s) }
            return CMReply(address: identifier.boundAddress ?? Self.any, port: identifier.localPort)

        case .connect(let p):
            try connect(p, c, &s, ownsQP: ownsQP)
            return CMReply()

        case .accept(let p):
            let key = Key(session: c.session, id: p.id.rawValue)
            var identifier = try lookup(key, s)
            if let device = identifier.device {
                guard identifier.phase == .requestReceived else { throw invalid("rdma_accept: no connect request is waiting on this id (it is \(identifier.phase))") }
                try checkPrivateData(p.privateData, budget: identifier.datagram ? CMPrivateData.acceptUD : CMPrivateData.acceptRC, "rdma_accept")
                guard p.qpNum != 0, ownsQP(p.qpNum) else { throw invalid("rdma_accept: QP number \(p.qpNum) is not one of this session's QPs") }
                var parameters = ConnectionParameters(privateData: p.privateData, responderResources: p.responderResources,
                                                      initiatorDepth: p.initiatorDepth, retryCount: p.retryCount, rnrRetryCount: p.rnrRetryCount)
                parameters.qpNumber = p.qpNum
                // UD: the device answers the SIDR REQ with the pod's QP number and the port space's Q_Key.
                try device.accept(parameters)
                releaseRequest(identifier, &s)
                identifier.qpNum = p.qpNum
                if identifier.datagram {
                    // SIDR: resolved once answered; the device's cm_id has nothing more to do.
                    identifier.phase = .connected
                    unlinkDevice(&identifier, &s)
                } else {
                    identifier.phase = .accepted
                }
                s.sessions[c.session]!.ids[p.id.rawValue] = identifier
                return CMReply()
            }
            guard identifier.phase == .requestReceived, let peerKey = identifier.peer, var peer = s.sessions[peerKey.session]?.ids[peerKey.id] else {
                throw invalid("rdma_accept: no connect request is waiting on this id (it is \(identifier.phase))")
            }
            let budget = identifier.datagram ? CMPrivateData.acceptUD : CMPrivateData.acceptRC
            try checkPrivateData(p.privateData, budget: budget, "rdma_accept")
            guard p.qpNum != 0, ownsQP(p.qpNum) else { throw invalid("rdma_accept: QP number \(p.qpNum) is not one of this session's QPs") }
            identifier.qpNum = p.qpNum
            releaseRequest(identifier, &s)
            var event = self.event(for: peer, id: CMIDHandle(rawValue: peerKey.id), type: identifier.datagram ? .established : .connectResponse,
                                   vip: s.sessions[peerKey.session]!.vip)
            event.remoteQPN = p.qpNum
            event.privateData = p.privateData
            if identifier.datagram {
                event.qkey = Self.datagramQKey
                // SIDR: resolved once answered; neither side stays linked.
                identifier.phase = .connected
                identifier.peer = nil
                peer.phase = .connected
                peer.peer = nil
            } else {
                event.remotePSN = identifier.psn
                event.localPSN = peer.psn
                event.responderResources = p.initiatorDepth
                event.initiatorDepth = p.responderResources
                event.retryCount = p.retryCount
                event.rnrRetryCount = p.rnrRetryCount
                event.pathMTU = Self.pathMTU
                identifier.phase = .accepted
            }
            s.sessions[c.session]!.ids[p.id.rawValue] = identifier
            s.sessions[peerKey.session]!.ids[peerKey.id] = peer
            deliver(event, to: peerKey, &s)
            return CMReply()

        case .reject(let p):
            let key = Key(session: c.session, id: p.id.rawValue)
            var identifier = try lookup(key, s)
            if let device = identifier.device, identifier.phase == .requestReceived {
                try checkPrivateData(p.privateData, budget: CMPrivateData.reject, "rdma_reject")
                try device.reject(privateData: p.privateData)
                releaseRequest(identifier, &s)
                unlinkDevice(&identifier, &s)
                identifier.phase = .disconnected
                s.sessions[c.session]!.ids[p.id.rawValue] = identifier
                return CMReply()
            }
            guard identifier.phase == .requestReceived, let peerKey = identifier.peer else {
                throw invalid("rdma_reject: no connect request is waiting on this id (it is \(identifier.phase))")
            }
            try checkPrivateData(p.privateData, budget: CMPrivateData.reject, "rdma_reject")
            releaseRequest(identifier, &s)
            identifier.phase = .disconnected
            identifier.peer = nil
            s.sessions[c.session]!.ids[p.id.rawValue] = identifier
            reject(peerKey, status: Self.rejectConsumer, privateData: p.privateData, reason: "rejected by the application", &s)
            return CMReply()

        case .disconnect(let id):
            let key = Key(session: c.session, id: id.rawValue)
            let identifier = try lookup(key, s)
            switch identifier.phase {
            case .connected, .accepted, .connecting:
                disconnect(key, notifySelf: true, &s)
                if var done = s.sessions[c.session]?.ids[id.rawValue] { unlinkDevice(&done, &s); s.sessions[c.session]!.ids[id.rawValue] = done }
            case .disconnected:
                break
            default:
                throw invalid("rdma_disconnect: the id is not connected (it is \(identifier.phase))")
            }
            return CMReply()

        case .attachQP, .resolveSender:
            throw invalid("attach_qp and resolve_sender are the session's to handle")

        case .establish(let id):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            if let device = identifier.device, identifier.phase == .connecting {
                try device.establish()
                identifier.phase = .connected
                s.sessions[c.session]!.ids[id.rawValue] = identifier
                return CMReply()
            }
            guard identifier.phase == .connecting, let peerKey = identifier.peer, var peer = s.sessions[peerKey.session]?.ids[peerKey.id],
                  peer.phase == .accepted else {
                throw invalid("rdma_establish: the connection is not waiting to be established (the id is \(identifier.phase))")
            }
            identifier.phase = .connected
            peer.phase = .connected
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            s.sessions[peerKey.session]!.ids[peerKey.id] = peer
            var event = self.event(for: peer, id: CMIDHandle(rawValue: peerKey.id), type: .established, vip: s.sessions[peerKey.session]!.vip)
            event.remoteQPN = identifier.qpNum
            deliver(event, to: peerKey, &s)
            return CMReply()

        case .migrate(let id, let channel):
            let key = Key(session: c.session, id: id.rawValue)
            var identifier = try lookup(key, s)
            guard s.sessions[c.session]?.channels[channel.rawValue] != nil else { throw noSuch("event channel", channel.rawValue) }
            identifier.channel = channel.rawValue
            s.sessions[c.session]!.ids[id.rawValue] = identifier
            return CMReply()

        case .destroyChannel(let channel):
            guard let end = s.sessions[c.session]?.channels.removeValue(forKey: channel.rawValue) else {
                throw noSuch("event channel", channel.rawValue)
            }
            end.close()
            return CMReply()
        }
    }

    private func connect(_ p: CMConnectionParameters, _ c: Context, _ s: inout State, ownsQP: (UInt32) -> Bool) throws {
        let key = Key(session: c.session, id: p.id.rawValue)
        var identifier = try lookup(key, s)
        guard identifier.phase == .routeResolved else { throw invalid("rdma_connect: the route is not resolved (the id is \(identifier.phase))") }
        let datagram = identifier.datagram
        try checkPrivateData(p.privateData, budget: datagram ? CMPrivateData.connectUD : CMPrivateData.connectRC, "rdma_connect")
        // A UD connect may come without a QP; a QP number it names must be the session's (the peer's router learns
        // it as this pod's).
        guard datagram ? (p.qpNum == 0 || ownsQP(p.qpNum)) : (p.qpNum != 0 && ownsQP(p.qpNum)) else {
            throw invalid("rdma_connect: QP number \(p.qpNum) is not one of this session's QPs")
        }
        identifier.qpNum = p.qpNum
        identifier.psn = s.random.next() & 0xFF_FFFF
        identifier.phase = .connecting
        s.sessions[c.session]!.ids[p.id.rawValue] = identifier
        let destination = identifier.remote
        if destination != c.vip, let peerNode = map.physicalIP(for: destination), peerNode != nodeIP, let node {
            // To another node: the device's rdma_cm resolves the node IPs first, then connects (deviceEvent); UD
            // ids connect in the UDP port space (SIDR).
            let device = try node.newID(datagram: datagram)
            try device.resolveAddress(source: nodeIP.description, destination: peerNode.description, port: identifier.remotePort)
            identifier.device = device
            identifier.pendingConnect = p
            identifier.peerNode = peerNode
            s.byDevice[device.identifier] = key
            s.sessions[c.session]!.ids[p.id.rawValue] = identifier
            return
        }
        if destination != c.vip, let node = map.physicalIP(for: destination), node != nodeIP {
            var event = self.event(for: identifier, id: p.id, type: .unreachable, vip: c.vip)
            event.status = -Self.timedOut
            event.reason = "vip \(destination) is on node \(node); this router's connection manager reaches only its own pods (no device rdma_cm)"
            identifier.phase = .routeResolved
            s.sessions[c.session]!.ids[p.id.rawValue] = identifier
            deliver(event, to: key, &s)
            return
        }
        let endpoint = Endpoint(vip: destination, port: identifier.remotePort, datagram: datagram)
        guard s.listeners[endpoint] != nil else {
            // Nobody listens there yet. Directly, a REQ to a port with no listener is rejected at once; but a program
            // whose peer tells it out of band to connect (perftest -R) may connect a moment before that peer's listen
            // has gone through its shim and router, which takes round trips a kernel listen does not. So the connect
            // waits a bounded moment for the listener, and is refused as before when none comes.
            identifier.pendingConnect = p
            identifier.awaitingListener = endpoint
            s.sessions[c.session]!.ids[p.id.rawValue] = identifier
            s.awaitingListener[endpoint, default: []].append(key)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(listenerGraceMilliseconds)) { [weak self] in
                self?.listenerGraceEnded(key, at: endpoint)
            }
            return
        }
        connectLocally(key, p, at: endpoint, &s)
    }

    /// A connect that waited for a listener at `endpoint`, now there.
    private func resumeConnect(_ key: Key, at endpoint: Endpoint, _ s: inout State) {
        guard let p = takeWaitingConnect(key, at: endpoint, &s) else { return }
        connectLocally(key, p, at: endpoint, &s)
    }

    /// The grace of a connect waiting for a listener at `endpoint` is over: if it still waits, it is refused.
    private func listenerGraceEnded(_ key: Key, at endpoint: Endpoint) {
        state.withLock { s in
            guard unqueue(key, from: endpoint, &s), takeWaitingConnect(key, at: endpoint, &s) != nil else { return }
            refuseForNoListener(key, at: endpoint, &s)
        }
    }

    /// Takes `key` off the connects waiting for a listener at `endpoint`; false when it was not among them.
    @discardableResult
    private func unqueue(_ key: Key, from endpoint: Endpoint, _ s: inout State) -> Bool {
        guard let index = s.awaitingListener[endpoint]?.firstIndex(of: key) else { return false }
        s.awaitingListener[endpoint]!.remove(at: index)
        if s.awaitingListener[endpoint]!.isEmpty { s.awaitingListener[endpoint] = nil }
        return true
    }

    /// The parameters of `key`'s connect if it still waits for a listener at `endpoint` (not disconnected or destroyed
    /// meanwhile), which then waits no more.
    private func takeWaitingConnect(_ key: Key, at endpoint: Endpoint, _ s: inout State) -> CMConnectionParameters? {
        guard var identifier = s.sessions[key.session]?.ids[key.id], identifier.phase == .connecting,
              identifier.awaitingListener == endpoint, let p = identifier.pendingConnect else { return nil }
        identifier.awaitingListener = nil
        identifier.pendingConnect = nil
        s.sessions[key.session]!.ids[key.id] = identifier
        return p
    }

    /// Refuses `key`'s connect to `endpoint`, where nobody listens: REJECTED (invalid service) for RC, UNREACHABLE
    /// (connection refused) for UD, as rdma_cm reports them.
    private func refuseForNoListener(_ key: Key, at endpoint: Endpoint, _ s: inout State) {
        guard var identifier = s.sessions[key.session]?.ids[key.id], let vip = s.sessions[key.session]?.vip else { return }
        identifier.phase = .routeResolved
        s.sessions[key.session]!.ids[key.id] = identifier
        let reason = "nothing listens on \(endpoint.vip) port \(endpoint.port)"
        if endpoint.datagram {
            var event = self.event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .unreachable, vip: vip)
            event.status = -Self.connectionRefused
            event.reason = reason
            deliver(event, to: key, &s)
        } else {
            reject(key, status: Self.rejectInvalidService, privateData: [], reason: reason, &s)
        }
    }

    /// Pairs `key`'s connect with the listener at `endpoint` (a pod of this router): the listener's session gets a
    /// request id and CONNECT_REQUEST, or the connect is refused (no listener, backlog full).
    private func connectLocally(_ key: Key, _ p: CMConnectionParameters, at endpoint: Endpoint, _ s: inout State) {
        guard var identifier = s.sessions[key.session]?.ids[key.id], let source = s.sessions[key.session]?.vip else { return }
        let destination = endpoint.vip
        guard let listenKey = s.listeners[endpoint], var listener = s.sessions[listenKey.session]?.ids[listenKey.id] else {
            refuseForNoListener(key, at: endpoint, &s)
            return
        }
        guard listener.backlog <= 0 || listener.pendingRequests < listener.backlog,
              let count = s.sessions[listenKey.session]?.ids.count, count < Self.maxIDsPerSession else {
            identifier.phase = .routeResolved
            s.sessions[key.session]!.ids[key.id] = identifier
            reject(key, status: Self.rejectConsumer, privateData: [], reason: "the listener's backlog is full", &s)
            return
        }
        let listeningPort = listener.localPort
        let (handle, request) = makeRequest(at: listenKey, &listener, port: listeningPort, destination: destination, source: source,
                                            sourcePort: identifier.localPort, &s) { request, s in
            request.peer = key
            request.psn = s.random.next() & 0xFF_FFFF
        }
        identifier.peer = Key(session: listenKey.session, id: handle)
        s.sessions[key.session]!.ids[key.id] = identifier

        var event = self.event(for: request, id: CMIDHandle(rawValue: handle), type: .connectRequest, vip: destination)
        event.listenID = CMIDHandle(rawValue: listenKey.id)
        event.remoteQPN = p.qpNum
        event.remotePSN = identifier.psn
        event.localPSN = request.psn
        // As the passive side sees them: the peer's initiator depth is what it may ask of us, and the reverse.
        event.responderResources = p.initiatorDepth
        event.initiatorDepth = p.responderResources
        event.retryCount = p.retryCount
        event.rnrRetryCount = p.rnrRetryCount
        event.pathMTU = Self.pathMTU
        event.privateData = p.privateData
        deliver(event, to: Key(session: listenKey.session, id: handle), &s)
    }

    // MARK: - Helpers

    static let any = IPv4Address(0, 0, 0, 0)
    static let addressInUse: Int32 = 98
    static let addressNotAvailable: Int32 = 99
    static let timedOut: Int32 = 110
    static let connectionRefused: Int32 = 111

    private func lookup(_ key: Key, _ s: State) throws(ErrorReply) -> Identifier {
        guard let identifier = s.sessions[key.session]?.ids[key.id] else { throw noSuch("cm id", key.id) }
        return identifier
    }

    private func noSuch(_ what: String, _ handle: UInt32) -> ErrorReply {
        ErrorReply(errno: Errno.badHandle, reason: "no \(what) \(handle) in this session")
    }

    private func invalid(_ why: String) -> ErrorReply { ErrorReply(errno: Errno.invalidArgument, reason: why) }

    private func checkPrivateData(_ data: [UInt8], budget: Int, _ call: String) throws(ErrorReply) {
        guard data.count <= budget else {
            throw invalid("\(call): \(data.count) bytes of private data, at most \(budget) fit (docs/rdma-cm.md)")
        }
    }

    /// A port of `vip`: `port` if free, or for 0 the next free one of the ephemeral range 32768...60999.
    private func reserve(_ port: UInt16, vip: IPv4Address, datagram: Bool, _ s: inout State) throws(ErrorReply) -> UInt16 {
        if port != 0 {
            let endpoint = Endpoint(vip: vip, port: port, datagram: datagram)
            guard s.boundPorts.insert(endpoint).inserted else {
                throw ErrorReply(errno: Self.addressInUse, reason: "rdma_bind_addr: \(vip) port \(port) is in use")
            }
            return port
        }
        for _ in 0..<28232 {
            s.nextPort = s.nextPort >= 28231 ? 0 : s.nextPort + 1
            let candidate = 32768 + s.nextPort
            if s.boundPorts.insert(Endpoint(vip: vip, port: candidate, datagram: datagram)).inserted { return candidate }
        }
        throw ErrorReply(errno: Self.addressInUse, reason: "no free port left for \(vip)")
    }

    private func event(for identifier: Identifier, id: CMIDHandle, type: CMEventType, vip: IPv4Address) -> CMEvent {
        CMEvent(id: id, type: type, localAddress: vip, localPort: identifier.localPort, remoteAddress: identifier.remote,
                remotePort: identifier.remotePort)
    }

    /// Writes `event` to the channel of `key`'s id; a client that stopped reading loses events rather than stalling the router.
    private func deliver(_ event: CMEvent, to key: Key, _ s: inout State) {
        guard let session = s.sessions[key.session], let identifier = session.ids[key.id],
              let channel = session.channels[identifier.channel], let bytes = try? event.encode() else { return }
        if (try? channel.trySend(bytes)) != true {
            logger.warning("rdma_cm event lost: the client does not read its event channel",
                           metadata: ["session": "\(key.session)", "event": "\(event.type)"])
        }
    }

    private func reject(_ key: Key, status: Int32, privateData: [UInt8], reason: String, _ s: inout State) {
        guard var identifier = s.sessions[key.session]?.ids[key.id] else { return }
        identifier.phase = .routeResolved
        identifier.peer = nil
        s.sessions[key.session]!.ids[key.id] = identifier
        var event = self.event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .rejected, vip: s.sessions[key.session]!.vip)
        event.status = status
        event.privateData = privateData
        event.reason = reason
        deliver(event, to: key, &s)
    }

    /// A connect request from `source` becomes a new id of the listener's session, counted against its backlog;
    /// `configure` sets what only one kind of request has (its peer, or the device's cm_id).
    private func makeRequest(at listenKey: Key, _ listener: inout Identifier, port: UInt16, destination: IPv4Address, source: IPv4Address,
                             sourcePort: UInt16, _ s: inout State, configure: (inout Identifier, inout State) -> Void) -> (UInt32, Identifier) {
        let handle = s.sessions[listenKey.session]!.nextHandle
        s.sessions[listenKey.session]!.nextHandle &+= 1
        var request = Identifier(channel: listener.channel, portSpace: listener.portSpace)
        request.phase = .requestReceived
        request.localPort = port
        request.boundAddress = destination
        request.remote = source
        request.remotePort = sourcePort
        request.listenID = listenKey
        configure(&request, &s)
        listener.pendingRequests += 1
        s.sessions[listenKey.session]!.ids[listenKey.id] = listener
        s.sessions[listenKey.session]!.ids[handle] = request
        return (handle, request)
    }

    /// A request id stops counting against its listener's backlog.
    private func releaseRequest(_ identifier: Identifier, _ s: inout State) {
        guard identifier.phase == .requestReceived, let listen = identifier.listenID,
              var listener = s.sessions[listen.session]?.ids[listen.id] else { return }
        listener.pendingRequests = max(0, listener.pendingRequests - 1)
        s.sessions[listen.session]!.ids[listen.id] = listener
    }

    /// Ends `key`'s connection: the peer sees DISCONNECTED (or REJECTED for a connect that was still pending), and so
    /// does `key` itself when it asked (rdma_disconnect).
    private func disconnect(_ key: Key, notifySelf: Bool, _ s: inout State) {
        guard var identifier = s.sessions[key.session]?.ids[key.id] else { return }
        if let device = identifier.device {
            // The peer's router hears it from the device's rdma_cm (DREQ).
            if identifier.phase == .requestReceived { try? device.reject() } else { try? device.disconnect() }
            releaseRequest(identifier, &s)
            identifier.phase = .disconnected
            s.sessions[key.session]!.ids[key.id] = identifier
            if notifySelf { deliver(event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .disconnected, vip: s.sessions[key.session]!.vip), to: key, &s) }
            return
        }
        if let peerKey = identifier.peer, var peer = s.sessions[peerKey.session]?.ids[peerKey.id] {
            let pendingAtPeer = peer.phase == .connecting
            releaseRequest(peer, &s)
            peer.peer = nil
            if pendingAtPeer {
                s.sessions[peerKey.session]!.ids[peerKey.id] = peer
                reject(peerKey, status: Self.rejectConsumer, privateData: [], reason: "the peer went away before accepting", &s)
            } else {
                peer.phase = .disconnected
                s.sessions[peerKey.session]!.ids[peerKey.id] = peer
                deliver(event(for: peer, id: CMIDHandle(rawValue: peerKey.id), type: .disconnected, vip: s.sessions[peerKey.session]!.vip),
                        to: peerKey, &s)
            }
        }
        releaseRequest(identifier, &s)
        identifier.peer = nil
        identifier.phase = .disconnected
        s.sessions[key.session]!.ids[key.id] = identifier
        if notifySelf { deliver(event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .disconnected, vip: s.sessions[key.session]!.vip), to: key, &s) }
    }

    /// Removes `key`'s id: its connection ends, its listener and port are freed.
    private func drop(_ key: Key, _ s: inout State) {
        guard let identifier = s.sessions[key.session]?.ids[key.id] else { return }
        if let endpoint = identifier.awaitingListener { unqueue(key, from: endpoint, &s) }
        if identifier.peer != nil || (identifier.device != nil && identifier.phase != .disconnected) { disconnect(key, notifySelf: false, &s) }
        if var linked = s.sessions[key.session]?.ids[key.id] { unlinkDevice(&linked, &s) }
        if let endpoint = identifier.listener, s.listeners[endpoint] == key {
            node?.releaseListener(NodeConnectionManager.Listener(port: endpoint.port, datagram: endpoint.datagram))
        }
        releaseRequest(s.sessions[key.session]?.ids[key.id] ?? identifier, &s)
        if let endpoint = identifier.listener, s.listeners[endpoint] == key { s.listeners[endpoint] = nil }
        // A request id shares its listener's port: only ids that reserved one free it.
        if identifier.listenID == nil, identifier.localPort != 0, let vip = s.sessions[key.session]?.vip {
            s.boundPorts.remove(Endpoint(vip: vip, port: identifier.localPort, datagram: identifier.datagram))
        }
        s.sessions[key.session]?.ids[key.id] = nil
    }
}

extension ConnectionManagerService {
    /// Forgets `identifier`'s device cm_id (destroyed when the last reference goes).
    fileprivate func unlinkDevice(_ identifier: inout Identifier, _ s: inout State) {
        guard let device = identifier.device else { return }
        s.byDevice[device.identifier] = nil
        identifier.device = nil
        identifier.pendingConnect = nil
    }

    /// An event of the device's rdma_cm (on its thread): the next step of a connect to another node, or a connect
    /// from another node for one of this router's listening pods.
    func deviceEvent(_ event: ConnectionEvent) {
        state.withLock { s in
            if event.kind == .connectRequest {
                incoming(event, &s)
                return
            }
            guard let key = s.byDevice[event.id], var identifier = s.sessions[key.session]?.ids[key.id], let device = identifier.device,
                  let vip = s.sessions[key.session]?.vip else { return }
            let handle = CMIDHandle(rawValue: key.id)
            func fail(_ type: CMEventType, _ why: String, status: Int32 = -Self.timedOut) {
                unlinkDevice(&identifier, &s)
                identifier.phase = .routeResolved
                s.sessions[key.session]!.ids[key.id] = identifier
                var failure = self.event(for: identifier, id: handle, type: type, vip: vip)
                failure.status = type == .rejected ? event.status : status
                failure.privateData = type == .rejected ? Array(event.privateData.prefix(CMPrivateData.reject)) : []
                failure.reason = why
                deliver(failure, to: key, &s)
            }
            switch event.kind {
            case .addressResolved:
                do { try device.resolveRoute() } catch { fail(.unreachable, "the node's rdma_cm found no route: \(error)") }
            case .routeResolved:
                guard let p = identifier.pendingConnect else { return }
                let header = NodeConnectionManager.header(destination: identifier.remote, source: vip, qpNum: identifier.datagram ? p.qpNum : nil)
                var parameters = ConnectionParameters(privateData: header + p.privateData,
                                                      responderResources: p.responderResources, initiatorDepth: p.initiatorDepth,
                                                      retryCount: p.retryCount, rnrRetryCount: p.rnrRetryCount)
                parameters.qpNumber = p.qpNum
                do { try device.connect(parameters) } catch { fail(.unreachable, "the node's rdma_cm could not connect: \(error)") }
            case .connectResponse:
                do {
                    let ready = try device.transitionAttributes(to: .readyToReceive), sending = try device.transitionAttributes(to: .readyToSend)
                    var response = self.event(for: identifier, id: handle, type: .connectResponse, vip: vip)
                    Self.apply(ready, sending, to: &response)
                    response.responderResources = ready.maxDestinationReadAtomic
                    response.initiatorDepth = sending.maxReadAtomic
                    response.privateData = Array(event.privateData.prefix(CMPrivateData.acceptRC))
                    deliver(response, to: key, &s)
                } catch {
                    fail(.connectError, "rdma_init_qp_attr: \(error)")
                }
            case .established where identifier.datagram:
                // The SIDR REP: the peer pod's QP number and Q_Key; the router now knows that QP as the peer's vip.
                guard identifier.phase == .connecting else { return }
                let peerQPN = event.datagramQPN & 0xFF_FFFF
                if let peerNode = identifier.peerNode { learn(Sender(node: peerNode, qpNum: peerQPN), vip: identifier.remote, session: key.session, &s) }
                unlinkDevice(&identifier, &s)
                identifier.phase = .connected
                s.sessions[key.session]!.ids[key.id] = identifier
                var established = self.event(for: identifier, id: handle, type: .established, vip: vip)
                established.remoteQPN = peerQPN
                established.qkey = event.datagramQKey
                established.privateData = Array(event.privateData.prefix(CMPrivateData.acceptUD))
                deliver(established, to: key, &s)
            case .established:
                guard identifier.phase == .accepted else { return }
                identifier.phase = .connected
                s.sessions[key.session]!.ids[key.id] = identifier
                var established = self.event(for: identifier, id: handle, type: .established, vip: vip)
                established.remoteQPN = identifier.qpNum
                deliver(established, to: key, &s)
            case .rejected:
                fail(.rejected, "rejected by the peer's node")
            case .unreachable:
                // A SIDR REP refusing the connect (nothing listens, or the pod rejected it), or no answer at all.
                fail(.unreachable, "the peer's node did not take the UD connect (status \(event.status))", status: event.status)
            case .disconnected:
                guard identifier.phase != .disconnected else { return }
                // Answers the DREQ (librdmacm expects the application to; the pod hears DISCONNECTED and may call it too).
                try? device.disconnect()
                identifier.phase = .disconnected
                s.sessions[key.session]!.ids[key.id] = identifier
                deliver(self.event(for: identifier, id: handle, type: .disconnected, vip: vip), to: key, &s)
            case .timewaitExit:
                break
            default:
                if identifier.phase == .connecting { fail(.unreachable, "the node's rdma_cm reported \(event.kind) (status \(event.status))") }
            }
        }
    }

    /// What `rdma_init_qp_attr` reported for RTR and RTS, as the event's QP fields (clamped to what the wire carries).
    private static func apply(_ ready: ConnectionTransition, _ sending: ConnectionTransition, to event: inout CMEvent) {
        event.remoteQPN = ready.destinationQPN & 0xFF_FFFF
        event.remotePSN = ready.receivePSN & 0xFF_FFFF
        event.localPSN = sending.sendPSN & 0xFF_FFFF
        event.pathMTU = min(ready.pathMTU, 5)
        event.retryCount = min(sending.retryCount, 7)
        event.rnrRetryCount = min(sending.rnrRetry, 7)
    }

    /// A connect from another node's router: its header names the pod; the request becomes an id of that pod's session.
    private func incoming(_ event: ConnectionEvent, _ s: inout State) {
        guard let device = event.newConnection else { return }
        guard let nodeListener = event.listenID.flatMap({ node?.listener($0) }),
              let (destination, source, sourceQPN, data) = NodeConnectionManager.parseHeader(event.privateData) else {
            try? device.reject()
            return
        }
        let port = nodeListener.port
        let endpoint = Endpoint(vip: destination, port: port, datagram: nodeListener.datagram)
        guard let listenKey = s.listeners[endpoint], var listener = s.sessions[listenKey.session]?.ids[listenKey.id],
              listener.backlog <= 0 || listener.pendingRequests < listener.backlog,
              let count = s.sessions[listenKey.session]?.ids.count, count < Self.maxIDsPerSession else {
            try? device.reject()
            return
        }
        if nodeListener.datagram {
            incomingDatagram(device, at: listenKey, &listener, port: port, destination: destination, source: source, sourceQPN: sourceQPN,
                             data: data, &s)
            return
        }
        let ready: ConnectionTransition, sending: ConnectionTransition
        do {
            ready = try device.transitionAttributes(to: .readyToReceive)
            sending = try device.transitionAttributes(to: .readyToSend)
        } catch {
            logger.warning("rdma_cm connect request refused: rdma_init_qp_attr failed", metadata: ["error": "\(error)"])
            try? device.reject()
            return
        }
        let (handle, request) = makeRequest(at: listenKey, &listener, port: port, destination: destination, source: source,
                                            sourcePort: device.remotePort, &s) { request, _ in request.device = device }
        let key = Key(session: listenKey.session, id: handle)
        s.byDevice[device.identifier] = key

        var announced = self.event(for: request, id: CMIDHandle(rawValue: handle), type: .connectRequest, vip: destination)
        announced.listenID = CMIDHandle(rawValue: listenKey.id)
        Self.apply(ready, sending, to: &announced)
        announced.responderResources = event.responderResources
        announced.initiatorDepth = event.initiatorDepth
        announced.privateData = Array(data.prefix(CMPrivateData.maxLength))
        deliver(announced, to: key, &s)
    }

    /// A UD connect (SIDR REQ) from another node's router for a pod listening here. The header must carry the
    /// connecting QP's number (0: none) and its source vip must be on the node the request came from: the router
    /// learns that QP as that vip (for `sender`), so a request naming a vip of another node is refused.
    private func incomingDatagram(_ device: ConnectionID, at listenKey: Key, _ listener: inout Identifier, port: UInt16, destination: IPv4Address,
                                  source: IPv4Address, sourceQPN: UInt32?, data: [UInt8], _ s: inout State) {
        guard let sourceQPN, sourceQPN <= 0xFF_FFFF,
              let from = device.remoteIPv4.flatMap({ IPv4Address($0) }), map.physicalIP(for: source) == from else {
            logger.warning("rdma_cm UD connect refused: its header names no QP, or a vip not on the node it came from",
                           metadata: ["source": "\(source)", "node": "\(device.remoteIPv4 ?? "?")"])
            try? device.reject()
            return
        }
        let (handle, request) = makeRequest(at: listenKey, &listener, port: port, destination: destination, source: source,
                                            sourcePort: device.remotePort, &s) { request, _ in
            request.device = device
            request.peerNode = from
        }
        let key = Key(session: listenKey.session, id: handle)
        s.byDevice[device.identifier] = key
        if sourceQPN != 0 { learn(Sender(node: from, qpNum: sourceQPN), vip: source, session: listenKey.session, &s) }
        var announced = self.event(for: request, id: CMIDHandle(rawValue: handle), type: .connectRequest, vip: destination)
        announced.listenID = CMIDHandle(rawValue: listenKey.id)
        announced.remoteQPN = sourceQPN
        announced.privateData = Array(data.prefix(CMPrivateData.maxLength))
        deliver(announced, to: key, &s)
    }

    /// Records that `sender` is `vip`, taught by `session`'s exchange; a session keeps its newest
    /// `maxSendersPerSession`.
    fileprivate func learn(_ sender: Sender, vip: IPv4Address, session: UInt64, _ s: inout State) {
        guard s.sessions[session] != nil else { return }
        s.senders[sender] = (vip, session)
        if s.sessions[session]!.learned.contains(sender) { return }
        s.sessions[session]!.learned.append(sender)
        if s.sessions[session]!.learned.count > Self.maxSendersPerSession {
            let oldest = s.sessions[session]!.learned.removeFirst()
            if s.senders[oldest]?.session == session { s.senders[oldest] = nil }
        }
    }

    /// The vip of the pod whose UD QP `qpNum` sent a message whose GRH holds `gid` (`ibv_init_ah_from_wc`): a pod of
    /// this node (the fake device's GRH is zeros; the real device's holds this node's GID) with a cm id on that QP,
    /// or a sender of another node that a UD connect of this router taught it (and that the vip map still places
    /// on that node).
    func sender(gid: FFProtocol.GID, qpNum: UInt32) throws(ErrorReply) -> IPv4Address {
        try state.withLock { s throws(ErrorReply) in
            if gid == .zero || gid == FFProtocol.GID(ipv4Mapped: nodeIP) {
                for session in s.sessions.values where session.ids.values.contains(where: { $0.datagram && $0.qpNum == qpNum }) {
                    return session.vip
                }
                throw ErrorReply(errno: Errno.noEntry, reason: "no UD QP \(qpNum) of a pod of this node is on an rdma_cm id")
            }
            guard let node = gid.ipv4Mapped else {
                throw invalid("sender GID \(gid) is not an IPv4-mapped (RoCE v2) node GID")
            }
            guard let learned = s.senders[Sender(node: node, qpNum: qpNum)] else {
                throw ErrorReply(errno: Errno.noEntry, reason: "no UD connect with QP \(qpNum) of node \(node) is known to this router")
            }
            guard map.physicalIP(for: learned.vip) == node else {
                throw ErrorReply(errno: Errno.noEntry, reason: "vip \(learned.vip) of QP \(qpNum) is no longer on node \(node)")
            }
            return learned.vip
        }
    }
}

/// A small deterministic generator for starting PSNs (no allocation, no system call under the lock).
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt32 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: z ^ (z >> 31))
    }
}
