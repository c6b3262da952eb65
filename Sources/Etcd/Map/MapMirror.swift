import HashTreeCollections
import Logging
import Synchronization

/// An immutable view of the map at one etcd revision. Cheap to copy: the dictionaries are
/// persistent hash tries that share structure with the previous snapshot.
public struct MapSnapshot: Sendable {
    /// The etcd revision this snapshot reflects (every change up to it is applied).
    public var revision: Int64
    /// vip → entry; changed only through ``setVip(_:_:)``, which keeps ``vipsByPodUID`` in step.
    public private(set) var vips: TreeDictionary<String, VipEntry>
    /// pod uid → the vips published for it: how a router finds the pod a connecting process belongs to.
    public private(set) var vipsByPodUID: TreeDictionary<String, TreeSet<String>>
    /// node name → entry.
    public var nodes: TreeDictionary<String, NodeEntry>

    /// A snapshot of `vips` and `nodes` (empty at revision 0 by default).
    public init(revision: Int64 = 0, vips: TreeDictionary<String, VipEntry> = [:], nodes: TreeDictionary<String,
                NodeEntry> = [:]) {
        self.revision = revision
        self.vips = vips
        self.nodes = nodes
        var byUID = TreeDictionary<String, TreeSet<String>>()
        for (vip, entry) in vips { byUID[entry.uid, default: []].insert(vip) }
        vipsByPodUID = byUID
    }

    /// Where a virtual IP lives; nil for an unknown vip.
    @inlinable
    public func lookup(vip: String) -> VipEntry? { vips[vip] }

    /// The entries published for the pod with `uid` (one per pod IP), in vip order; empty for an unknown uid.
    public func entries(podUID uid: String) -> [VipEntry] {
        (vipsByPodUID[uid] ?? []).sorted().compactMap { vips[$0] }
    }

    /// Sets (or with nil removes) the entry of `vip`, keeping the uid index in step.
    public mutating func setVip(_ vip: String, _ entry: VipEntry?) {
        if let old = vips[vip] {
            vipsByPodUID[old.uid]?.remove(vip)
            if vipsByPodUID[old.uid]?.isEmpty == true { vipsByPodUID[old.uid] = nil }
        }
        vips[vip] = entry
        if let entry { vipsByPodUID[entry.uid, default: []].insert(vip) }
    }

    /// A node's entry; nil for an unknown node.
    @inlinable
    public func node(_ name: String) -> NodeEntry? { nodes[name] }
}

/// Counters of a mirror, for logs and metrics.
public struct MapMirrorStats: Sendable, Hashable {
    /// Full lists done (1 at start, +1 per relist after compaction).
    public var lists = 0
    /// Watch reconnections after etcd restarts, network breaks or silent streams.
    public var reconnects = 0
    /// Watch streams dropped because they went silent (no event, no progress, the member did not answer).
    public var silentStreams = 0
    /// Watch events applied.
    public var eventsApplied = 0
    /// Values that did not decode and were skipped.
    public var invalidValues = 0
}

/// Keeps a local copy of the FreeFlow map: lists at revision R, watches from R+1, applies every
/// change in order, and relists when etcd compacted the revision it needed. The router reads
/// ``snapshot`` for every vip→pip translation.
public final class MapMirror: Sendable {
    struct State {
        var snapshot = MapSnapshot()
        var stats = MapMirrorStats()
    }

    /// The client the mirror reads through.
    public let client: EtcdClient
    /// The schema (root prefix) mirrored.
    public let schema: MapSchema
    let watchOptions: WatchOptions
    let logger: Logger
    let state = Mutex(State())

    /// Makes a mirror; nothing happens until ``run()``. `watchOptions.startRevision` is ignored:
    /// the mirror always starts after its own list.
    public init(client: EtcdClient, schema: MapSchema = .v1, watchOptions: WatchOptions = WatchOptions(),
                logger: Logger = Logger(label: "freeflow.map-mirror")) {
        self.client = client
        self.schema = schema
        self.watchOptions = watchOptions
        self.logger = logger
    }

    /// The current snapshot.
    public var snapshot: MapSnapshot { state.withLock { $0.snapshot } }

    /// The counters.
    public var stats: MapMirrorStats { state.withLock { $0.stats } }

    /// Whether the first list has completed: before it the snapshot is empty rather than the map, and a
    /// router must not report ready. Stays true afterwards (an etcd outage keeps the last snapshot).
    public var isReady: Bool { state.withLock { $0.stats.lists > 0 } }

    /// Waits until the first list has completed (polling every 10 ms); throws ``MapMirrorNotReady``
    /// when it has not within `timeout`.
    public func waitUntilReady(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !isReady {
            if ContinuousClock.now >= deadline { throw MapMirrorNotReady(timeout: timeout) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Lists and watches until the task is cancelled. A failed list (etcd down) is retried with
    /// backoff; compaction leads to a relist. Returns when cancelled.
    public func run() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let revision = try await list()
                backoff = .milliseconds(100)
                try await watch(from: revision + 1)
            } catch is CancellationError {
                return
            } catch let error as EtcdError {
                if case .compacted = error {
                    logger.notice("map watch hit compaction; relisting", metadata: ["error": "\(error)"])
                    continue
                }
                logger.warning("map mirror failed; retrying", metadata: ["error": "\(error)", "delay": "\(backoff)"])
                do { try await Task.sleep(for: backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(5))
            } catch {
                if Task.isCancelled { return }
                logger.warning("map mirror failed; retrying", metadata: ["error": "\(error)"])
                do { try await Task.sleep(for: backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// Replaces the snapshot with a fresh list and returns its revision; ``run()`` does this itself
    /// (at start and after compaction), so call it only without ``run()``.
    public func list() async throws -> Int64 {
        let result = try await client.rangeAll(.prefix(schema.root))
        var vips = TreeDictionary<String, VipEntry>()
        var nodes = TreeDictionary<String, NodeEntry>()
        var invalid = 0
        for kv in result.kvs {
            switch schema.classify(kv.key) {
            case .vip(let vip):
                if let entry = MapCodec.vip(kv.value) { vips[vip] = entry } else { invalid += 1 }
            case .node(let name):
                if let entry = MapCodec.node(kv.value) { nodes[name] = entry } else { invalid += 1 }
            case .leader, .other:
                break
            }
        }
        state.withLock {
            $0.snapshot = MapSnapshot(revision: result.revision, vips: vips, nodes: nodes)
            $0.stats.lists += 1
            $0.stats.invalidValues += invalid
        }
        logger.info("map listed", metadata: ["revision": "\(result.revision)", "vips": "\(vips.count)",
                                             "nodes": "\(nodes.count)"])
        return result.revision
    }

    func watch(from revision: Int64) async throws {
        var options = watchOptions
        options.startRevision = revision
        for try await update in client.watch(.prefix(schema.root), options: options) {
            switch update {
            case .created:
                break
            case .reconnected(let resume, let endpoint, let cause):
                state.withLock { $0.stats.reconnects += 1 }
                logger.notice("map watch resumed", metadata: ["revision": "\(resume)", "endpoint": "\(endpoint)",
                                                              "cause": "\(cause)"])
            case .silent:
                // The watch logs the silence itself; the mirror keeps its snapshot until the resumption.
                state.withLock { $0.stats.silentStreams += 1 }
            case .progress(let at):
                state.withLock { $0.snapshot.revision = max($0.snapshot.revision, at) }
            case .events(let events):
                apply(events)
            }
        }
    }

    func apply(_ events: [WatchEvent]) {
        state.withLock { state in
            var snapshot = state.snapshot
            for event in events {
                switch schema.classify(event.kv.key) {
                case .vip(let vip):
                    if event.kind == .delete {
                        snapshot.setVip(vip, nil)
                    } else if let entry = MapCodec.vip(event.kv.value) {
                        snapshot.setVip(vip, entry)
                    } else {
                        snapshot.setVip(vip, nil)
                        state.stats.invalidValues += 1
                    }
                case .node(let name):
                    if event.kind == .delete {
                        snapshot.nodes[name] = nil
                    } else if let entry = MapCodec.node(event.kv.value) {
                        snapshot.nodes[name] = entry
                    } else {
                        snapshot.nodes[name] = nil
                        state.stats.invalidValues += 1
                    }
                case .leader, .other:
                    break
                }
                snapshot.revision = max(snapshot.revision, event.revision)
            }
            state.snapshot = snapshot
            state.stats.eventsApplied += events.count
        }
    }

    /// Waits until the mirror has applied `revision` (polling every millisecond) and returns the
    /// snapshot; throws ``MapMirrorTimeout`` when it does not get there in time.
    public func waitForRevision(_ revision: Int64, timeout: Duration = .seconds(10)) async throws -> MapSnapshot {
        let deadline = ContinuousClock.now + timeout
        while true {
            let current = snapshot
            if current.revision >= revision { return current }
            if ContinuousClock.now >= deadline {
                throw MapMirrorTimeout(wanted: revision, reached: current.revision)
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// ``MapMirror/waitForRevision(_:timeout:)`` gave up.
public struct MapMirrorTimeout: Error, CustomStringConvertible {
    /// The revision waited for.
    public var wanted: Int64
    /// The revision the mirror had reached.
    public var reached: Int64
    /// Human-readable form.
    public var description: String { "map mirror reached revision \(reached), not \(wanted), before the timeout" }
}

/// ``MapMirror/waitUntilReady(timeout:)`` gave up: no list completed in time.
public struct MapMirrorNotReady: Error, CustomStringConvertible {
    /// How long it waited.
    public var timeout: Duration
    /// Human-readable form.
    public var description: String { "map mirror completed no list within \(timeout)" }
}
