import FFProtocol
import FFSystem
import Foundation
import Logging
import Synchronization

/// A pod the router serves: its name, its vip, and the socket its containers connect to. Identity comes
/// from which socket a client connected to (the deployment mounts only a pod's own socket into it).
public struct PodDeclaration: Sendable, Equatable {
    /// Pod name; the socket is `<socket dir>/<name>.sock`.
    public var name: String
    /// The pod's virtual IP.
    public var vip: IPv4Address

    /// Parses `NAME=VIP`.
    public init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[0].contains("/"), let vip = IPv4Address(parts[1]) else { return nil }
        self.init(name: parts[0], vip: vip)
    }

    /// A pod `name` with `vip`.
    public init(name: String, vip: IPv4Address) {
        self.name = name
        self.vip = vip
    }
}

/// What the router reports about itself (`ffctl router status`).
public struct RouterStatus: Sendable, Codable, Equatable {
    /// One connected client.
    public struct Client: Sendable, Codable, Equatable {
        /// Session id.
        public var session: UInt64
        /// Who it is.
        public var identity: ClientIdentity
        /// Its objects.
        public var objects: ObjectCounts
        /// Requests answered.
        public var requests: UInt64
        /// Requests refused.
        public var errors: UInt64
    }

    /// Device name.
    public var device: String
    /// Node IP and its GID index.
    public var nodeIP: String
    /// GID index of the node IP.
    public var gidIndex: Int
    /// Declared pods.
    public var pods: [String]
    /// The vip map.
    public var map: MapSummary
    /// Connected clients.
    public var clients: [Client]
    /// Objects of all clients.
    public var objects: ObjectCounts
    /// Sessions since start.
    public var sessionsTotal: UInt64
}

/// The router: serves every declared pod's socket, one session per connection, each with its own objects
/// on the node's device, and destroys a session's objects when its client goes away.
public final class Router: Sendable {
    private let device: NodeDevice
    private let map: any VipResolver
    private let socketDirectory: String
    private let pods: [PodDeclaration]
    private let logger: Logger
    private let registry = Mutex<Registry>(Registry())
    /// The router's Prometheus metrics.
    public let metrics: RouterMetrics

    struct Registry {
        var nextSession: UInt64 = 1
        var live: [UInt64: RouterStatus.Client] = [:]
        var sessionsTotal: UInt64 = 0
        var closed = SessionStats()
    }

    /// A router for `pods` on `device`, translating through `map`.
    public init(device: NodeDevice, map: any VipResolver, socketDirectory: String, pods: [PodDeclaration], logger: Logger,
                metrics: RouterMetrics = RouterMetrics()) {
        self.metrics = metrics
        self.device = device
        self.map = map
        self.socketDirectory = socketDirectory
        self.pods = pods
        self.logger = logger
    }

    /// The socket path of `pod`.
    public func socketPath(of pod: PodDeclaration) -> String { "\(socketDirectory)/\(pod.name).sock" }

    /// Binds every pod socket, then serves until cancelled; on cancellation every session is closed (its
    /// objects destroyed) and the socket files are removed.
    public func run() async throws {
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        let listeners = try pods.map { pod in (pod, try SeqPacketSocket.listen(path: socketPath(of: pod))) }
        defer { for (pod, listener) in listeners { listener.close(); unlink(socketPath(of: pod)) } }
        logger.info("serving", metadata: ["pods": "\(pods.map { "\($0.name)=\($0.vip)" }.joined(separator: ","))",
                                          "device": "\(device.context.name)", "node_ip": "\(device.nodeIP)", "gid_index": "\(device.gidIndex)"])
        await withDiscardingTaskGroup { group in
            for (pod, listener) in listeners {
                group.addTask { await self.accept(on: listener, for: pod) }
            }
        }
    }

    private func accept(on listener: SeqPacketSocket, for pod: PodDeclaration) async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                do {
                    let connection = try await listener.nextConnection()
                    group.addTask { await self.serve(connection, for: pod) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("accept failed", metadata: ["pod": "\(pod.name)", "error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// Serves one connection until the client closes it, dies, or the router stops.
    func serve(_ connection: SeqPacketSocket, for pod: PodDeclaration) async {
        let credentials = (try? connection.peerCredentials()) ?? PeerCredentials(pid: 0, uid: 0, gid: 0)
        let identity = ClientIdentity(pod: pod.name, vip: pod.vip.description, pid: credentials.pid, uid: credentials.uid)
        let id = registry.withLock { r -> UInt64 in
            defer { r.nextSession += 1; r.sessionsTotal += 1 }
            r.live[r.nextSession] = RouterStatus.Client(session: r.nextSession, identity: identity, objects: ObjectCounts(), requests: 0, errors: 0)
            return r.nextSession
        }
        metrics.sessions.increment()
        let session = Session(id: id, identity: identity, vip: pod.vip, backend: device, map: map, metrics: metrics, logger: logger)
        logger.info("client connected", metadata: ["session": "\(id)", "pod": "\(pod.name)", "pid": "\(credentials.pid)"])
        defer {
            session.close()
            connection.close()
            registry.withLock { r in
                r.live[id] = nil
                r.closed.requests += session.stats.requests
                r.closed.errors += session.stats.errors
            }
        }
        while true {
            let datagram: Datagram?
            do {
                datagram = try await connection.nextDatagram(maxBytes: WireLimits.maxMessageSize + 1)
            } catch is CancellationError {
                return
            } catch {
                logger.warning("client connection failed", metadata: ["session": "\(id)", "error": "\(error)"])
                return
            }
            guard let datagram else { return }
            let reply = session.handle(datagram)
            registry.withLock { r in
                r.live[id]?.objects = session.objects.counts
                r.live[id]?.requests = session.stats.requests
                r.live[id]?.errors = session.stats.errors
            }
            defer { reply.afterSend?() }
            do {
                try connection.send(try reply.encode(), descriptors: reply.descriptors)
            } catch {
                logger.warning("reply not delivered; closing the session", metadata: ["session": "\(id)", "error": "\(error)"])
                return
            }
        }
    }

    /// Healthy while the device port is active: clients can then be served.
    public func health() -> (healthy: Bool, detail: String) {
        let state = try? device.context.queryPort(device.port).state
        let status = self.status
        return (state == .active, "device \(device.context.name) port \(device.port) \(state.map { "\($0)" } ?? "unreadable"), "
                + "clients \(status.clients.count), map \(status.map.entries) entries at revision \(status.map.revision)")
    }

    /// The router's state now.
    public var status: RouterStatus {
        registry.withLock { r in
            let clients = r.live.values.sorted { $0.session < $1.session }
            return RouterStatus(device: device.context.name, nodeIP: device.nodeIP.description, gidIndex: device.gidIndex,
                                pods: pods.map { "\($0.name)=\($0.vip)" }, map: map.summary, clients: clients,
                                objects: clients.reduce(ObjectCounts()) { $0 + $1.objects }, sessionsTotal: r.sessionsTotal)
        }
    }
}
