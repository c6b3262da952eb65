import FFProtocol
import FFSystem
import Verbs

/// The active side and the end of connections: resolve, connect (in process, with the listener grace, or over the
/// device's rdma_cm), establish, disconnect, destroy.
extension ConnectionManagerService {
    /// rdma_resolve_addr: ADDR_RESOLVED, or ADDR_ERROR for a vip the map does not know (yet).
    func resolveAddress(_ id: CMIDHandle, _ source: IPv4Address, _ destination: IPv4Address, _ port: UInt16,
                        _ c: Context, _ s: inout State) throws(ErrorReply) -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        var identifier = try s.lookup(key)
        guard [.idle, .addressResolved].contains(identifier.phase) else {
            throw Self.invalid("rdma_resolve_addr: the id is \(identifier.phase)")
        }
        guard source == Self.any || source == c.vip else {
            throw ErrorReply(errno: Errno.addressNotAvailable,
                             reason: "rdma_resolve_addr: source \(source) is not this pod's address "
                                 + "(its vip is \(c.vip))")
        }
        if identifier.localPort == 0 {
            identifier.localPort = try s.reserve(0, vip: c.vip, datagram: identifier.datagram)
        }
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
        s.store(identifier, at: key)
        deliver(event, to: key, &s)
        return CMReply(address: c.vip, port: identifier.localPort)
    }

    /// rdma_resolve_route: ROUTE_RESOLVED at once (the route is the router's business).
    func resolveRoute(_ id: CMIDHandle, _ c: Context, _ s: inout State) throws(ErrorReply) -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        var identifier = try s.lookup(key)
        guard identifier.phase == .addressResolved else {
            throw Self.invalid("rdma_resolve_route: the address is not resolved (the id is \(identifier.phase))")
        }
        identifier.phase = .routeResolved
        s.store(identifier, at: key)
        deliver(event(for: identifier, id: id, type: .routeResolved, vip: c.vip), to: key, &s)
        return CMReply()
    }

    /// Where a connect goes after its checks.
    private struct ToNode {
        var peerNode: IPv4Address
        var port: UInt16
        var datagram: Bool
    }

    /// rdma_connect. To a pod of this router it is paired in process (`connectLocally`), waiting for the listener
    /// a bounded moment; to another node the device's cm_id is made and its address resolution started with the
    /// lock released, and `deviceEvent` takes it from there.
    func connect(_ p: CMConnectionParameters, _ c: Context, ownsQP: (UInt32) -> Bool) throws {
        let key = Key(session: c.session, id: p.id.rawValue)
        let toNode: ToNode? = try locked { s throws(ErrorReply) in try startConnect(p, key, c, ownsQP: ownsQP, &s) }
        guard let toNode, let node else { return }
        let device: ConnectionID
        do {
            device = try node.newID(datagram: toNode.datagram)
        } catch {
            abandonConnect(key, nil)
            throw error
        }
        // Linked before its address is resolved, so that the device's first event finds the id.
        let linked: Bool = locked { s in
            guard var identifier = s.identifier(key), identifier.phase == .connecting, identifier.device == nil,
                  identifier.pendingConnect != nil, identifier.awaitingListener == nil else { return false }
            identifier.device = device
            s.byDevice[device.identifier] = key
            s.store(identifier, at: key)
            return true
        }
        // The id went meanwhile (its session closed): its connect is over, the new cm_id goes with `device`.
        guard linked else { return }
        do {
            try device.resolveAddress(source: nodeIP.description, destination: toNode.peerNode.description,
                                      port: toNode.port)
        } catch {
            abandonConnect(key, device)
            throw error
        }
    }

    /// The locked part of rdma_connect: checks, the id connecting; nil when the connect was handled here (in
    /// process, waiting for a listener, or unreachable without a device).
    private func startConnect(_ p: CMConnectionParameters, _ key: Key, _ c: Context, ownsQP: (UInt32) -> Bool,
                              _ s: inout State) throws(ErrorReply) -> ToNode? {
        var identifier = try s.lookup(key)
        guard identifier.phase == .routeResolved else {
            throw Self.invalid("rdma_connect: the route is not resolved (the id is \(identifier.phase))")
        }
        let datagram = identifier.datagram
        try Self.checkPrivateData(p.privateData, budget: datagram ? CMPrivateData.connectUD : CMPrivateData.connectRC,
                                  "rdma_connect")
        // A UD connect may come without a QP; a QP number it names must be the session's (the peer's router learns
        // it as this pod's).
        guard datagram ? (p.qpNum == 0 || ownsQP(p.qpNum)) : (p.qpNum != 0 && ownsQP(p.qpNum)) else {
            throw Self.invalid("rdma_connect: QP number \(p.qpNum) is not one of this session's QPs")
        }
        identifier.qpNum = p.qpNum
        identifier.psn = s.random.next() & 0xFF_FFFF
        identifier.phase = .connecting
        let destination = identifier.remote
        if destination != c.vip, let peerNode = map.physicalIP(for: destination), peerNode != nodeIP {
            guard node != nil else {
                var event = self.event(for: identifier, id: p.id, type: .unreachable, vip: c.vip)
                event.status = -Errno.timedOut
                event.reason = "vip \(destination) is on node \(peerNode); this router's connection manager reaches "
                    + "only its own pods (no device rdma_cm)"
                identifier.phase = .routeResolved
                s.store(identifier, at: key)
                deliver(event, to: key, &s)
                return nil
            }
            // To another node: the device's rdma_cm resolves the node IPs first, then connects (deviceEvent); UD
            // ids connect in the UDP port space (SIDR).
            identifier.pendingConnect = p
            identifier.peerNode = peerNode
            s.store(identifier, at: key)
            return ToNode(peerNode: peerNode, port: identifier.remotePort, datagram: datagram)
        }
        s.store(identifier, at: key)
        let endpoint = Endpoint(vip: destination, port: identifier.remotePort, datagram: datagram)
        guard s.listeners[endpoint] != nil else {
            // Nobody listens there yet. Directly, a REQ to a port with no listener is rejected at once; but a program
            // whose peer tells it out of band to connect (perftest -R) may connect a moment before that peer's listen
            // has gone through its shim and router, which takes round trips a kernel listen does not. So the connect
            // waits a bounded moment for the listener, and is refused as before when none comes.
            identifier.pendingConnect = p
            identifier.awaitingListener = endpoint
            s.store(identifier, at: key)
            s.awaitingListener[endpoint, default: []].append(key)
            s.afterwards.append(.graceTimer(key, endpoint))
            return nil
        }
        connectLocally(key, p, at: endpoint, &s)
        return nil
    }

    /// A connect to another node that failed before the device took it: the id goes back to route resolved (the
    /// application may try again), if it is still that connect's (`device`, nil before one was made).
    private func abandonConnect(_ key: Key, _ device: ConnectionID?) {
        locked { s in
            guard var identifier = s.identifier(key), identifier.phase == .connecting,
                  identifier.device === device else { return }
            s.unlinkDevice(&identifier)
            identifier.pendingConnect = nil
            identifier.peerNode = nil
            identifier.phase = .routeResolved
            s.store(identifier, at: key)
        }
    }

    /// A connect that waited for a listener at `endpoint`, now there.
    func resumeConnect(_ key: Key, at endpoint: Endpoint, _ s: inout State) {
        guard let p = takeWaitingConnect(key, at: endpoint, &s) else { return }
        connectLocally(key, p, at: endpoint, &s)
    }

    /// The grace of a connect waiting for a listener at `endpoint` is over: if it still waits, it is refused.
    func listenerGraceEnded(_ key: Key, at endpoint: Endpoint) {
        locked { s in
            guard s.unqueue(key, from: endpoint), takeWaitingConnect(key, at: endpoint, &s) != nil else { return }
            refuseForNoListener(key, at: endpoint, &s)
        }
    }

    /// The parameters of `key`'s connect if it still waits for a listener at `endpoint` (not disconnected or destroyed
    /// meanwhile), which then waits no more.
    private func takeWaitingConnect(_ key: Key, at endpoint: Endpoint, _ s: inout State) -> CMConnectionParameters? {
        guard var identifier = s.identifier(key), identifier.phase == .connecting,
              identifier.awaitingListener == endpoint, let p = identifier.pendingConnect else { return nil }
        identifier.awaitingListener = nil
        identifier.pendingConnect = nil
        s.store(identifier, at: key)
        return p
    }

    /// Pairs `key`'s connect with the listener at `endpoint` (a pod of this router): the listener's session gets a
    /// request id and CONNECT_REQUEST, or the connect is refused (no listener, backlog full).
    private func connectLocally(_ key: Key, _ p: CMConnectionParameters, at endpoint: Endpoint, _ s: inout State) {
        guard var identifier = s.identifier(key), let source = s.vip(of: key.session) else { return }
        let destination = endpoint.vip
        guard let listenKey = s.listeners[endpoint], var listener = s.identifier(listenKey) else {
            refuseForNoListener(key, at: endpoint, &s)
            return
        }
        let listeningPort = listener.localPort
        let made = hasRoom(listener, of: listenKey, s) ? makeRequest(
            at: listenKey, &listener, port: listeningPort, destination: destination, source: source,
            sourcePort: identifier.localPort, &s
        ) { request, s in
            request.peer = key
            request.psn = s.random.next() & 0xFF_FFFF
        } : nil
        guard let (handle, request) = made else {
            reject(key, status: Self.rejectConsumer, privateData: [], reason: "the listener's backlog is full", &s)
            return
        }
        identifier.peer = Key(session: listenKey.session, id: handle)
        s.store(identifier, at: key)

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

    /// rdma_establish (the RTU): in process the listener's id hears ESTABLISHED; over the device the device's cm_id
    /// sends it, with the lock released.
    func establish(_ id: CMIDHandle, _ c: Context) throws -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        let device: ConnectionID? = try locked { s throws(ErrorReply) in
            var identifier = try s.lookup(key)
            if let device = identifier.device, identifier.phase == .connecting { return device }
            guard identifier.phase == .connecting, let peerKey = identifier.peer, var peer = s.identifier(peerKey),
                  peer.phase == .accepted, let peerVip = s.vip(of: peerKey.session) else {
                throw Self.invalid("rdma_establish: the connection is not waiting to be established "
                                   + "(the id is \(identifier.phase))")
            }
            identifier.phase = .connected
            peer.phase = .connected
            s.store(identifier, at: key)
            s.store(peer, at: peerKey)
            var event = self.event(for: peer, id: CMIDHandle(rawValue: peerKey.id), type: .established, vip: peerVip)
            event.remoteQPN = identifier.qpNum
            deliver(event, to: peerKey, &s)
            return nil
        }
        guard let device else { return CMReply() }
        try device.establish()
        try locked { s throws(ErrorReply) in
            var identifier = try s.lookup(key)
            guard identifier.has(device), identifier.phase == .connecting else {
                throw Self.invalid("rdma_establish: the connection went away meanwhile (the id is \(identifier.phase))")
            }
            identifier.phase = .connected
            s.store(identifier, at: key)
        }
        return CMReply()
    }

    /// rdma_disconnect of a connected (or connecting) id; the device's cm_id, if any, disconnects after the lock.
    func disconnectCall(_ id: CMIDHandle, _ c: Context, _ s: inout State) throws(ErrorReply) -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        let identifier = try s.lookup(key)
        switch identifier.phase {
        case .connected, .accepted, .connecting:
            disconnect(key, notifySelf: true, &s)
            if var done = s.identifier(key) {
                s.unlinkDevice(&done)
                s.store(done, at: key)
            }
        case .disconnected:
            break
        default:
            throw Self.invalid("rdma_disconnect: the id is not connected (it is \(identifier.phase))")
        }
        return CMReply()
    }

    /// Ends `key`'s connection: the peer sees DISCONNECTED (or REJECTED for a connect that was still pending), and so
    /// does `key` itself when it asked (rdma_disconnect).
    func disconnect(_ key: Key, notifySelf: Bool, _ s: inout State) {
        guard var identifier = s.identifier(key) else { return }
        if let device = identifier.device {
            // The peer's router hears it from the device's rdma_cm (DREQ), sent once the lock is released.
            let answer: Afterwards = identifier.phase == .requestReceived
                ? .reject(device, privateData: []) : .disconnect(device)
            s.afterwards.append(answer)
            releaseRequest(identifier, &s)
            identifier.phase = .disconnected
            s.store(identifier, at: key)
            if notifySelf { deliverDisconnected(identifier, key, &s) }
            return
        }
        if let peerKey = identifier.peer, var peer = s.identifier(peerKey) {
            let pendingAtPeer = peer.phase == .connecting
            releaseRequest(peer, &s)
            peer.peer = nil
            if pendingAtPeer {
                s.store(peer, at: peerKey)
                reject(peerKey, status: Self.rejectConsumer, privateData: [],
                       reason: "the peer went away before accepting", &s)
            } else {
                peer.phase = .disconnected
                s.store(peer, at: peerKey)
                deliverDisconnected(peer, peerKey, &s)
            }
        }
        releaseRequest(identifier, &s)
        identifier.peer = nil
        identifier.phase = .disconnected
        s.store(identifier, at: key)
        if notifySelf { deliverDisconnected(identifier, key, &s) }
    }

    /// Removes `key`'s id: its connection ends, its listener and port are freed.
    func drop(_ key: Key, _ s: inout State) {
        guard let identifier = s.identifier(key) else { return }
        if let endpoint = identifier.awaitingListener { s.unqueue(key, from: endpoint) }
        if identifier.peer != nil || (identifier.device != nil && identifier.phase != .disconnected) {
            disconnect(key, notifySelf: false, &s)
        }
        if var linked = s.identifier(key) {
            s.unlinkDevice(&linked)
            s.store(linked, at: key)
        }
        if let endpoint = identifier.listener, s.listeners[endpoint] == key {
            // A listen still setting up the node's listener releases it itself (`listen`).
            if !identifier.startingListen {
                s.afterwards.append(.releaseListener(NodeConnectionManager.Listener(port: endpoint.port,
                                                                                    datagram: endpoint.datagram)))
            }
            s.listeners[endpoint] = nil
        }
        releaseRequest(s.identifier(key) ?? identifier, &s)
        // A request id shares its listener's port: only ids that reserved one free it.
        if identifier.listenID == nil, identifier.localPort != 0, let vip = s.vip(of: key.session) {
            s.boundPorts.remove(Endpoint(vip: vip, port: identifier.localPort, datagram: identifier.datagram))
        }
        s.sessions[key.session]?.ids[key.id] = nil
    }
}
