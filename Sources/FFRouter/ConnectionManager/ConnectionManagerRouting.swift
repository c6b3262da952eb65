import FFProtocol
import FFSystem
import Verbs

/// Routing between routers: the events of the device's rdma_cm (on the `ffr-cm` thread) that carry a connect to
/// another node on, and the connects other nodes' routers make to this router's listening pods. Every call on the
/// device's cm_ids is made with the lock released; the state is looked up again afterwards, and an event for a
/// cm_id the router no longer links to an id is dropped.
extension ConnectionManagerService {
    /// An event of the device's rdma_cm (on its thread): the next step of a connect to another node, or a connect
    /// from another node for one of this router's listening pods.
    func deviceEvent(_ event: ConnectionEvent) {
        switch event.kind {
        case .connectRequest:
            incoming(event)
        case .addressResolved:
            guard let device = linkedDevice(event.id) else { return }
            do { try device.resolveRoute() } catch {
                failConnect(event.id, device, .unreachable, "the node's rdma_cm found no route: \(error)")
            }
        case .routeResolved:
            let next: (ConnectionID, ConnectionParameters)? = locked { s in
                guard let key = s.byDevice[event.id], let identifier = s.identifier(key),
                      let device = identifier.device, let vip = s.vip(of: key.session),
                      let p = identifier.pendingConnect else { return nil }
                let header = NodeConnectionManager.header(destination: identifier.remote, source: vip,
                                                          qpNum: identifier.datagram ? p.qpNum : nil)
                var parameters = ConnectionParameters(privateData: header + p.privateData,
                                                      responderResources: p.responderResources,
                                                      initiatorDepth: p.initiatorDepth, retryCount: p.retryCount,
                                                      rnrRetryCount: p.rnrRetryCount)
                parameters.qpNumber = p.qpNum
                return (device, parameters)
            }
            guard let (device, parameters) = next else { return }
            do { try device.connect(parameters) } catch {
                failConnect(event.id, device, .unreachable, "the node's rdma_cm could not connect: \(error)")
            }
        case .connectResponse:
            guard let device = linkedDevice(event.id) else { return }
            let ready: ConnectionTransition, sending: ConnectionTransition
            do {
                ready = try device.transitionAttributes(to: .readyToReceive)
                sending = try device.transitionAttributes(to: .readyToSend)
            } catch {
                failConnect(event.id, device, .connectError, "rdma_init_qp_attr: \(error)")
                return
            }
            locked { s in
                guard let key = s.byDevice[event.id], let identifier = s.identifier(key), identifier.has(device),
                      let vip = s.vip(of: key.session) else { return }
                var response = self.event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .connectResponse,
                                          vip: vip)
                Self.apply(ready, sending, to: &response)
                response.responderResources = ready.maxDestinationReadAtomic
                response.initiatorDepth = sending.maxReadAtomic
                response.privateData = Array(event.privateData.prefix(CMPrivateData.acceptRC))
                deliver(response, to: key, &s)
            }
        default:
            locked { s in settle(event, &s) }
        }
    }

    /// The device cm_id `id` names, if the router still links it to an id.
    private func linkedDevice(_ id: ConnectionID.Identifier) -> ConnectionID? {
        locked { s in s.byDevice[id].flatMap { s.identifier($0)?.device } }
    }

    /// The connect over `device` failed: its id, if still linked to it, goes back to route resolved and hears
    /// `type` (REJECTED with the peer's status and private data, or `status`).
    private func failConnect(_ id: ConnectionID.Identifier, _ device: ConnectionID, _ type: CMEventType, _ why: String,
                             status: Int32 = -Errno.timedOut, peerEvent: ConnectionEvent? = nil) {
        locked { s in fail(id, device, type, why, status: status, peerEvent: peerEvent, &s) }
    }

    /// `failConnect` under the lock.
    private func fail(_ id: ConnectionID.Identifier, _ device: ConnectionID, _ type: CMEventType, _ why: String,
                      status: Int32 = -Errno.timedOut, peerEvent: ConnectionEvent? = nil, _ s: inout State) {
        guard let key = s.byDevice[id], var identifier = s.identifier(key), identifier.has(device),
              let vip = s.vip(of: key.session) else { return }
        s.unlinkDevice(&identifier)
        identifier.phase = .routeResolved
        s.store(identifier, at: key)
        var failure = event(for: identifier, id: CMIDHandle(rawValue: key.id), type: type, vip: vip)
        failure.status = status
        if type == .rejected, let peerEvent {
            failure.status = peerEvent.status
            failure.privateData = Array(peerEvent.privateData.prefix(CMPrivateData.reject))
        }
        failure.reason = why
        deliver(failure, to: key, &s)
    }

    /// The device events that need no call on the device before the state changes (the DREQ's answer is left for
    /// after the lock).
    private func settle(_ event: ConnectionEvent, _ s: inout State) {
        guard let key = s.byDevice[event.id], var identifier = s.identifier(key), let device = identifier.device,
              let vip = s.vip(of: key.session) else { return }
        let handle = CMIDHandle(rawValue: key.id)
        switch event.kind {
        case .established where identifier.datagram:
            // The SIDR REP: the peer pod's QP number and Q_Key; the router now knows that QP as the peer's vip.
            guard identifier.phase == .connecting else { return }
            let peerQPN = event.datagramQPN & 0xFF_FFFF
            if let peerNode = identifier.peerNode {
                learn(Sender(node: peerNode, qpNum: peerQPN), vip: identifier.remote, session: key.session, &s)
            }
            s.unlinkDevice(&identifier)
            identifier.phase = .connected
            s.store(identifier, at: key)
            var established = self.event(for: identifier, id: handle, type: .established, vip: vip)
            established.remoteQPN = peerQPN
            established.qkey = event.datagramQKey
            established.privateData = Array(event.privateData.prefix(CMPrivateData.acceptUD))
            deliver(established, to: key, &s)
        case .established:
            guard identifier.phase == .accepted else { return }
            identifier.phase = .connected
            s.store(identifier, at: key)
            var established = self.event(for: identifier, id: handle, type: .established, vip: vip)
            established.remoteQPN = identifier.qpNum
            deliver(established, to: key, &s)
        case .rejected:
            fail(event.id, device, .rejected, "rejected by the peer's node", peerEvent: event, &s)
        case .unreachable:
            // A SIDR REP refusing the connect (nothing listens, or the pod rejected it), or no answer at all.
            fail(event.id, device, .unreachable, "the peer's node did not take the UD connect (status \(event.status))",
                 status: event.status, &s)
        case .disconnected:
            guard identifier.phase != .disconnected else { return }
            // Answers the DREQ (librdmacm expects the application to; the pod hears DISCONNECTED and may call it too).
            s.afterwards.append(.disconnect(device))
            identifier.phase = .disconnected
            s.store(identifier, at: key)
            deliverDisconnected(identifier, key, &s)
        case .timewaitExit:
            break
        default:
            if identifier.phase == .connecting {
                fail(event.id, device, .unreachable,
                     "the node's rdma_cm reported \(event.kind) (status \(event.status))", &s)
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

    /// Whether a pod listens at `endpoint` and takes one more request.
    private func listenerHasRoom(at endpoint: Endpoint) -> Bool {
        locked { s in
            guard let listenKey = s.listeners[endpoint], let listener = s.identifier(listenKey) else { return false }
            return hasRoom(listener, of: listenKey, s)
        }
    }

    /// A connect from another node's router: its header names the pod; the request becomes an id of that pod's
    /// session. The device's cm_id is asked for the QP parameters, and rejected, with the lock released.
    private func incoming(_ event: ConnectionEvent) {
        guard let device = event.newConnection else { return }
        guard let nodeListener = event.listenID.flatMap({ node?.listener($0) }),
              let (destination, source, sourceQPN, data) = NodeConnectionManager.parseHeader(event.privateData) else {
            try? device.reject()
            return
        }
        let port = nodeListener.port
        let endpoint = Endpoint(vip: destination, port: port, datagram: nodeListener.datagram)
        guard listenerHasRoom(at: endpoint) else {
            try? device.reject()
            return
        }
        if nodeListener.datagram {
            incomingDatagram(device, at: endpoint, destination: destination, source: source, sourceQPN: sourceQPN,
                             data: data)
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
        let sourcePort = device.remotePort
        let taken: Bool = locked { s in
            // Again: the listener may have gone, or filled up, while the lock was released.
            guard let (listenKey, key, request) = takeRequest(device, at: endpoint, destination: destination,
                                                              source: source, sourcePort: sourcePort, &s)
            else { return false }
            var announced = self.event(for: request, id: CMIDHandle(rawValue: key.id), type: .connectRequest,
                                       vip: destination)
            announced.listenID = CMIDHandle(rawValue: listenKey.id)
            Self.apply(ready, sending, to: &announced)
            announced.responderResources = event.responderResources
            announced.initiatorDepth = event.initiatorDepth
            announced.privateData = Array(data.prefix(CMPrivateData.maxLength))
            deliver(announced, to: key, &s)
            return true
        }
        if !taken { try? device.reject() }
    }

    /// A UD connect (SIDR REQ) from another node's router for a pod listening here. The header must carry the
    /// connecting QP's number (0: none) and its source vip must be on the node the request came from: the router
    /// learns that QP as that vip (for `sender`), so a request naming a vip of another node is refused.
    private func incomingDatagram(_ device: ConnectionID, at endpoint: Endpoint, destination: IPv4Address,
                                  source: IPv4Address, sourceQPN: UInt32?, data: [UInt8]) {
        guard let sourceQPN, sourceQPN <= 0xFF_FFFF,
              let from = device.remoteIPv4.flatMap({ IPv4Address($0) }), map.physicalIP(for: source) == from else {
            logger.warning("rdma_cm UD connect refused: its header names no QP, or a vip not on the node it came from",
                           metadata: ["source": "\(source)", "node": "\(device.remoteIPv4 ?? "?")"])
            try? device.reject()
            return
        }
        let sourcePort = device.remotePort
        let taken: Bool = locked { s in
            guard let (listenKey, key, request) = takeRequest(device, at: endpoint, destination: destination,
                                                              source: source, sourcePort: sourcePort, peerNode: from,
                                                              &s)
            else { return false }
            if sourceQPN != 0 {
                learn(Sender(node: from, qpNum: sourceQPN), vip: source, session: listenKey.session, &s)
            }
            var announced = self.event(for: request, id: CMIDHandle(rawValue: key.id), type: .connectRequest,
                                       vip: destination)
            announced.listenID = CMIDHandle(rawValue: listenKey.id)
            announced.remoteQPN = sourceQPN
            announced.privateData = Array(data.prefix(CMPrivateData.maxLength))
            deliver(announced, to: key, &s)
            return true
        }
        if !taken { try? device.reject() }
    }

    /// A connect request over `device` becomes an id of the session listening at `endpoint`, linked to the
    /// device's cm_id: the listener's key, the new id's key and the id; nil when nobody listens there any more or
    /// the listener has no room.
    private func takeRequest(_ device: ConnectionID, at endpoint: Endpoint, destination: IPv4Address,
                             source: IPv4Address, sourcePort: UInt16, peerNode: IPv4Address? = nil,
                             _ s: inout State) -> (listenKey: Key, key: Key, request: Identifier)? {
        guard let listenKey = s.listeners[endpoint], var listener = s.identifier(listenKey),
              hasRoom(listener, of: listenKey, s),
              let (handle, request) = makeRequest(at: listenKey, &listener, port: endpoint.port,
                                                  destination: destination, source: source, sourcePort: sourcePort,
                                                  &s, configure: { request, _ in
                                                      request.device = device
                                                      request.peerNode = peerNode
                                                  })
        else { return nil }
        let key = Key(session: listenKey.session, id: handle)
        s.byDevice[device.identifier] = key
        return (listenKey, key, request)
    }

    /// Records that `sender` is `vip`, taught by `session`'s exchange; a session keeps its newest
    /// `maxSendersPerSession`.
    private func learn(_ sender: Sender, vip: IPv4Address, session: UInt64, _ s: inout State) {
        guard var learned = s.sessions[session]?.learned else { return }
        s.senders[sender] = (vip, session)
        if learned.contains(sender) { return }
        learned.append(sender)
        if learned.count > Self.maxSendersPerSession {
            let oldest = learned.removeFirst()
            if s.senders[oldest]?.session == session { s.senders[oldest] = nil }
        }
        s.sessions[session]?.learned = learned
    }
}
