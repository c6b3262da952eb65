import Etcd
import Foundation
import Logging
import Metrics

/// Settings of the IP hunter.
public struct IPHunterOptions: Sendable {
    /// The map's schema (root prefix).
    public var schema: MapSchema = .v1
    /// Only pods matching this label selector; nil watches every pod of every namespace.
    public var labelSelector: String?
    /// Campaign for leadership before writing (needed with 2+ replicas).
    public var leaderElection = true
    /// Leader lease TTL in seconds.
    public var leaseTTL: Int64 = 10
    /// This replica's name in the leader key.
    public var identity: String = ProcessInfo.processInfo.hostName
    /// Server-side timeout of one watch request, in seconds.
    public var watchTimeoutSeconds = 300
    /// Full reconciliation this often even without a relist, to repair writes made by others.
    public var resyncInterval: Duration = .seconds(600)

    /// Default options.
    public init() {}
}

/// Counters and state for `/metrics`, `/healthz` and tests.
public struct IPHunterStats: Sendable, Hashable {
    /// Pods currently known (all, including unpublishable ones).
    public var podsSeen = 0
    /// Pods that belong in the map.
    public var podsPublishable = 0
    /// Nodes currently known.
    public var nodesSeen = 0
    /// Keys written (puts and deletes) to etcd.
    public var writes = 0
    /// Transactions sent.
    public var transactions = 0
    /// Transactions that failed their guard (another writer, or lost leadership).
    public var conflicts = 0
    /// Errors talking to etcd or the Kubernetes API.
    public var errors = 0
    /// Full reconciliations done.
    public var fullSyncs = 0
    /// Lists received from the API server (first lists and relists).
    public var lists = 0
    /// Whether this replica leads.
    public var isLeader = false
    /// Whether pods and nodes have both been listed.
    public var synced = false
    /// Whether the pending changes have been written (true for followers, who write nothing).
    public var upToDate = false
    /// When etcd last matched the cluster (end of the last successful reconciliation).
    public var lastSync: Date?
}

/// Metric handles (swift-metrics); names are documented in docs/iphunter.md.
struct HunterMetrics {
    let podsSeen: Gauge
    let writes: Counter
    let errors: Counter
    let lastSync: Gauge
    let isLeader: Gauge
    let relists: Counter
    let conflicts: Counter

    init(factory: any MetricsFactory) {
        podsSeen = Gauge(label: "iphunter_pods_seen", factory: factory)
        writes = Counter(label: "iphunter_etcd_writes_total", factory: factory)
        errors = Counter(label: "iphunter_errors_total", factory: factory)
        lastSync = Gauge(label: "iphunter_last_sync_timestamp_seconds", factory: factory)
        isLeader = Gauge(label: "iphunter_is_leader", factory: factory)
        relists = Counter(label: "iphunter_kube_lists_total", factory: factory)
        conflicts = Counter(label: "iphunter_txn_conflicts_total", factory: factory)
    }
}

/// Watches pods and nodes and publishes the vip→pip map into etcd by reconciliation: after every
/// (re)list it compares etcd with the cluster and writes only the difference; between lists each
/// event rewrites only the keys it touches. Only the elected leader writes.
public actor IPHunter {
    let kube: KubeClient
    let etcd: EtcdClient
    let options: IPHunterOptions
    let logger: Logger
    let metrics: HunterMetrics
    var state: ClusterState
    var publisher: Publisher
    var podsSynced = false
    var nodesSynced = false
    var leaderRevision: Int64?
    var needFull = true
    var dirty: Set<String> = []
    var stats = IPHunterStats()
    let wakeups: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation

    /// Makes a hunter; nothing happens until ``run()``.
    public init(kube: KubeClient, etcd: EtcdClient, options: IPHunterOptions,
                metricsFactory: any MetricsFactory = MetricsSystem.factory,
                logger: Logger = Logger(label: "iphunter")) {
        self.kube = kube
        self.etcd = etcd
        self.options = options
        self.logger = logger
        metrics = HunterMetrics(factory: metricsFactory)
        state = ClusterState(schema: options.schema)
        publisher = Publisher(client: etcd, schema: options.schema)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// A copy of the counters.
    public var currentStats: IPHunterStats { stats }

    /// Runs until cancelled (SIGTERM through the service group): informers, election, writer.
    /// On cancellation the leader resigns so another replica takes over at once.
    public func run() async {
        let podInformer = Informer<Pod>(client: kube, path: "/api/v1/pods", labelSelector: options.labelSelector,
                                        watchTimeoutSeconds: options.watchTimeoutSeconds, logger: logger)
        let nodeInformer = Informer<Node>(client: kube, path: "/api/v1/nodes",
                                          watchTimeoutSeconds: options.watchTimeoutSeconds, logger: logger)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await podInformer.run({ await self.podEvent($0) }, onError: { _ in await self.countError() })
            }
            group.addTask {
                await nodeInformer.run({ await self.nodeEvent($0) }, onError: { _ in await self.countError() })
            }
            if options.leaderElection {
                let elector = LeaderElector(client: etcd, key: options.schema.leaderKey, identity: options.identity,
                                            ttl: options.leaseTTL, logger: logger)
                group.addTask { await elector.run { await self.leadershipChanged($0) } }
            } else {
                leadershipChanged(0)
            }
            group.addTask { await self.writerLoop() }
            group.addTask { await self.resyncLoop() }
            await group.waitForAll()
        }
        wake.finish()
    }

    func countError() {
        stats.errors += 1
        metrics.errors.increment()
    }

    func leadershipChanged(_ revision: Int64?) {
        // 0 stands for "no election": lead, and write without a leader guard.
        leaderRevision = revision
        stats.isLeader = revision != nil
        metrics.isLeader.record(revision != nil ? 1 : 0)
        if revision != nil {
            needFull = true
            wake.yield()
        }
    }

    func podEvent(_ event: InformerEvent<Pod>) {
        switch event {
        case .synced(let pods):
            dirty.formUnion(state.replacePods(pods))
            podsSynced = true
            needFull = true
            stats.lists += 1
            metrics.relists.increment()
        case .added(let pod), .modified(let pod):
            dirty.formUnion(state.upsert(pod))
        case .deleted(let pod):
            dirty.formUnion(state.delete(pod))
        }
        stats.podsSeen = state.pods.count
        stats.synced = podsSynced && nodesSynced
        metrics.podsSeen.record(state.pods.count)
        wake.yield()
    }

    func nodeEvent(_ event: InformerEvent<Node>) {
        switch event {
        case .synced(let nodes):
            dirty.formUnion(state.replaceNodes(nodes))
            nodesSynced = true
            needFull = true
            stats.lists += 1
            metrics.relists.increment()
        case .added(let node), .modified(let node):
            dirty.formUnion(state.upsert(node))
        case .deleted(let node):
            dirty.formUnion(state.delete(node))
        }
        stats.nodesSeen = state.nodes.count
        stats.synced = podsSynced && nodesSynced
        wake.yield()
    }

    func resyncLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: options.resyncInterval) } catch { return }
            needFull = true
            wake.yield()
        }
    }

    func writerLoop() async {
        var backoff = Duration.milliseconds(200)
        for await _ in wakeups {
            if Task.isCancelled { return }
            while await syncOnce() == false {
                do { try await Task.sleep(for: backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(10))
            }
            backoff = .milliseconds(200)
        }
    }

    /// One reconciliation step; false when it failed and should be retried after a delay.
    func syncOnce() async -> Bool {
        guard podsSynced, nodesSynced, let leader = leaderRevision else { return true }
        let guardRevision: Int64? = leader == 0 ? nil : leader
        let full = needFull
        let keys: Set<String>
        do {
            if full {
                needFull = false
                dirty = []
                try await publisher.reload()
                keys = Set(state.desiredMap().keys).union(await publisher.seenKeys)
            } else {
                keys = dirty
                dirty = []
                if keys.isEmpty { return true }
            }
            // Desired values come from a copy of the state taken now; events that arrive while
            // writing mark their keys dirty and are written in the next round.
            let written = try await publisher.reconcile(keys: keys, leaderRevision: guardRevision) { [state] key in
                state.desiredValue(key)
            }
            await recordPublisher()
            if full {
                stats.fullSyncs += 1
                logger.info("reconciled", metadata: ["keys": "\(keys.count)", "written": "\(written)",
                                                     "pods": "\(state.pods.count)"])
            }
            stats.lastSync = Date()
            metrics.lastSync.record(Date().timeIntervalSince1970)
            stats.podsPublishable = state.publishablePods
            return true
        } catch is NotLeader {
            await recordPublisher()
            logger.warning("write refused: another replica leads now")
            return true
        } catch {
            await recordPublisher()
            countError()
            needFull = true
            logger.warning("reconcile failed; will reconcile fully", metadata: ["error": "\(error)"])
            return false
        }
    }

    func recordPublisher() async {
        let (writes, transactions, conflicts) = await publisher.counters
        metrics.writes.increment(by: writes - stats.writes)
        metrics.conflicts.increment(by: conflicts - stats.conflicts)
        stats.writes = writes
        stats.transactions = transactions
        stats.conflicts = conflicts
    }
}
