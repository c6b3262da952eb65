import Dispatch
import FFProtocol
import FFSystem
import Logging
import Synchronization
import Verbs

/// The router's rdma_cm (docs/rdma-cm.md): every session's event channels and cm ids, the listeners by vip and
/// port, and the connections between ids. One per router, shared by its sessions; each call comes from the
/// calling session's own thread, device events from the `ffr-cm` thread, the end of a listener grace from a
/// dispatch queue.
///
/// The one router-wide lock (`state`) covers the bookkeeping and the sending of events to the sessions' channels,
/// and nothing else. An event send is one sendmsg(2) of at most one encoded `CMEvent` on the router's end of a
/// socket pair, which is O_NONBLOCK and a file description of its own (the client's end is another one): it never
/// waits, a full channel loses the event (`deliver`). Sending under the lock keeps each channel's events in the
/// order the state changed. Every other system call is made with the lock released: the device's rdma_cm
/// (through `NodeConnectionManager` and its `ConnectionID`s, including the rdma_destroy_id of the last reference),
/// closing channels and starting timers. A locked section takes what the call needs, or queues fire-and-forget
/// work in `State.afterwards` (`locked` runs it after the unlock); a call whose answer matters re-takes the lock
/// to record it and handles the state having moved on meanwhile (the id destroyed, its session closed).
///
/// A connect to a pod of this router is paired in process (the pod whose vip the connect was addressed to, so pods
/// share ports); the QP parameters travel in the events for the client libraries to apply. With a
/// `NodeConnectionManager` (the real device), a connect to a vip of another node goes over the device's rdma_cm on
/// the node IPs, with the router's header in the private data; without one (the fake device) it is UNREACHABLE.
///
/// The work is split by concern: state (ConnectionManagerState.swift), listeners and the passive side
/// (ConnectionManagerListeners.swift), connects (ConnectionManagerConnects.swift), events
/// (ConnectionManagerEvents.swift), routing between routers (ConnectionManagerRouting.swift).
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
    /// The wildcard address of bind and resolve.
    static let any = IPv4Address(0, 0, 0, 0)

    let nodeIP: IPv4Address
    let map: any VipResolver
    let logger: Logger
    let node: NodeConnectionManager?
    let listenerGraceMilliseconds: Int
    /// The router-wide lock; see the type's comment for what it covers. Use `locked`.
    let state = Mutex(State())

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
                logger.error("rdma_cm between nodes is off: its event thread did not start",
                             metadata: ["error": "\(error)"])
            }
        }
    }

    deinit { node?.stop() }

    /// Runs `body` under the router-wide lock, then, with the lock released, the work it left in
    /// `State.afterwards` (device calls, releases of device cm_ids, closes, timers), in order.
    func locked<R, E: Error>(_ body: (inout State) throws(E) -> sending R) throws(E) -> sending R {
        var work: [Afterwards] = []
        defer { perform(work) }
        return try state.withLock { s throws(E) -> sending R in
            defer {
                work = s.afterwards
                s.afterwards = []
            }
            return try body(&s)
        }
    }

    /// Does what locked sections left for after the lock; failures of these calls change nothing the router
    /// tracks (the id they were for is already gone or disconnected).
    private func perform(_ work: [Afterwards]) {
        for item in work {
            switch item {
            case .reject(let device, let data): try? device.reject(privateData: data)
            case .disconnect(let device): try? device.disconnect()
            case .release: break
            case .releaseListener(let listener): node?.releaseListener(listener)
            case .close(let channel): channel.close()
            case .graceTimer(let key, let endpoint):
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(listenerGraceMilliseconds)) {
                    [weak self] in self?.listenerGraceEnded(key, at: endpoint)
                }
            }
        }
    }

    // MARK: - Channels

    /// A new event channel of `session`: its handle and the client's end of the socket pair.
    func createChannel(session: UInt64, vip: IPv4Address) throws -> (CMChannelHandle, SeqPacketSocket) {
        let (routerEnd, clientEnd) = try SeqPacketSocket.pair()
        let handle: UInt32? = locked { s in
            if s.sessions[session] == nil { s.sessions[session] = SessionState(vip: vip) }
            guard let count = s.sessions[session]?.channels.count, count < Self.maxChannelsPerSession,
                  let handle = s.nextHandle(of: session) else { return nil }
            s.sessions[session]?.channels[handle] = routerEnd
            return handle
        }
        guard let handle else {
            routerEnd.close()
            clientEnd.close()
            throw ErrorReply(errno: Errno.tooManyDescriptors,
                             reason: "a session holds at most \(Self.maxChannelsPerSession) rdma_cm event channels")
        }
        return (CMChannelHandle(rawValue: handle), clientEnd)
    }

    // MARK: - Calls

    /// The calling session and its pod's vip.
    struct Context {
        var session: UInt64
        var vip: IPv4Address
    }

    /// Runs one cm call of `session` (whose pod has `vip`); `ownsQP` answers whether a QP number is one of the
    /// session's QPs.
    func call(_ request: CMRequest, session: UInt64, vip: IPv4Address, ownsQP: (UInt32) -> Bool) throws -> CMReply {
        let c = Context(session: session, vip: vip)
        locked { s in if s.sessions[session] == nil { s.sessions[session] = SessionState(vip: vip) } }
        switch request {
        case .createID(let channel, let space):
            return try locked { s throws(ErrorReply) in try createID(channel, space, c, &s) }
        case .destroyID(let id):
            try locked { s throws(ErrorReply) in
                let key = Key(session: c.session, id: id.rawValue)
                _ = try s.lookup(key)
                drop(key, &s)
            }
            return CMReply()
        case .bind(let id, let address, let port):
            return try locked { s throws(ErrorReply) in try bind(id, address, port, c, &s) }
        case .resolveAddress(let id, let source, let destination, let port, _):
            return try locked { s throws(ErrorReply) in try resolveAddress(id, source, destination, port, c, &s) }
        case .resolveRoute(let id, _): return try locked { s throws(ErrorReply) in try resolveRoute(id, c, &s) }
        case .listen(let id, let backlog): return try listen(id, backlog: backlog, c)
        case .connect(let p):
            try connect(p, c, ownsQP: ownsQP)
            return CMReply()
        case .accept(let p): return try accept(p, c, ownsQP: ownsQP)
        case .reject(let p): return try reject(p, c)
        case .disconnect(let id): return try locked { s throws(ErrorReply) in try disconnectCall(id, c, &s) }
        case .attachQP, .resolveSender: throw Self.invalid("attach_qp and resolve_sender are the session's to handle")
        case .establish(let id): return try establish(id, c)
        case .migrate(let id, let channel):
            return try locked { s throws(ErrorReply) in
                let key = Key(session: c.session, id: id.rawValue)
                var identifier = try s.lookup(key)
                guard s.sessions[c.session]?.channels[channel.rawValue] != nil else {
                    throw Self.noSuch("event channel", channel.rawValue)
                }
                identifier.channel = channel.rawValue
                s.store(identifier, at: key)
                return CMReply()
            }
        case .destroyChannel(let channel):
            return try locked { s throws(ErrorReply) in
                guard let end = s.sessions[c.session]?.channels.removeValue(forKey: channel.rawValue) else {
                    throw Self.noSuch("event channel", channel.rawValue)
                }
                s.afterwards.append(.close(end))
                return CMReply()
            }
        }
    }

    /// rdma_create_id on `channel` of the calling session.
    private func createID(_ channel: CMChannelHandle, _ space: CMPortSpace, _ c: Context,
                          _ s: inout State) throws(ErrorReply) -> CMReply {
        guard s.sessions[c.session]?.channels[channel.rawValue] != nil else {
            throw Self.noSuch("event channel", channel.rawValue)
        }
        guard let count = s.sessions[c.session]?.ids.count, count < Self.maxIDsPerSession,
              let handle = s.nextHandle(of: c.session) else {
            throw ErrorReply(errno: Errno.outOfMemory,
                             reason: "a session holds at most \(Self.maxIDsPerSession) rdma_cm ids")
        }
        s.store(Identifier(channel: channel.rawValue, portSpace: space), at: Key(session: c.session, id: handle))
        return CMReply(id: CMIDHandle(rawValue: handle))
    }

    /// Records that `qpNum` now belongs to `id` (rdma_create_qp on an id).
    func attach(qpNum: UInt32, to id: CMIDHandle, session: UInt64) throws {
        try locked { s throws(ErrorReply) in
            let key = Key(session: session, id: id.rawValue)
            var identifier = try s.lookup(key)
            identifier.qpNum = qpNum
            s.store(identifier, at: key)
        }
    }

    /// Whether `id` serves datagrams (a UD QP), or nil when the session has no such id.
    func isDatagram(_ id: CMIDHandle, session: UInt64) -> Bool? {
        locked { $0.sessions[session]?.ids[id.rawValue]?.datagram }
    }

    /// Everything of `session` goes: its listeners and ports are freed, the peers of its connections see
    /// DISCONNECTED (or REJECTED for a connect still pending), its channels are closed.
    func close(session: UInt64) {
        let closed: Int = locked { s in
            guard let entry = s.sessions[session] else { return 0 }
            for handle in entry.ids.keys.sorted() { drop(Key(session: session, id: handle), &s) }
            for sender in entry.learned where s.senders[sender]?.session == session { s.senders[sender] = nil }
            for channel in entry.channels.values { s.afterwards.append(.close(channel)) }
            s.sessions[session] = nil
            return entry.ids.count
        }
        if closed > 0 {
            logger.info("rdma_cm ids of the session released", metadata: ["session": "\(session)", "ids": "\(closed)"])
        }
    }

    /// How many cm ids `session` holds and how many of them listen, for status.
    func counts(session: UInt64) -> (ids: Int, listeners: Int) {
        locked { s in
            let ids = s.sessions[session]?.ids.values
            return (ids?.count ?? 0, ids?.filter { $0.phase == .listening }.count ?? 0)
        }
    }

    /// How many cm ids and listeners exist, for tests and status.
    var counts: (ids: Int, listeners: Int, channels: Int) {
        locked { s in
            (s.sessions.values.reduce(0) { $0 + $1.ids.count }, s.listeners.count,
             s.sessions.values.reduce(0) { $0 + $1.channels.count })
        }
    }

    /// The vip of the pod whose UD QP `qpNum` sent a message whose GRH holds `gid` (`ibv_init_ah_from_wc`): a pod of
    /// this node (the fake device's GRH is zeros; the real device's holds this node's GID) with a cm id on that QP,
    /// or a sender of another node that a UD connect of this router taught it (and that the vip map still places
    /// on that node).
    func sender(gid: FFProtocol.GID, qpNum: UInt32) throws(ErrorReply) -> IPv4Address {
        try locked { s throws(ErrorReply) in
            if gid == .zero || gid == FFProtocol.GID(ipv4Mapped: nodeIP) {
                for session in s.sessions.values
                where session.ids.values.contains(where: { $0.datagram && $0.qpNum == qpNum }) {
                    return session.vip
                }
                throw ErrorReply(errno: Errno.noEntry,
                                 reason: "no UD QP \(qpNum) of a pod of this node is on an rdma_cm id")
            }
            guard let node = gid.ipv4Mapped else {
                throw Self.invalid("sender GID \(gid) is not an IPv4-mapped (RoCE v2) node GID")
            }
            guard let learned = s.senders[Sender(node: node, qpNum: qpNum)] else {
                throw ErrorReply(errno: Errno.noEntry,
                                 reason: "no UD connect with QP \(qpNum) of node \(node) is known to this router")
            }
            guard map.physicalIP(for: learned.vip) == node else {
                throw ErrorReply(errno: Errno.noEntry,
                                 reason: "vip \(learned.vip) of QP \(qpNum) is no longer on node \(node)")
            }
            return learned.vip
        }
    }
}
