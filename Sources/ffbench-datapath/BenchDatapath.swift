import CAllocationCounter
import CoreMetrics
import FFClient
import FFFakeDevice
import FFProtocol
import FFRouter
import FFSystem
import Foundation
import Glibc
import Logging
import Synchronization

// Host benchmarks of the shared-memory fast path (issue 10), run by scripts/bench-datapath:
//   1. raw ring ping-pong between two processes with the same ring code (RingProducer/RingConsumer), p50/p99/p999;
//   2. post → router → completion through a real Router (data-path thread, fake backend): a signaled RDMA WRITE
//      posted into the QP's send ring until its completion is visible in the CQ's ring, p50/p99/p999;
//   3. op rate at batches of 1 and 32, both paths;
//   4. the router's CPU over 10 s idle with 10 sessions holding rings;
//   5. where the router's time goes in (2): its data-path thread's busy time per operation (from its metrics) and the
//      heap allocations it makes per operation (counted by CAllocationCounter's malloc).
// The client side of (2)-(4) is this process (FFClient for control calls, the rings for data), the router runs on its
// own threads in this process too; the raw peer of (1) is a second process.

let arguments = CommandLine.arguments
if arguments.count == 3, arguments[1] == "raw-peer", let fd = Int32(arguments[2]) {
    rawPeer(fd: fd)
    exit(0)
}
let quick = arguments.contains("--quick")
let iterations = quick ? 20_000 : 200_000
let idleSeconds = quick ? 2.0 : 10.0

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

struct Percentiles {
    let p50: UInt64, p99: UInt64, p999: UInt64
    init(_ samples: [UInt64]) {
        let s = samples.sorted()
        func at(_ q: Double) -> UInt64 { s[min(s.count - 1, Int(Double(s.count) * q))] }
        p50 = at(0.50)
        p99 = at(0.99)
        p999 = at(0.999)
    }
    var line: String { "p50=\(p50)ns p99=\(p99)ns p999=\(p999)ns" }
}

// MARK: - Raw ring between two processes

/// Two rings of 256 × 64-byte slots in one memfd: requests to the peer (ring 0) and answers back (ring 1).
func rawLayout() -> (rings: [RingDescriptor], size: Int) {
    RingMapLayout.plan([(256, 64, .send), (256, 64, .completion)])!
}

/// The peer: answers every slot of ring 0 with one slot in ring 1 (the value +1); ends on UInt64.max or after 10 s
/// without a request (its spin is bounded).
func rawPeer(fd: Int32) {
    let layout = rawLayout()
    guard let memory = try? SharedMemory(mapping: OwnedDescriptor(taking: fd), offset: 0, length: layout.size) else {
        exit(2)
    }
    let base = memory.bytes.baseAddress!
    var requests = RingConsumer(RingMemory(base: base, layout.rings[0]))
    var answers = RingProducer(RingMemory(base: base, layout.rings[1]))
    var lastSeen = now()
    while true {
        let n = requests.available()
        if n == 0 {
            if now() &- lastSeen > 10_000_000_000 { return }
            continue
        }
        lastSeen = now()
        for i in 0..<n {
            let value = requests.slot(i).load(as: UInt64.self)
            if value == .max { return }
            while answers.freeSlots() == 0 {}
            answers.reserve()!.storeBytes(of: value &+ 1, as: UInt64.self)
            answers.advance()
        }
        requests.release(n)
        answers.publish()
    }
}

func runRaw() throws -> (latency: Percentiles, rate1: Double, rate32: Double) {
    let layout = rawLayout()
    let memory = try SharedMemory(name: "bench-raw", size: layout.size)
    let base = memory.bytes.baseAddress!
    RingMapLayout.writeControl(base, rings: layout.rings, size: layout.size)
    // The peer inherits the memfd (no close-on-exec for this one descriptor).
    _ = fcntl(memory.descriptor.rawValue, F_SETFD, 0)
    var pid: pid_t = 0
    let argv = [arguments[0], "raw-peer", "\(memory.descriptor.rawValue)"]
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    guard posix_spawn(&pid, arguments[0], nil, nil, &cArgs, environ) == 0 else {
        throw BenchError("posix_spawn of the raw peer failed")
    }
    var requests = RingProducer(RingMemory(base: base, layout.rings[0]))
    var answers = RingConsumer(RingMemory(base: base, layout.rings[1]))

    func send(_ value: UInt64) {
        while requests.freeSlots() == 0 {}
        requests.reserve()!.storeBytes(of: value, as: UInt64.self)
        requests.advance()
    }
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    for i in 0..<(iterations + 1000) {
        let t0 = now()
        send(UInt64(i))
        requests.publish()
        while answers.available() == 0 {}
        answers.release(1)
        if i >= 1000 { samples.append(now() &- t0) }
    }
    func rate(batch: Int) -> Double {
        let total = iterations * 2
        var sent = 0, received = 0
        let t0 = now()
        while received < total {
            if sent < total, sent - received + batch <= 256 {
                for _ in 0..<batch { send(UInt64(sent)); sent += 1 }
                requests.publish()
            }
            let n = answers.available()
            answers.release(n)
            received += n
        }
        return Double(total) / (Double(now() &- t0) / 1e9)
    }
    let rate1 = rate(batch: 1)
    let rate32 = rate(batch: 32)
    send(.max)
    requests.publish()
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (Percentiles(samples), rate1, rate32)
}

// MARK: - Through the router

/// One client session on the router's fake device: a PD, 1 MiB registered, a CQ and an RC QP connected to itself,
/// with the QP's send ring and the CQ's ring mapped.
final class RouterClient {
    let connection: RouterConnection
    let memory: SharedMemory
    let lkey: UInt32, rkey: UInt32
    let qpRings: SharedMemory, cqRings: SharedMemory
    var send: RingProducer
    var completions: RingConsumer
    let doorbell: OwnedDescriptor
    let sendSleep: RingSleepFlag

    init(socket: String, depth: UInt32) throws {
        connection = try RouterConnection(path: socket, name: "ffbench-datapath", capabilities: [.sharedMemoryRings])
        guard connection.session.capabilities.contains(.sharedMemoryRings) else {
            throw BenchError("the router did not grant the fast path")
        }
        memory = try SharedMemory(name: "bench", size: 1 << 20)
        let pd = try connection.allocatePD()
        let mr = try connection.registerMemory(pd: pd, memory: memory, access: [.localWrite, .remoteWrite, .remoteRead])
        lkey = mr.lkey
        rkey = mr.rkey
        let cq = try connection.createCQ(entries: depth * 2).cq
        let caps = QPCapabilities(maxSendWR: depth, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)
        let created = try connection.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, srq: nil, type: .rc,
                                                              signalAll: false, capabilities: caps))
        var a = QPAttributes()
        a.state = .initialized
        a.port = 1
        a.accessFlags = [.localWrite, .remoteWrite, .remoteRead]
        try connection.modifyQP(created.qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: a)
        a.state = .readyToReceive
        a.addressVector = AHAttributes(globalRoute: GlobalRoute(destinationGID: connection.session.gid), port: 1)
        a.pathMTU = .mtu1024
        a.destQPN = created.qpNum
        a.maxDestReadAtomic = 1
        a.minRNRTimer = 12
        try connection.modifyQP(created.qp, mask: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN,
                                                   .maxDestReadAtomic, .minRNRTimer], attributes: a)
        a.state = .readyToSend
        a.timeout = 14
        a.retryCount = 7
        a.rnrRetry = 7
        a.maxReadAtomic = 1
        try connection.modifyQP(created.qp, mask: [.state, .sqPSN, .timeout, .retryCount, .rnrRetry, .maxReadAtomic],
                                attributes: a)
        let (q, qr) = try Self.map(connection, .qp, created.qp.rawValue)
        let (c, cr) = try Self.map(connection, .cq, cq.rawValue)
        qpRings = q
        cqRings = c
        send = RingProducer(RingMemory(base: q.bytes.baseAddress!, qr[0]))
        completions = RingConsumer(RingMemory(base: c.bytes.baseAddress!, cr[0]))
        sendSleep = RingSleepFlag(base: q.bytes.baseAddress!)
        let (_, fds) = try connection.call(MapRingRequest(target: .doorbell, handle: 0))
        guard let bell = fds.first else { throw BenchError("doorbell") }
        doorbell = bell
    }

    static func map(_ connection: RouterConnection, _ target: RingTarget, _ handle: UInt32) throws
        -> (SharedMemory, [RingDescriptor]) {
        let (r, fds) = try connection.call(MapRingRequest(target: target, handle: handle))
        guard let fd = fds.first else { throw BenchError("map_ring \(target)") }
        let m = try SharedMemory(mapping: fd, offset: 0, length: Int(r.size))
        return (m, RingMapLayout.readControl(m.bytes.baseAddress!, size: m.bytes.count)!)
    }

    /// Writes one signaled 8-byte RDMA WRITE to its own memory (not yet published).
    @inline(__always)
    func write(_ id: UInt64) {
        let slot = send.reserve()!
        RingSlots.writeSend(slot, wrID: id, opcode: SendOpcode.rdmaWrite.rawValue, flags: SendFlags.signaled.rawValue,
                            immData: 0, rkey: rkey,
                            remoteAddress: memory.address + 4096, compareAdd: 0, swap: 0, addressHandle: 0,
                            remoteQPN: 0, remoteQKey: 0,
                            sgeCount: 1, inlineLength: 0)
        RingSlots.writeSGE(slot, fixed: 64, index: 0, address: memory.address, length: 8, lkey: lkey)
        send.advance()
    }

    private var emptyPolls = 0

    /// What libffclient's poll does on an empty ring: after 1024 empty polls in a row it yields the CPU once (the
    /// router shares the cores with the program).
    @inline(__always)
    func emptyPoll() {
        emptyPolls += 1
        if emptyPolls >= 1024 {
            emptyPolls = 0
            sched_yield()
        }
    }

    /// Polls the CQ ring as a program spinning on ibv_poll_cq would through libffclient.
    @inline(__always)
    func waitForCompletion() {
        while completions.available() == 0 { emptyPoll() }
        emptyPolls = 0
    }

    @inline(__always)
    func publish() {
        send.publish()
        if sendSleep.needsDoorbell() {
            var one: UInt64 = 1
            _ = Glibc.write(doorbell.rawValue, &one, 8)
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Counters the router's data path increments, readable by label (the benchmark reads its busy time and posts).
final class BenchMetrics: MetricsFactory {
    final class Value: CounterHandler {
        let total = Atomic<Int64>(0)
        func increment(by amount: Int64) { total.add(amount, ordering: .relaxed) }
        func reset() { total.store(0, ordering: .relaxed) }
    }

    private let counters = Mutex<[String: Value]>([:])

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        counters.withLock { all in
            if let existing = all[label] { return existing }
            let value = Value()
            all[label] = value
            return value
        }
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        NOOPMetricsHandler.instance
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NOOPMetricsHandler.instance }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    /// The counter's total so far (0 if nothing made it).
    func total(_ label: String) -> Int64 { counters.withLock { $0[label]?.total.load(ordering: .relaxed) ?? 0 } }
}

/// The data-path thread's cost per operation over a run: busy nanoseconds (rounds that moved something) and heap
/// allocations, each divided by the slots it took.
struct RouterCost {
    var busyNanosecondsPerOp: Double
    var allocationsPerOp: Double
    var line: String { String(format: "busy %.0f ns/op, %.3f allocations/op", busyNanosecondsPerOp, allocationsPerOp) }
}

func runRouter() async throws
    -> (latency: Percentiles, rate1: Double, rate32: Double, idlePercent: Double, cost: RouterCost) {
    let directory = NSTemporaryDirectory() + "ffbench-datapath-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var logger = Logger(label: "ffbench-datapath")
    logger.logLevel = .error
    let backend = FakeBackend()
    try "10.9.0.1 10.0.2.15\n".write(toFile: directory + "/map.txt", atomically: true, encoding: .utf8)
    let map = try StaticVipMap(path: directory + "/map.txt")
    let metrics = BenchMetrics()
    let dataPath = DataPath(backend: backend, tuning: DataPathTuning(), logger: logger, factory: metrics)
    let router = Router(backend: backend, map: map, socketDirectory: directory,
                        pods: [PodDeclaration(argument: "a=10.9.0.1")!], logger: logger,
                        dataPath: dataPath)
    let task = Task { try await router.run() }
    defer { task.cancel() }
    let socket = "\(directory)/a.sock"
    let deadline = now() + 30_000_000_000
    while !FileManager.default.fileExists(atPath: socket) {
        guard now() < deadline else { throw BenchError("router socket did not appear") }
        try await Task.sleep(nanoseconds: 10_000_000)
    }
    let depth: UInt32 = 256
    // The socket file exists a moment before the router listens on it: a refused connect is retried until the deadline.
    var connected: RouterClient?
    while connected == nil {
        do {
            connected = try RouterClient(socket: socket, depth: depth)
        } catch {
            guard now() < deadline else { throw error }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }
    let client = connected!
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    var busyBefore: Int64 = 0, postsBefore: Int64 = 0
    for i in 0..<(iterations + 1000) {
        if i == 1000 {
            busyBefore = metrics.total("ffrouter_datapath_busy_nanoseconds_total")
            postsBefore = metrics.total("ffrouter_datapath_posts_total")
            ff_allocations_count_thread(uintptr_t(dataPath.threads.first ?? 0))
        }
        let t0 = now()
        client.write(UInt64(i))
        client.publish()
        client.waitForCompletion()
        client.completions.release(1)
        if i >= 1000 { samples.append(now() &- t0) }
    }
    let allocations = ff_allocations_counted()
    ff_allocations_count_thread(0)
    let ops = Double(max(1, metrics.total("ffrouter_datapath_posts_total") - postsBefore))
    let cost = RouterCost(busyNanosecondsPerOp:
                              Double(metrics.total("ffrouter_datapath_busy_nanoseconds_total") - busyBefore) / ops,
                          allocationsPerOp: Double(allocations) / ops)
    func rate(batch: Int) -> Double {
        let total = iterations * 2
        var sent = 0, done = 0
        let t0 = now()
        while done < total {
            if sent < total, sent - done + batch <= Int(depth) {
                for _ in 0..<batch { client.write(UInt64(sent)); sent += 1 }
                client.publish()
            }
            let n = client.completions.available()
            client.completions.release(n)
            done += n
            if n == 0 { client.emptyPoll() }
        }
        return Double(total) / (Double(now() &- t0) / 1e9)
    }
    let rate1 = rate(batch: 1)
    let rate32 = rate(batch: 32)
    // 10 sessions with rings (this one and 9 more), then the process's CPU over the idle interval: the bench itself
    // only sleeps meanwhile, so what is spent is the router's.
    var idle = [client]
    for _ in 0..<9 { idle.append(try RouterClient(socket: socket, depth: 16)) }
    try await Task.sleep(nanoseconds: 200_000_000)
    let before = cpuSeconds(), wallBefore = now()
    try await Task.sleep(nanoseconds: UInt64(idleSeconds * 1e9))
    let idlePercent = (cpuSeconds() - before) / (Double(now() &- wallBefore) / 1e9) * 100
    for c in idle { c.connection.close() }
    return (Percentiles(samples), rate1, rate32, idlePercent, cost)
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

let raw = try runRaw()
print("raw ring (2 processes): ping-pong \(raw.latency.line); op rate batch 1 \(Int(raw.rate1)) ops/s, batch 32 "
    + "\(Int(raw.rate32)) ops/s")
let routed = try await runRouter()
print("fast path (post → router → completion, fake device): \(routed.latency.line); op rate batch 1 "
    + "\(Int(routed.rate1)) ops/s, batch 32 \(Int(routed.rate32)) ops/s")
print("router data-path thread per operation in the ping-pong (metrics, counting malloc): \(routed.cost.line)")
print(String(format: "router idle CPU with 10 sessions over %.0f s: %.3f %%", idleSeconds, routed.idlePercent))
print(String(format: "datapath p50_ratio=%.2f op_rate_ratio=%.2f idle_router_cpu_pct=%.3f",
             Double(routed.latency.p50) / Double(max(1, raw.latency.p50)), routed.rate1 / raw.rate1,
             routed.idlePercent))
