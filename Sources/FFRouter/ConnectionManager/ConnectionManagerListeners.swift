import FFProtocol
import FFSystem
import Verbs

/// The passive side: bind, listen, and the answers to connect requests (accept, reject), in process and over the
/// device's rdma_cm.
extension ConnectionManagerService {
    /// rdma_bind_addr: a port of the pod's vip (0: an ephemeral one).
    func bind(_ id: CMIDHandle, _ address: IPv4Address, _ port: UInt16, _ c: Context,
              _ s: inout State) throws(ErrorReply) -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        var identifier = try s.lookup(key)
        guard identifier.phase == .idle, identifier.localPort == 0 else {
            throw Self.invalid("rdma_bind_addr: the id is already bound")
        }
        guard address == Self.any || address == c.vip else {
            throw ErrorReply(errno: Errno.addressNotAvailable,
                             reason: "rdma_bind_addr: \(address) is not this pod's address (its vip is \(c.vip))")
        }
        identifier.localPort = try s.reserve(port, vip: c.vip, datagram: identifier.datagram)
        identifier.boundAddress = address
        s.store(identifier, at: key)
        return CMReply(address: address, port: identifier.localPort)
    }

    /// rdma_listen. The listener counts at once for connects of this router's pods; with a device, the node's
    /// listener on the port is set up with the lock released, and undone if that fails or the id went meanwhile.
    func listen(_ id: CMIDHandle, backlog: Int32, _ c: Context) throws -> CMReply {
        let key = Key(session: c.session, id: id.rawValue)
        let (endpoint, reply) = try locked { s throws(ErrorReply) in
            var identifier = try s.lookup(key)
            guard identifier.phase == .idle else { throw Self.invalid("rdma_listen: the id is \(identifier.phase)") }
            if identifier.localPort == 0 {
                identifier.localPort = try s.reserve(0, vip: c.vip, datagram: identifier.datagram)
                identifier.boundAddress = Self.any
                // Stored now so that destroying the id frees the port whatever happens next.
                s.store(identifier, at: key)
            }
            let endpoint = Endpoint(vip: c.vip, port: identifier.localPort, datagram: identifier.datagram)
            guard s.listeners[endpoint] == nil else {
                throw ErrorReply(errno: Errno.addressInUse,
                                 reason: "rdma_listen: \(c.vip) port \(endpoint.port) already has a listener")
            }
            s.listeners[endpoint] = key
            identifier.listener = endpoint
            identifier.backlog = Int(backlog)
            identifier.phase = .listening
            identifier.startingListen = node != nil
            s.store(identifier, at: key)
            for waiting in s.awaitingListener.removeValue(forKey: endpoint) ?? [] {
                resumeConnect(waiting, at: endpoint, &s)
            }
            return (endpoint, CMReply(address: identifier.boundAddress ?? Self.any, port: identifier.localPort))
        }
        guard let node else { return reply }
        let nodeListener = NodeConnectionManager.Listener(port: endpoint.port, datagram: endpoint.datagram)
        var failure: (any Error)?
        do { try node.retainListener(nodeListener) } catch { failure = error }
        let started = failure == nil
        locked { s in
            guard var identifier = s.identifier(key), identifier.startingListen, identifier.listener == endpoint,
                  s.listeners[endpoint] == key else {
                // The id went (its session closed) while the node listener was set up: nobody releases it but us.
                if started { s.afterwards.append(.releaseListener(nodeListener)) }
                return
            }
            identifier.startingListen = false
            if !started {
                s.listeners[endpoint] = nil
                identifier.listener = nil
                identifier.backlog = 0
                identifier.phase = .idle
            }
            s.store(identifier, at: key)
        }
        if let failure { throw failure }
        return reply
    }

    /// rdma_accept of a connect request: in process the connecting id hears CONNECT_RESPONSE (RC) or ESTABLISHED
    /// (UD); over the device the device's cm_id accepts, with the lock released.
    func accept(_ p: CMConnectionParameters, _ c: Context, ownsQP: (UInt32) -> Bool) throws -> CMReply {
        let key = Key(session: c.session, id: p.id.rawValue)
        let device: (ConnectionID, ConnectionParameters)? = try locked { s throws(ErrorReply) in
            let identifier = try s.lookup(key)
            let budget = identifier.datagram ? CMPrivateData.acceptUD : CMPrivateData.acceptRC
            guard let device = identifier.device else {
                try acceptLocally(p, key, identifier, budget: budget, ownsQP: ownsQP, &s)
                return nil
            }
            guard identifier.phase == .requestReceived else {
                throw Self.invalid("rdma_accept: no connect request is waiting on this id (it is \(identifier.phase))")
            }
            try Self.checkPrivateData(p.privateData, budget: budget, "rdma_accept")
            guard p.qpNum != 0, ownsQP(p.qpNum) else {
                throw Self.invalid("rdma_accept: QP number \(p.qpNum) is not one of this session's QPs")
            }
            var parameters = ConnectionParameters(privateData: p.privateData, responderResources: p.responderResources,
                                                  initiatorDepth: p.initiatorDepth, retryCount: p.retryCount,
                                                  rnrRetryCount: p.rnrRetryCount)
            parameters.qpNumber = p.qpNum
            return (device, parameters)
        }
        guard let (device, parameters) = device else { return CMReply() }
        // UD: the device answers the SIDR REQ with the pod's QP number and the port space's Q_Key.
        try device.accept(parameters)
        try locked { s throws(ErrorReply) in
            var identifier = try answeredRequest(key, device, "rdma_accept", s)
            releaseRequest(identifier, &s)
            identifier.qpNum = p.qpNum
            if identifier.datagram {
                // SIDR: resolved once answered; the device's cm_id has nothing more to do.
                identifier.phase = .connected
                s.unlinkDevice(&identifier)
            } else {
                identifier.phase = .accepted
            }
            s.store(identifier, at: key)
        }
        return CMReply()
    }

    /// rdma_accept of a request from a pod of this router.
    private func acceptLocally(_ p: CMConnectionParameters, _ key: Key, _ accepted: Identifier, budget: Int,
                               ownsQP: (UInt32) -> Bool, _ s: inout State) throws(ErrorReply) {
        var identifier = accepted
        guard identifier.phase == .requestReceived, let peerKey = identifier.peer, var peer = s.identifier(peerKey),
              let peerVip = s.vip(of: peerKey.session) else {
            throw Self.invalid("rdma_accept: no connect request is waiting on this id (it is \(identifier.phase))")
        }
        try Self.checkPrivateData(p.privateData, budget: budget, "rdma_accept")
        guard p.qpNum != 0, ownsQP(p.qpNum) else {
            throw Self.invalid("rdma_accept: QP number \(p.qpNum) is not one of this session's QPs")
        }
        identifier.qpNum = p.qpNum
        releaseRequest(identifier, &s)
        var event = self.event(for: peer, id: CMIDHandle(rawValue: peerKey.id),
                               type: identifier.datagram ? .established : .connectResponse, vip: peerVip)
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
        s.store(identifier, at: key)
        s.store(peer, at: peerKey)
        deliver(event, to: peerKey, &s)
    }

    /// rdma_reject of a connect request: in process the connecting id hears REJECTED; over the device the device's
    /// cm_id rejects, with the lock released.
    func reject(_ p: CMConnectionParameters, _ c: Context) throws -> CMReply {
        let key = Key(session: c.session, id: p.id.rawValue)
        let device: ConnectionID? = try locked { s throws(ErrorReply) in
            var identifier = try s.lookup(key)
            guard identifier.phase == .requestReceived else {
                throw Self.invalid("rdma_reject: no connect request is waiting on this id (it is \(identifier.phase))")
            }
            try Self.checkPrivateData(p.privateData, budget: CMPrivateData.reject, "rdma_reject")
            if let device = identifier.device { return device }
            guard let peerKey = identifier.peer else {
                throw Self.invalid("rdma_reject: no connect request is waiting on this id (it is \(identifier.phase))")
            }
            releaseRequest(identifier, &s)
            identifier.phase = .disconnected
            identifier.peer = nil
            s.store(identifier, at: key)
            reject(peerKey, status: Self.rejectConsumer, privateData: p.privateData,
                   reason: "rejected by the application", &s)
            return nil
        }
        guard let device else { return CMReply() }
        try device.reject(privateData: p.privateData)
        try locked { s throws(ErrorReply) in
            var identifier = try answeredRequest(key, device, "rdma_reject", s)
            releaseRequest(identifier, &s)
            s.unlinkDevice(&identifier)
            identifier.phase = .disconnected
            s.store(identifier, at: key)
        }
        return CMReply()
    }

    /// `key`'s id after `call` answered its request over `device` with the lock released: EBADF if the id went
    /// meanwhile, EINVAL if it moved on (no longer that request).
    private func answeredRequest(_ key: Key, _ device: ConnectionID, _ call: String,
                                 _ s: State) throws(ErrorReply) -> Identifier {
        let identifier = try s.lookup(key)
        guard identifier.has(device), identifier.phase == .requestReceived else {
            throw Self.invalid("\(call): the connect request went away meanwhile (the id is \(identifier.phase))")
        }
        return identifier
    }

    /// A connect request from `source` becomes a new id of the listener's session, counted against its backlog;
    /// `configure` sets what only one kind of request has (its peer, or the device's cm_id). Nil when the listener's
    /// session is gone.
    func makeRequest(at listenKey: Key, _ listener: inout Identifier, port: UInt16, destination: IPv4Address,
                     source: IPv4Address, sourcePort: UInt16, _ s: inout State,
                     configure: (inout Identifier, inout State) -> Void) -> (UInt32, Identifier)? {
        guard let handle = s.nextHandle(of: listenKey.session) else { return nil }
        var request = Identifier(channel: listener.channel, portSpace: listener.portSpace)
        request.phase = .requestReceived
        request.localPort = port
        request.boundAddress = destination
        request.remote = source
        request.remotePort = sourcePort
        request.listenID = listenKey
        configure(&request, &s)
        listener.pendingRequests += 1
        s.store(listener, at: listenKey)
        s.store(request, at: Key(session: listenKey.session, id: handle))
        return (handle, request)
    }

    /// Whether `listener` takes one more request: its backlog (0: unbounded) and its session's id limit.
    func hasRoom(_ listener: Identifier, of listenKey: Key, _ s: State) -> Bool {
        guard let count = s.sessions[listenKey.session]?.ids.count else { return false }
        return (listener.backlog <= 0 || listener.pendingRequests < listener.backlog) && count < Self.maxIDsPerSession
    }

    /// A request id stops counting against its listener's backlog.
    func releaseRequest(_ identifier: Identifier, _ s: inout State) {
        guard identifier.phase == .requestReceived, let listen = identifier.listenID,
              var listener = s.identifier(listen) else { return }
        listener.pendingRequests = max(0, listener.pendingRequests - 1)
        s.store(listener, at: listen)
    }
}
