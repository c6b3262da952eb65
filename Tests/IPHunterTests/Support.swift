import Etcd
import FreeFlowTestSupport
import Foundation
import IPHunter
import Logging
import Synchronization

func podJSON(_ name: String, ip: String?, node: String?, namespace: String = "default", phase: String = "Running",
             hostNetwork: Bool = false, uid: String? = nil, labels: [String: String]? = nil) -> Data {
    let pod = Pod(
        metadata: ObjectMeta(name: name, namespace: namespace, uid: uid ?? "uid-\(namespace)-\(name)", creationTimestamp: "2026-01-01T00:00:00Z", labels: labels),
        spec: Pod.Spec(nodeName: node, hostNetwork: hostNetwork ? true : nil),
        status: Pod.Status(phase: phase, podIP: ip, podIPs: ip.map { [Pod.PodIP(ip: $0)] }, hostIP: nil)
    )
    return try! JSONEncoder().encode(pod)
}

func nodeJSON(_ name: String, ip: String) -> Data {
    let node = Node(metadata: ObjectMeta(name: name, uid: "node-uid-\(name)"),
                    status: Node.Status(addresses: [.init(type: "InternalIP", address: ip), .init(type: "Hostname", address: name)]))
    return try! JSONEncoder().encode(node)
}

/// A real etcd, a fake API server and clients for both; all stopped afterwards.
struct HunterWorld: Sendable {
    let etcd: LocalEtcd
    let kube: FakeKubeAPIServer
    let client: EtcdClient
    let schema = MapSchema(root: "/ff-test/v1/")

    static func with(_ body: (HunterWorld) async throws -> Void) async throws {
        let etcd = try await LocalEtcd.start()
        let kube: FakeKubeAPIServer
        do { kube = try await FakeKubeAPIServer.start() } catch { await etcd.stop(); throw error }
        let client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL]))
        let world = HunterWorld(etcd: etcd, kube: kube, client: client)
        var failure: (any Error)?
        do { try await body(world) } catch { failure = error }
        try? await client.shutdown()
        await kube.stop()
        await etcd.stop()
        if let failure { throw failure }
    }

    /// Starts a hunter; stop it with the returned handle.
    func startHunter(leaderElection: Bool = false, identity: String = "hunter-1", ttl: Int64 = 2, labelSelector: String? = nil) throws -> RunningHunter {
        var options = IPHunterOptions()
        options.schema = schema
        options.leaderElection = leaderElection
        options.identity = identity
        options.leaseTTL = ttl
        options.labelSelector = labelSelector
        var logger = Logger(label: identity)
        logger.logLevel = .warning
        let kubeClient = try KubeClient(KubeConfiguration(server: kube.url), logger: logger)
        let etcdClient = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(2), connectTimeout: .seconds(1)), logger: logger)
        let hunter = IPHunter(kube: kubeClient, etcd: etcdClient, options: options, logger: logger)
        let task = Task { await hunter.run() }
        return RunningHunter(hunter: hunter, task: task, kube: kubeClient, etcd: etcdClient)
    }

    /// The vip entries in etcd now.
    func vips() async throws -> [String: VipEntry] {
        var out: [String: VipEntry] = [:]
        for kv in try await client.rangeAll(.prefix(schema.vipsPrefix)).kvs {
            if case .vip(let vip) = schema.classify(kv.key) { out[vip] = MapCodec.vip(kv.value) }
        }
        return out
    }

    /// The node entries in etcd now.
    func nodes() async throws -> [String: NodeEntry] {
        var out: [String: NodeEntry] = [:]
        for kv in try await client.rangeAll(.prefix(schema.nodesPrefix)).kvs {
            if case .node(let node) = schema.classify(kv.key) { out[node] = MapCodec.node(kv.value) }
        }
        return out
    }

    /// vip → "node pip" for compact comparisons.
    func placement() async throws -> [String: String] {
        try await vips().mapValues { "\($0.node) \($0.pip) \($0.namespace)/\($0.pod)" }
    }
}

/// A running hunter and its clients.
struct RunningHunter: Sendable {
    let hunter: IPHunter
    let task: Task<Void, Never>
    let kube: KubeClient
    let etcd: EtcdClient

    /// Waits until the hunter has finished a reconciliation (its counters are then final).
    func waitForSync() async throws {
        try await eventually("hunter finished a reconciliation") { await hunter.currentStats.lastSync != nil }
    }

    /// Graceful stop (SIGTERM path): the leader resigns.
    func stop() async {
        task.cancel()
        await task.value
        try? await kube.shutdown()
        try? await etcd.shutdown()
    }

    /// Simulates a crash: the hunter loses etcd at once (no resignation); its tasks are stopped afterwards.
    func crash() async {
        try? await etcd.shutdown()
        task.cancel()
        await task.value
        try? await kube.shutdown()
    }
}

/// What a watch reported, in revision order ("PUT key", "DELETE key"), collected in a task while the test goes on.
final class WatchedWrites: Sendable {
    private let seen = Mutex<[String]>([])

    /// Every change so far; an error that ended the watch is kept as the last entry.
    var writes: [String] { seen.withLock { $0 } }

    /// Collects `watch` until it ends or the returned task is cancelled.
    func start(_ watch: EtcdWatch) -> Task<Void, Never> {
        Task {
            do {
                for try await update in watch {
                    guard case .events(let batch) = update else { continue }
                    seen.withLock { $0 += batch.map { "\($0.kind.rawValue) \($0.kv.key)" } }
                }
            } catch {
                seen.withLock { $0.append("watch error: \(error)") }
            }
        }
    }
}
