import FFProtocol
import FFSystem

/// Events to the sessions' channels. These run under the router-wide lock: a send is non-blocking and bounded (see
/// `ConnectionManagerService`), and sending there keeps each channel's events in the order the state changed.
extension ConnectionManagerService {
    /// An event about `identifier` (handle `id`) of the pod with `vip`, its addresses filled in.
    func event(for identifier: Identifier, id: CMIDHandle, type: CMEventType, vip: IPv4Address) -> CMEvent {
        CMEvent(id: id, type: type, localAddress: vip, localPort: identifier.localPort,
                remoteAddress: identifier.remote, remotePort: identifier.remotePort)
    }

    /// Writes `event` to the channel of `key`'s id, if the id and its channel still exist; a client that stopped
    /// reading loses events rather than stalling the router (the router's end never blocks).
    func deliver(_ event: CMEvent, to key: Key, _ s: inout State) {
        guard let session = s.sessions[key.session], let identifier = session.ids[key.id],
              let channel = session.channels[identifier.channel], let bytes = try? event.encode() else { return }
        if (try? channel.trySend(bytes)) != true {
            logger.warning("rdma_cm event lost: the client does not read its event channel",
                           metadata: ["session": "\(key.session)", "event": "\(event.type)"])
        }
    }

    /// `key`'s connect is rejected: the id goes back to route resolved and hears REJECTED with `status`.
    func reject(_ key: Key, status: Int32, privateData: [UInt8], reason: String, _ s: inout State) {
        guard var identifier = s.identifier(key), let vip = s.vip(of: key.session) else { return }
        identifier.phase = .routeResolved
        identifier.peer = nil
        s.store(identifier, at: key)
        var event = self.event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .rejected, vip: vip)
        event.status = status
        event.privateData = privateData
        event.reason = reason
        deliver(event, to: key, &s)
    }

    /// Refuses `key`'s connect to `endpoint`, where nobody listens: REJECTED (invalid service) for RC, UNREACHABLE
    /// (connection refused) for UD, as rdma_cm reports them.
    func refuseForNoListener(_ key: Key, at endpoint: Endpoint, _ s: inout State) {
        guard var identifier = s.identifier(key), let vip = s.vip(of: key.session) else { return }
        identifier.phase = .routeResolved
        s.store(identifier, at: key)
        let reason = "nothing listens on \(endpoint.vip) port \(endpoint.port)"
        if endpoint.datagram {
            var event = self.event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .unreachable, vip: vip)
            event.status = -Errno.connectionRefused
            event.reason = reason
            deliver(event, to: key, &s)
        } else {
            reject(key, status: Self.rejectInvalidService, privateData: [], reason: reason, &s)
        }
    }

    /// `key` (of the pod with `vip`) hears DISCONNECTED.
    func deliverDisconnected(_ identifier: Identifier, _ key: Key, _ s: inout State) {
        guard let vip = s.vip(of: key.session) else { return }
        deliver(event(for: identifier, id: CMIDHandle(rawValue: key.id), type: .disconnected, vip: vip), to: key, &s)
    }
}
