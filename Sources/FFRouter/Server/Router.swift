import FFProtocol
import FFRouterAPI
import FFSystem
import Foundation
import Logging
import Synchronization

/// How the router's I/O layer behaves; every field is an `ffrouter` flag.
public struct RouterOptions: Sendable {
    /// A client with replies queued that reads none of them for this long is disconnected and its session
    /// closed (`--reply-timeout`).
    public var replyTimeoutMilliseconds: Int
    /// Replies a session queues beyond what its socket buffer holds before it stops reading requests
    /// (`--reply-queue`).
    public var replyQueueDepth: Int
    /// Connections one pod may hold at once; 0: no limit but descriptors (`--max-connections-per-pod`).
    public var maxConnectionsPerPod: Int
    /// Stack of each session thread, in bytes.
    public var sessionStackBytes: Int
    /// The process limits, for status (`RouterStatus.Limits.raiseForRouter()` at start).
    public var limits: RouterStatus.Limits
    /// The shared client socket whose connections are identified by their process's pod (`--client-socket`); nil: none.
    public var clientSocket: ClientSocketOptions?

    /// Options with the documented defaults unless given.
    public init(replyTimeoutMilliseconds: Int = 5000, replyQueueDepth: Int = 64, maxConnectionsPerPod: Int = 1024,
                sessionStackBytes: Int = 512 * 1024, limits: RouterStatus.Limits = .current(), clientSocket: ClientSocketOptions? = nil) {
        self.replyTimeoutMilliseconds = replyTimeoutMilliseconds
        self.replyQueueDepth = replyQueueDepth
        self.maxConnectionsPerPod = maxConnectionsPerPod
        self.sessionStackBytes = sessionStackBytes
        self.limits = limits
        self.clientSocket = clientSocket
    }
}

/// The router: serves every pod's socket, one session per connection, each with its own objects on the
/// node's device, and destroys a session's objects when its client goes away. Pods come from `--pod` flags
/// and from the admin API at runtime. Threads, not tasks, do the work (docs/router.md, "Execution model"):
/// one acceptor thread for every pod listener, one thread per session.
public final class Router: Sendable {
    let device: DeviceDescription
    let map: any VipResolver
    let socketDirectory: String
    let options: RouterOptions
    let logger: Logger
    let makeSession: @Sendable (SessionContext) -> any SessionHandler
    let initialPods: [PodDeclaration]
    let state = Mutex<State>(State())
    /// The router's Prometheus metrics.
    public let metrics: RouterMetrics

    enum Phase { case idle, running, stopping }

    /// Pending connections a pod socket holds: a burst of clients starting at once finds room (a connect to a
    /// full backlog fails with EAGAIN) while the acceptor thread catches up.
    static let listenBacklog: Int32 = 1024

    /// A pod being served and its listening socket.
    struct PodEntry {
        var pod: PodDeclaration
        var listener: SeqPacketSocket
        var origin: String
    }

    /// Everything threads share, under `state`'s lock (held only for bookkeeping, never across a syscall
    /// that can block).
    struct State {
        var phase = Phase.idle
        var pods: [String: PodEntry] = [:]
        /// Listeners of removed pods, closed by the acceptor thread when it is not polling them.
        var retired: [SeqPacketSocket] = []
        var connections: [UInt64: SessionConnection] = [:]
        var connectionsPerPod: [String: Int] = [:]
        var acceptor: Acceptor?
        var nextSession: UInt64 = 1
        var sessionsTotal: UInt64 = 0
        var refusedConnections: UInt64 = 0
        var slowClientsDisconnected: UInt64 = 0
        /// The shared client socket's listener (`--client-socket`).
        var clientListener: SeqPacketSocket?
        /// Sessions on the client socket and the pod each was identified as; entries of ended sessions are dropped
        /// at the next check.
        var identified: [UInt64: PodDeclaration] = [:]
        /// The map revision the identified pods were last checked at.
        var identifiedCheckedRevision: Int64 = -1
        /// Refused client-socket connections whose hello is being answered.
        var refusalsInProgress = 0
    }

    /// A router for `pods` on `backend` (the real device, or the fake in tests), translating through `map`; each session
    /// may hold what `limits` allows; with `dataPath`, sessions that ask get the shared-memory fast path.
    public convenience init(backend: any VerbsBackend, map: any VipResolver, socketDirectory: String, pods: [PodDeclaration], logger: Logger,
                            metrics: RouterMetrics = RouterMetrics(), options: RouterOptions = RouterOptions(),
                            limits: SessionLimits = SessionLimits(), dataPath: DataPath? = nil) {
        let description = DeviceDescription(name: backend.deviceName, nodeIP: backend.nodeIP, gidIndex: backend.gidIndex) {
            let (active, detail) = backend.portHealth()
            return (active, detail)
        }
        self.init(device: description, map: map, socketDirectory: socketDirectory, pods: pods, options: options, logger: logger,
                  metrics: metrics) { [connectionManager = Self.connectionManager(backend: backend, map: map, logger: logger)] context in
            Session(id: context.id, identity: context.identity, vip: context.vip, backend: backend, map: map, limits: limits,
                    metrics: metrics, logger: logger, dataPath: dataPath, connectionManager: connectionManager)
        }
    }

    /// The pods' rdma_cm: in process for the fake device; on the real device also between nodes, over its rdma_cm.
    private static func connectionManager(backend: any VerbsBackend, map: any VipResolver, logger: Logger) -> ConnectionManagerService {
        var node: NodeConnectionManager?
        if backend is NodeDevice {
            do {
                node = try NodeConnectionManager(nodeIP: backend.nodeIP, logger: logger)
            } catch {
                logger.error("rdma_cm between nodes is off: the device's rdma_cm did not open", metadata: ["error": "\(error)"])
            }
        }
        return ConnectionManagerService(nodeIP: backend.nodeIP, map: map, logger: logger, node: node)
    }

    /// A router whose sessions `makeSession` makes: the real `Session` in production, a stub in host tests.
    init(device: DeviceDescription, map: any VipResolver, socketDirectory: String, pods: [PodDeclaration], options: RouterOptions,
         logger: Logger, metrics: RouterMetrics = RouterMetrics(), makeSession: @escaping @Sendable (SessionContext) -> any SessionHandler) {
        self.device = device
        self.map = map
        self.socketDirectory = socketDirectory
        self.initialPods = pods
        self.options = options
        self.logger = logger
        self.metrics = metrics
        self.makeSession = makeSession
    }

    /// The socket path of `pod`.
    public func socketPath(of pod: PodDeclaration) -> String { "\(socketDirectory)/\(pod.socketName)" }

    /// Binds every `--pod` socket and serves until the task is cancelled; then every session is closed (its
    /// objects destroyed), every session thread has ended and the socket files are removed. The task only
    /// waits: the work runs on the router's own threads.
    public func run() async throws {
        try start()
        let cancelled = Latch()
        await withTaskCancellationHandler { await cancelled.wait() } onCancel: { cancelled.open() }
        await shutdown()
    }

    /// Binds the `--pod` sockets and starts the acceptor thread.
    func start() throws {
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        let acceptor = try Acceptor()
        try state.withLock { s throws in
            guard s.phase == .idle else { throw RouterSetupError("the router was already started") }
            for pod in initialPods {
                guard s.pods[pod.key] == nil else { throw RouterSetupError("pod \(pod.name) is declared twice") }
                let listener: SeqPacketSocket
                do {
                    listener = try SeqPacketSocket.listen(path: socketPath(of: pod), backlog: Self.listenBacklog)
                } catch {
                    for entry in s.pods.values { entry.listener.close(); unlink(socketPath(of: entry.pod)) }
                    s.pods = [:]
                    throw error
                }
                s.pods[pod.key] = PodEntry(pod: pod, listener: listener, origin: "flag")
            }
            if let client = options.clientSocket {
                do {
                    // Any uid may connect: who a client is comes from its cgroup, not from the file's permissions.
                    s.clientListener = try SeqPacketSocket.listen(path: client.path, backlog: Self.listenBacklog, mode: 0o666)
                } catch {
                    for entry in s.pods.values { entry.listener.close(); unlink(socketPath(of: entry.pod)) }
                    s.pods = [:]
                    throw error
                }
            }
            s.acceptor = acceptor
            s.phase = .running
        }
        do {
            try NamedThread.start(name: "ffr-accept", stackBytes: options.sessionStackBytes) { self.acceptLoop(acceptor) }
        } catch {
            let entries = state.withLock { s in defer { s.pods = [:]; s.phase = .stopping }; return Array(s.pods.values) }
            for entry in entries { entry.listener.close(); unlink(socketPath(of: entry.pod)) }
            closeClientSocket()
            throw error
        }
        logger.info("serving", metadata: ["pods": "\(initialPods.map { "\($0.name)=\($0.vip)" }.joined(separator: ","))",
                                          "client_socket": "\(options.clientSocket.map { "\($0.path) (pods identified through \($0.procRoot))" } ?? "none")",
                                          "device": "\(device.name)", "node_ip": "\(device.nodeIP)", "gid_index": "\(device.gidIndex)",
                                          "reply_timeout_ms": "\(options.replyTimeoutMilliseconds)"])
    }

    /// Stops accepting, closes every session and waits until each session thread has destroyed its objects;
    /// then closes the listeners and removes their socket files.
    func shutdown() async {
        let (acceptor, connections) = state.withLock { s -> (Acceptor?, [SessionConnection]) in
            guard s.phase == .running else { return (nil, []) }
            s.phase = .stopping
            let connections = Array(s.connections.values)
            for connection in connections { connection.requestStop(.routerStopping) }
            s.acceptor?.wake.signal()
            return (s.acceptor, connections)
        }
        guard let acceptor else { return }
        await acceptor.finished.wait()
        for connection in connections { await connection.finished.wait() }
        let entries = state.withLock { s in defer { s.pods = [:] }; return Array(s.pods.values) }
        for entry in entries { entry.listener.close(); unlink(socketPath(of: entry.pod)) }
        closeClientSocket()
        acceptor.close()
        logger.info("router stopped", metadata: ["sessions_closed": "\(connections.count)"])
    }

    /// Closes the client socket's listener and removes its file (once the acceptor no longer polls it).
    private func closeClientSocket() {
        guard let listener = state.withLock({ s in defer { s.clientListener = nil }; return s.clientListener }) else { return }
        listener.close()
        unlink(listener.path)
    }

    /// Healthy while the device port is active: clients can then be served.
    public func health() -> (healthy: Bool, detail: String) {
        // The status already asked the port; asking again would be a second ibv_query_port per probe.
        let status = self.status
        return (status.portActive, "\(status.portState), clients \(status.clients.count), pods \(status.pods.count), "
                + "map \(status.map.entries) entries at revision \(status.map.revision)")
    }

    /// The router's state now.
    public var status: RouterStatus {
        let map = map.summary
        let port = device.portHealth()
        return state.withLock { s in
            let clients = s.connections.values.sorted { $0.context.id < $1.context.id }.map { connection in
                let counters = connection.counters
                return RouterStatus.Client(session: connection.context.id, identity: connection.context.identity, objects: counters.objects,
                                           requests: counters.requests, errors: counters.errors)
            }
            return RouterStatus(device: device.name, nodeIP: device.nodeIP.description, gidIndex: device.gidIndex,
                                pods: podStatuses(s), map: map, clients: clients,
                                objects: clients.reduce(ObjectCounts()) { $0 + $1.objects }, sessionsTotal: s.sessionsTotal,
                                refusedConnections: s.refusedConnections, slowClientsDisconnected: s.slowClientsDisconnected,
                                limits: options.limits, portActive: port.healthy, portState: port.detail,
                                clientSocket: options.clientSocket?.path)
        }
    }

    /// Served pods, sorted by name.
    public var pods: [PodStatus] { state.withLock { podStatuses($0) } }

    private func podStatuses(_ s: State) -> [PodStatus] {
        s.pods.values.map { podStatus($0, clients: s.connectionsPerPod[$0.pod.key] ?? 0) }
            .sorted { ($0.namespace, $0.name, $0.uid) < ($1.namespace, $1.name, $1.uid) }
    }

    private func podStatus(_ entry: PodEntry, clients: Int) -> PodStatus {
        PodStatus(name: entry.pod.name, namespace: entry.pod.namespace, uid: entry.pod.uid, vip: entry.pod.vip.description,
                  socket: socketPath(of: entry.pod), origin: entry.origin, clients: clients)
    }

    /// Adds a pod at runtime and creates its socket. Adding a pod that is already served with the same
    /// declaration succeeds without change (`created` false), so a device plugin may retry; a different pod
    /// with the same uid, vip or socket is EEXIST.
    func addPod(_ spec: PodSpec) throws(AdminFailure) -> (pod: PodStatus, created: Bool) {
        let pod = try PodDeclaration.validated(spec)
        let result = try state.withLock { s throws(AdminFailure) -> (PodStatus, Bool) in
            guard s.phase == .running else { throw AdminFailure(errno: ESHUTDOWN, "the router is not serving (starting or stopping)") }
            if let existing = s.pods[pod.key] {
                guard existing.pod == pod else {
                    throw AdminFailure(errno: EEXIST, "pod uid \(pod.uid) is already served as \(existing.pod.displayName) with vip \(existing.pod.vip)")
                }
                return (podStatus(existing, clients: s.connectionsPerPod[pod.key] ?? 0), false)
            }
            if let other = s.pods.values.first(where: { $0.pod.vip == pod.vip || $0.pod.socketName == pod.socketName }) {
                throw AdminFailure(errno: EEXIST, "pod \(other.pod.displayName) already has vip \(other.pod.vip) / socket \(socketPath(of: other.pod))")
            }
            let listener: SeqPacketSocket
            do throws(SystemError) {
                listener = try SeqPacketSocket.listen(path: socketPath(of: pod), backlog: Self.listenBacklog)
            } catch {
                throw AdminFailure(errno: error.errno, "cannot create the pod socket: \(error)")
            }
            let entry = PodEntry(pod: pod, listener: listener, origin: "admin")
            s.pods[pod.key] = entry
            s.acceptor?.wake.signal()
            return (podStatus(entry, clients: 0), true)
        }
        if result.1 {
            logger.info("pod added", metadata: ["pod": "\(pod.displayName)", "uid": "\(pod.uid)", "vip": "\(pod.vip)", "socket": "\(result.0.socket)"])
        }
        return result
    }

    /// Removes a pod (by uid, by `namespace/name`, or by the name of a `--pod` pod): its socket file goes at
    /// once, its sessions are closed and their objects destroyed; waits up to `waitMilliseconds` for them.
    /// Other pods' sessions are untouched.
    func removePod(_ id: String, waitMilliseconds: Int = 10_000) throws(AdminFailure) -> (pod: PodStatus, closed: Int, stillClosing: Int) {
        let (entry, victims) = try state.withLock { s throws(AdminFailure) -> (PodEntry, [SessionConnection]) in
            guard s.phase == .running else { throw AdminFailure(errno: ESHUTDOWN, "the router is not serving (starting or stopping)") }
            guard let key = s.pods[id] != nil ? id : s.pods.first(where: { $0.value.pod.displayName == id })?.key,
                  let entry = s.pods.removeValue(forKey: key) else {
                let known = s.pods.values.map { $0.pod.uid.isEmpty ? $0.pod.name : "\($0.pod.displayName) (uid \($0.pod.uid))" }.sorted()
                throw AdminFailure(errno: ENOENT, "no pod \(id) (give a uid, namespace/name, or a --pod name); served: \(known.joined(separator: ", "))")
            }
            s.retired.append(entry.listener)
            let victims = s.connections.values.filter { $0.context.pod.key == key }
            for victim in victims { victim.requestStop(.podRemoved) }
            s.acceptor?.wake.signal()
            return (entry, victims)
        }
        unlink(socketPath(of: entry.pod))
        let deadline = Poll.nowMilliseconds() + Int64(waitMilliseconds)
        let closed = victims.filter { $0.finished.wait(until: deadline) }.count
        logger.info("pod removed", metadata: ["pod": "\(entry.pod.displayName)", "uid": "\(entry.pod.uid)", "sessions_closed": "\(closed)",
                                              "sessions_still_closing": "\(victims.count - closed)"])
        return (podStatus(entry, clients: victims.count - closed), closed, victims.count - closed)
    }
}
