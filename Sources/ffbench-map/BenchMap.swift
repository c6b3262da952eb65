import Etcd
import FreeFlowTestSupport
import Foundation
import HashTreeCollections
import IPHunter
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks for the FreeFlow map (issue 4). Starts its own etcd and fake API server and prints
/// each number next to a baseline measured in the same run. Usage:
/// `ffbench-map [--pods N] [--etcdctl-keys N] [--latency-samples N] [--mirror-entries N]`.
@main
struct BenchMap {
    static func argument(_ name: String, _ fallback: Int) -> Int {
        let args = CommandLine.arguments
        if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
        return fallback
    }

    static func main() async throws {
        let pods = argument("--pods", 10_000)
        let etcdctlKeys = argument("--etcdctl-keys", 1_000)
        let samples = argument("--latency-samples", 300)
        let mirrorEntries = argument("--mirror-entries", 100_000)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        print("ffbench-map: pods=\(pods) etcdctl-keys=\(etcdctlKeys) latency-samples=\(samples) "
            + "mirror-entries=\(mirrorEntries)")
        let etcd = try await LocalEtcd.start(extraArguments: ["--quota-backend-bytes=4294967296"])
        let kube = try await FakeKubeAPIServer.start()
        let client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL]), logger: logger)
        do {
            try await initialSync(pods: pods, etcdctlKeys: etcdctlKeys, etcd: etcd, kube: kube, client: client,
                                  logger: logger, samples: samples)
            try await mirrorMemoryAndLookup(entries: mirrorEntries, client: client, logger: logger)
        } catch {
            print("benchmark failed: \(error)")
        }
        try? await client.shutdown()
        await kube.stop()
        await etcd.stop()
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func pad(_ s: String, _ n: Int) -> String {
        s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0)
    }

    static func podJSON(_ i: Int, node: Int, ip: String) -> Data {
        let pod = Pod(metadata: ObjectMeta(name: "pod-\(i)", namespace: "bench", uid: "uid-\(i)",
                                           creationTimestamp: "2026-01-01T00:00:00Z"),
                      spec: Pod.Spec(nodeName: "node-\(node)"), status: Pod.Status(phase: "Running", podIP: ip,
                          podIPs: [.init(ip: ip)]))
        return try! JSONEncoder().encode(pod)
    }

    static func ip(_ i: Int) -> String { "10.\(100 + i / 65536).\((i / 256) % 256).\(i % 256)" }

    /// Initial sync of `pods` pods through the hunter vs `etcdctl put` and vs one plain Put per key.
    static func initialSync(pods: Int, etcdctlKeys: Int, etcd: LocalEtcd, kube: FakeKubeAPIServer, client: EtcdClient,
                            logger: Logger, samples: Int) async throws {
        let nodes = 100
        for n in 0..<nodes {
            let node = Node(metadata: ObjectMeta(name: "node-\(n)", uid: "n\(n)"),
                status: .init(addresses: [.init(type: "InternalIP", address: "192.168.\(n / 250).\(n % 250 + 1)")]))
            try await kube.apply("nodes", try JSONEncoder().encode(node))
        }
        for i in 0..<pods { try await kube.apply("pods", podJSON(i, node: i % nodes, ip: ip(i))) }
        let schema = MapSchema(root: "/bench/hunter/")
        var options = IPHunterOptions()
        options.schema = schema
        options.leaderElection = false
        let kubeClient = try KubeClient(KubeConfiguration(server: kube.url), logger: logger)
        let hunterEtcd = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL]), logger: logger)
        let hunter = IPHunter(kube: kubeClient, etcd: hunterEtcd, options: options, logger: logger)
        let start = ContinuousClock.now
        let task = Task { await hunter.run() }
        while await hunter.currentStats.lastSync == nil { try await Task.sleep(for: .milliseconds(2)) }
        let hunterTime = seconds(ContinuousClock.now - start)
        let stats = await hunter.currentStats
        let published = try await client.range(.prefix(schema.root), countOnly: true).count
        let keys = pods + nodes
        let hunterRate = Double(stats.writes) / hunterTime

        // Baseline 1: one Put per key through the same client, sequentially (no batching).
        let values = try await client.rangeAll(.prefix(schema.root)).kvs
        let putStart = ContinuousClock.now
        for kv in values { try await client.put("/bench/put/" + kv.key.dropFirst(schema.root.count), kv.value) }
        let putRate = Double(values.count) / seconds(ContinuousClock.now - putStart)

        // Baseline 2: stock etcdctl, one process per put, for a sample of the same keys and values.
        let sample = Array(values.prefix(etcdctlKeys))
        let etcdctlStart = ContinuousClock.now
        for kv in sample {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
            process.arguments = ["--endpoints", etcd.clientURL, "put",
                                 "/bench/etcdctl/" + kv.key.dropFirst(schema.root.count), kv.valueString]
            process.environment = ["ETCDCTL_API": "3"]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
        }
        let etcdctlRate = Double(sample.count) / seconds(ContinuousClock.now - etcdctlStart)

        print("")
        print("== initial sync: \(pods) pods on \(nodes) nodes into an empty etcd ==")
        print("iphunter: \(String(format: "%.2f", hunterTime)) s from start to etcd matching the cluster (list + "
            + "reconcile), \(stats.writes) keys written in \(stats.transactions) guarded txns, \(published)/\(keys) "
            + "keys present")
        print(pad("  iphunter (list + batched guarded txns)", 48) + String(format: "%10.0f writes/s", hunterRate))
        print(pad("  plain Put per key (same client, sequential)",
                  48) + String(format: "%10.0f writes/s   iphunter is %.1fx", putRate, hunterRate / putRate))
        print(pad("  etcdctl put, one process per key (\(sample.count) keys)",
                  48) + String(format: "%10.0f writes/s   iphunter is %.1fx", etcdctlRate, hunterRate / etcdctlRate))
        print(String(format: "  10,000 keys would take: iphunter %.2f s, Put loop %.2f s, etcdctl %.1f s",
                     10_000 / hunterRate, 10_000 / putRate, 10_000 / etcdctlRate))

        try await latency(samples: samples, kube: kube, client: client, schema: schema, hunter: hunter, logger: logger)
        task.cancel()
        await task.value
        try? await kubeClient.shutdown()
        try? await hunterEtcd.shutdown()
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
    }

    /// Pod change on the fake API server → visible in a watching mirror; baseline: etcd put → mirror.
    static func latency(samples: Int, kube: FakeKubeAPIServer, client: EtcdClient, schema: MapSchema, hunter: IPHunter,
                        logger: Logger) async throws {
        let mirrorClient = try EtcdClient(EtcdConfiguration(endpoints: client.configuration.endpoints), logger: logger)
        let mirror = MapMirror(client: mirrorClient, schema: schema, logger: logger)
        let task = Task { await mirror.run() }
        while mirror.stats.lists == 0 { try await Task.sleep(for: .milliseconds(5)) }
        var endToEnd: [Double] = []
        var etcdOnly: [Double] = []
        for s in 0..<samples {
            let vip = "10.250.\(s / 250).\(s % 250 + 1)"
            let start = ContinuousClock.now
            try await kube.apply("pods", podJSON(1_000_000 + s, node: s % 100, ip: vip))
            while mirror.snapshot.lookup(vip: vip) == nil { await Task.yield() }
            endToEnd.append(seconds(ContinuousClock.now - start) * 1000)

            let direct = "10.251.\(s / 250).\(s % 250 + 1)"
            let entry = VipEntry(vip: direct, pip: "192.168.0.1", node: "node-0", namespace: "bench",
                                 pod: "direct-\(s)", uid: "d\(s)")
            let putStart = ContinuousClock.now
            try await client.put(schema.vipKey(direct), MapCodec.encode(entry))
            while mirror.snapshot.lookup(vip: direct) == nil { await Task.yield() }
            etcdOnly.append(seconds(ContinuousClock.now - putStart) * 1000)
        }
        task.cancel()
        await task.value
        try? await mirrorClient.shutdown()
        endToEnd.sort()
        etcdOnly.sort()
        print("")
        print("== event latency: pod change on the API server → visible in a watching MapMirror "
            + "(\(samples) samples) ==")
        print(String(format: "  pod change → mirror (API watch + iphunter txn + etcd watch)"
                             + "  p50 %.2f ms  p99 %.2f ms",
                     percentile(endToEnd, 0.5), percentile(endToEnd, 0.99)))
        print(String(format: "  baseline etcd put → mirror (etcd watch only)              p50 %.2f ms  p99 %.2f ms",
                     percentile(etcdOnly, 0.5), percentile(etcdOnly, 0.99)))
        print(String(format: "  ratio end-to-end / etcd-only: p50 %.1fx  p99 %.1fx",
                     percentile(endToEnd, 0.5) / percentile(etcdOnly, 0.5),
                     percentile(endToEnd, 0.99) / percentile(etcdOnly, 0.99)))
    }

    /// Bytes allocated with malloc and still in use (glibc mallinfo2: uordblks + hblkhd).
    /// mallinfo2 returns an 80-byte struct, which the x86-64 SysV ABI returns through a hidden
    /// pointer in the first argument register, so it is called as `(buffer) -> buffer`; glibc's
    /// malloc.h is not visible to Swift. It counts the main arena only: scripts/bench-map sets
    /// MALLOC_ARENA_MAX=1 so every thread allocates there. Elsewhere: resident set size.
    static func heapInUse() -> (bytes: Int, method: String) {
        #if arch(x86_64) && os(Linux)
        if let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallinfo2") {
            typealias MallInfo2 = @convention(c) (UnsafeMutableRawPointer) -> UnsafeMutableRawPointer
            let call = unsafeBitCast(symbol, to: MallInfo2.self)
            let info = UnsafeMutableRawPointer.allocate(byteCount: 10 * 8, alignment: 8)
            defer { info.deallocate() }
            _ = call(info)
            let hblkhd = info.load(fromByteOffset: 4 * 8, as: Int.self)
            let uordblks = info.load(fromByteOffset: 7 * 8, as: Int.self)
            return (uordblks + hblkhd, "malloc in use")
        }
        #endif
        let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        let resident = Int(text.split(separator: " ")[1]) ?? 0
        return (resident * Int(sysconf(Int32(_SC_PAGESIZE))), "RSS growth (approximate)")
    }

    /// Memory of a mirror holding `entries` vips and its lookup cost, against a plain Dictionary.
    static func mirrorMemoryAndLookup(entries: Int, client: EtcdClient, logger: Logger) async throws {
        let schema = MapSchema(root: "/bench/mirror/")
        var batch: [TxnOp] = []
        for i in 0..<entries {
            let entry = VipEntry(vip: ip(i), pip: "192.168.\(i % 100 / 250).\(i % 100 + 1)", node: "node-\(i % 100)",
                                 namespace: "bench", pod: "pod-\(i)", uid: "uid-\(i)")
            batch.append(.put(schema.vipKey(entry.vip), MapCodec.encode(entry)))
            if batch.count == 100 {
                _ = try await client.txn(compare: [], success: batch)
                batch = []
            }
        }
        if !batch.isEmpty { _ = try await client.txn(compare: [], success: batch) }

        let mirror = MapMirror(client: client, schema: schema, logger: logger)
        let listStart = ContinuousClock.now
        let before = heapInUse().bytes
        _ = try await mirror.list()
        let listTime = seconds(ContinuousClock.now - listStart)
        // The list's transient buffers are freed by now, but their pages may stay resident.
        let (after, method) = heapInUse()
        let mirrorBytes = after - before
        let snapshot = mirror.snapshot

        let beforeDict = heapInUse().bytes
        var dictionary: [String: VipEntry] = [:]
        for (k, v) in snapshot.vips { dictionary[k] = v }
        let dictBytes = heapInUse().bytes - beforeDict

        var rng = SystemRandomNumberGenerator()
        let probes = (0..<1_000_000).map { _ in ip(Int.random(in: 0..<entries, using: &rng)) }
        var hits = 0
        let t0 = ContinuousClock.now
        for vip in probes where snapshot.lookup(vip: vip) != nil { hits += 1 }
        let mirrorNs = seconds(ContinuousClock.now - t0) * 1e9 / Double(probes.count)
        let t1 = ContinuousClock.now
        for vip in probes where dictionary[vip] != nil { hits += 1 }
        let dictNs = seconds(ContinuousClock.now - t1) * 1e9 / Double(probes.count)
        let t2 = ContinuousClock.now
        for vip in probes.prefix(100_000) where mirror.snapshot.lookup(vip: vip) != nil { hits += 1 }
        let lockedNs = seconds(ContinuousClock.now - t2) * 1e9 / 100_000
        precondition(hits == 2 * probes.count + 100_000)

        print("")
        print("== mirror: \(entries) vip entries ==")
        print(String(format: "  list of %d entries from etcd into the mirror: %.2f s", snapshot.vips.count, listTime))
        print("  \(method): " + String(format: "mirror snapshot %.1f MiB (%.0f B/entry); plain [String: VipEntry] copy "
                                             + "%.1f MiB (%.0f B/entry); ratio %.2fx",
                     Double(mirrorBytes) / 1048576, Double(mirrorBytes) / Double(entries), Double(dictBytes) / 1048576,
                     Double(dictBytes) / Double(entries),
                     Double(mirrorBytes) / Double(max(dictBytes, 1))))
        print(String(format: "  lookup on a held snapshot: %.0f ns; Dictionary lookup: %.0f ns; ratio %.2fx", mirrorNs,
                     dictNs, mirrorNs / dictNs))
        print(String(format: "  lookup taking a fresh snapshot each time (lock + copy): %.0f ns", lockedNs))
    }
}
