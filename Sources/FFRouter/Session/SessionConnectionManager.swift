import FFProtocol
import Verbs

/// A session's rdma_cm calls: event channels and cm ids live in the router's `ConnectionManagerService`; QPs stay
/// in the session's own object table, and only this thread modifies them.
extension Session {
    func createCMChannel() throws -> Answer<CMChannelHandle> {
        let cm = try connectionManager()
        let (handle, clientEnd) = try cm.createChannel(session: id, vip: vip)
        // The client's end goes to the client; once sent, the router keeps only its own end.
        return Answer(body: handle, descriptors: [clientEnd.descriptor], afterSend: { clientEnd.close() })
    }

    func callCM(_ request: CMRequest) throws -> CMReply {
        let cm = try connectionManager()
        if case .attachQP(let cmID, let handle) = request {
            try attachQP(handle, to: cmID, cm)
            return CMReply()
        }
        if case .resolveSender(let gid, let source, let receiver) = request {
            // Only a QP of this session can have received the message it asks about.
            guard objects.qps.values.contains(where: { $0.qp.number == receiver }) else {
                throw ErrorReply(errno: Errno.invalidArgument, reason: "ibv_init_ah_from_wc: QP \(receiver) is not one of this session's QPs")
            }
            return CMReply(address: try cm.sender(gid: gid, qpNum: source))
        }
        let numbers = Set(objects.qps.values.map(\.qp.number))
        return try cm.call(request, session: id, vip: vip, ownsQP: { numbers.contains($0) })
    }

    private func connectionManager() throws -> ConnectionManagerService {
        guard let cm = connectionManagerService else {
            throw ErrorReply(errno: Errno.notSupported, reason: "this router serves no rdma_cm")
        }
        return cm
    }

    /// rdma_create_qp on an id: as librdmacm does, an RC QP goes to INIT (port, P_Key index 0, remote access the
    /// connection's peer may use) and a UD QP on to RTS with the port space's Q_Key.
    private func attachQP(_ handle: QPHandle, to cmID: CMIDHandle, _ cm: ConnectionManagerService) throws {
        guard let entry = objects.qps[handle.rawValue] else {
            throw ErrorReply(errno: Errno.badHandle, reason: "no QP \(handle.rawValue) in this session")
        }
        guard let datagram = cm.isDatagram(cmID, session: id) else {
            throw ErrorReply(errno: Errno.badHandle, reason: "no cm id \(cmID.rawValue) in this session")
        }
        guard (entry.qp.type == .ud) == datagram else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "a \(entry.qp.type) QP does not fit the id's port space")
        }
        var initial = Verbs.QPAttributes()
        initial.state = .initialized
        initial.pkeyIndex = 0
        initial.port = backend.port
        if datagram {
            initial.qkey = ConnectionManagerService.datagramQKey
        } else {
            initial.access = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
        }
        try entry.qp.modify(initial)
        if datagram {
            var ready = Verbs.QPAttributes()
            ready.state = .readyToReceive
            try entry.qp.modify(ready)
            ready.state = .readyToSend
            ready.sendPSN = 0
            try entry.qp.modify(ready)
        }
        if datagram { recordQKey(ConnectionManagerService.datagramQKey, of: handle.rawValue) }
        try cm.attach(qpNum: entry.qp.number, to: cmID, session: id)
    }
}
