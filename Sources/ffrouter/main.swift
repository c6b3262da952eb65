import ArgumentParser
import Etcd
import FFCommandLine
import FFOperations
import FFFakeDevice
import FFProtocol
import FFRouter
import FFRouterAPI
import FFSystem
import Logging
import ServiceLifecycle

/// `ffrouter`: the per-node FreeFlow router.
@main
struct FFRouterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffrouter",
        abstract: "Serve the verbs calls of this node's pods on the node's RDMA device.",
        discussion: """
            Each pod declared with --pod NAME=VIP gets a socket <socket-dir>/NAME.sock; a client that connects \
            there is that pod (mount only a pod's own socket into it). With --client-socket, one socket serves every \
            pod of the node: a client is the pod whose cgroup its process is in, if the etcd map publishes that pod's \
            vip on this node. Pods can also be added and removed while \
            the router runs, over the admin socket (`ffctl router pod add|remove|list`); such a pod's socket is \
            <socket-dir>/pod-<UID>.sock. The pod sees a virtual device whose GID \
            is ::ffff:VIP; destination GIDs in modify_qp and create_ah are translated vip→pip through the map \
            (iphunter's map in etcd at --etcd-endpoints, or --map FILE with lines `VIP PIP [NODE]` instead), \
            and the source is always the GID of --node-ip. Every \
            object belongs to the session that made it and is destroyed when that client disconnects or dies. \
            Each session runs on its own thread; a client that leaves replies unread for --reply-timeout is \
            disconnected and its objects destroyed. At start the router raises its open-file limit to the hard \
            limit and its locked-memory limit to unlimited (or the hard limit) and logs what it got. \
            SIGTERM or SIGINT stops accepting, closes every session (destroying its objects) and exits.
            """
    )

    @Option(name: .long, help: "RDMA device (default: the first one).")
    var device: String?

    @Flag(name: .customLong("fake-device"), help: "Serve an in-memory device instead of RDMA hardware (host tests of clients and the shim; data moves only between this router's own QPs).")
    var fakeDevice = false

    @Option(name: .long, help: "Port of the device.")
    var port: UInt8 = 1

    @Option(name: .customLong("node-ip"), help: "This node's IP: its RoCEv2 GID is the source of all traffic.")
    var nodeIP: String

    @Option(name: .customLong("socket-dir"), help: "Folder of the pod sockets.")
    var socketDirectory = "/run/freeflow"

    @Option(name: .customLong("pod"), help: "A pod served from the start, as NAME=VIP (repeatable; more can be added at runtime).")
    var pods: [String] = []

    @Option(
        name: .customLong("client-socket"),
        help: """
            The shared client socket (e.g. /run/freeflow/ffclient.sock, which the device plugin mounts into every \
            pod): each connection is served as the pod its process belongs to (peer pid → <proc-root>/PID/cgroup → \
            pod UID → that pod's vip on this node in the etcd map); others are refused with the reason. Needs the \
            etcd map (not --map).
            """
    )
    var clientSocket: String?

    @Option(name: .customLong("proc-root"), help: "Where the node's processes are, for --client-socket: /proc of the host's pid namespace (the router must share it: hostPID).")
    var procRoot = "/proc"

    @Option(name: .long, help: "vip→pip map file: lines `VIP PIP [NODE]`, # comments (instead of etcd's map).")
    var map: String?

    /// The vip map's source unless --map is given: iphunter's map in etcd.
    @OptionGroup
    var etcd: EtcdOptions

    @Option(name: .customLong("admin-socket"), help: "Admin socket for `ffctl router status` and `ffctl router pod` (root only; default: <socket-dir>/admin.sock).")
    var adminSocket: String?

    @Option(name: .customLong("reply-timeout"), help: "Seconds a client may leave its replies unread before it is disconnected and its objects destroyed.")
    var replyTimeout = 5.0

    @Option(name: .customLong("reply-queue"), help: "Replies a session queues (beyond its socket buffer) before it stops reading that client's requests.")
    var replyQueue = 64

    @Option(name: .customLong("max-connections-per-pod"), help: "Connections one pod may hold at once; more are refused (0: only descriptors limit them).")
    var maxConnectionsPerPod = 1024

    @Option(name: .customLong("max-pds"), help: "Per session: protection domains (more: ENOMEM).")
    var maxPDs = SessionLimits().pds

    @Option(name: .customLong("max-mrs"), help: "Per session: memory regions (more: ENOMEM).")
    var maxMRs = SessionLimits().mrs

    @Option(name: .customLong("max-comp-channels"), help: "Per session: completion channels (more: ENOMEM).")
    var maxCompChannels = SessionLimits().completionChannels

    @Option(name: .customLong("max-cqs"), help: "Per session: completion queues (more: ENOMEM).")
    var maxCQs = SessionLimits().cqs

    @Option(name: .customLong("max-qps"), help: "Per session: queue pairs (more: ENOMEM).")
    var maxQPs = SessionLimits().qps

    @Option(name: .customLong("max-srqs"), help: "Per session: shared receive queues (more: ENOMEM).")
    var maxSRQs = SessionLimits().srqs

    @Option(name: .customLong("max-ahs"), help: "Per session: address handles (more: ENOMEM).")
    var maxAHs = SessionLimits().ahs

    @Option(name: .customLong("max-descriptors"), help: "Per session: router file descriptors held, 2 per completion channel and a reg_mr's memfds until mapped (more: EMFILE). MRs hold none.")
    var maxDescriptors = SessionLimits().descriptors

    @Option(name: .customLong("max-pinned-bytes"), help: "Per session: bytes of registered memory, in whole pages, checked before pinning (more: ENOMEM).")
    var maxPinnedBytes = SessionLimits().pinnedBytes

    @Option(name: .customLong("max-work-requests"), help: "Per session: outstanding work requests, the sum of the queue depths of its QPs and SRQs (more: ENOMEM).")
    var maxWorkRequests = SessionLimits().workRequests

    @Option(name: .customLong("max-cq-entries"), help: "Per session: completion queue entries over all its CQs (more: ENOMEM).")
    var maxCQEntries = SessionLimits().cqEntries

    @Option(name: .customLong("datapath-threads"), help: "Threads that serve the shared-memory fast path (rings polled adaptively: spin while busy, sleep when idle); 0 turns the fast path off and every post and poll goes over the control socket.")
    var datapathThreads = 1

    @Option(name: .customLong("datapath-batch"), help: "Most work requests or completions a data-path thread moves for one ring per round (the fairness bound between sessions).")
    var datapathBatch = 32

    @Option(name: .customLong("datapath-spin-us"), help: "Microseconds a data-path thread keeps spinning after its last work before it starts yielding the CPU (0: never spins; for nodes where the applications' own polling leaves no core free).")
    var datapathSpinMicroseconds = 50

    @Option(name: .customLong("datapath-yield-us"), help: "Microseconds after its last work until a data-path thread sleeps on its doorbells (it yields the CPU between rounds until then); at least --datapath-spin-us.")
    var datapathYieldMicroseconds = 1000

    @Option(name: .customLong("datapath-realtime-priority"), help: "SCHED_FIFO priority (1-99) for the data-path threads, so that a post or completion wakes them at once even when the applications' polling keeps every core busy; needs CAP_SYS_NICE (without it a warning is logged and they stay ordinary). 0: ordinary scheduling. Use with --datapath-spin-us 0 --datapath-yield-us 0, so that a real-time thread never spins.")
    var datapathRealtimePriority: Int32 = 0

    @Option(name: .customLong("metrics-host"), help: "Address of the /metrics, /healthz and /readyz HTTP endpoint.")
    var metricsHost = "0.0.0.0"

    @Option(name: .customLong("metrics-port"), help: "Port of the /metrics, /healthz and /readyz HTTP endpoint (0: none).")
    var metricsPort = 9464

    @Option(name: .customLong("log-level"), help: "Log level.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        guard IPv4Address(nodeIP) != nil else { throw ValidationError("--node-ip \(nodeIP) is not an IPv4 address") }
        if map != nil, etcd.endpoints != nil {
            throw ValidationError("the vip map comes from --etcd-endpoints URLS or from --map FILE: give only one")
        }
        guard replyTimeout > 0, replyTimeout <= 3600 else { throw ValidationError("--reply-timeout \(replyTimeout): give 0 < seconds <= 3600") }
        guard (1...65536).contains(replyQueue) else { throw ValidationError("--reply-queue \(replyQueue): give 1...65536 replies") }
        guard (0...64).contains(datapathThreads) else { throw ValidationError("--datapath-threads \(datapathThreads): give 0...64") }
        guard (1...1024).contains(datapathBatch) else { throw ValidationError("--datapath-batch \(datapathBatch): give 1...1024") }
        guard (0...99).contains(datapathRealtimePriority) else {
            throw ValidationError("--datapath-realtime-priority \(datapathRealtimePriority): give 0 (ordinary) or a SCHED_FIFO priority 1...99")
        }
        guard (0...1_000_000).contains(datapathSpinMicroseconds) else {
            throw ValidationError("--datapath-spin-us \(datapathSpinMicroseconds): give 0...1000000 microseconds")
        }
        guard (datapathSpinMicroseconds...1_000_000).contains(datapathYieldMicroseconds) else {
            throw ValidationError("--datapath-yield-us \(datapathYieldMicroseconds): give --datapath-spin-us (\(datapathSpinMicroseconds))...1000000 microseconds")
        }
        guard maxConnectionsPerPod >= 0 else { throw ValidationError("--max-connections-per-pod \(maxConnectionsPerPod) is negative") }
        for (flag, value) in [("--max-pds", maxPDs), ("--max-mrs", maxMRs), ("--max-comp-channels", maxCompChannels), ("--max-cqs", maxCQs),
                              ("--max-qps", maxQPs), ("--max-srqs", maxSRQs), ("--max-ahs", maxAHs), ("--max-descriptors", maxDescriptors)]
            where value < 0 {
            throw ValidationError("\(flag) \(value) is negative")
        }
        if map != nil, etcd.root != MapSchema.v1.root {
            throw ValidationError("--root sets the etcd map prefix; it has no meaning with --map FILE")
        }
        if clientSocket != nil, map != nil {
            throw ValidationError(
                "--client-socket identifies pods by their UID in iphunter's map in etcd: a --map file has no pod UIDs"
            )
        }
        if let clientSocket, !clientSocket.hasPrefix("/") { throw ValidationError("--client-socket \(clientSocket): give an absolute path") }
        for pod in pods where PodDeclaration(argument: pod) == nil {
            throw ValidationError("--pod \(pod): expected NAME=VIP, e.g. web-0=10.244.1.7")
        }
    }

    func run() async throws {
        let registry = DaemonBootstrap.start(logLevel: logLevel)
        let logger = Logger(label: "ffrouter")
        let limits = RouterStatus.Limits.raiseForRouter()
        logger.info("process limits", metadata: [
            "open_files": "\(ResourceLimits.describe(limits.openFiles.soft)) (\(limits.openFiles.note))",
            "locked_memory": "\(ResourceLimits.describe(limits.lockedMemory.soft)) (\(limits.lockedMemory.note))",
        ])
        let vipMap: any VipResolver
        var etcdMap: EtcdVipMap?
        var etcdClient: EtcdClient?
        if let map {
            vipMap = try StaticVipMap(path: map)
        } else {
            let client = try EtcdClient(etcd.configuration(), logger: logger)
            etcdClient = client
            let mirror = MapMirror(client: client, schema: etcd.schema, logger: logger)
            etcdMap = EtcdVipMap(mirror: mirror, endpoints: etcd.endpointList())
            vipMap = etcdMap!
        }
        let node: any VerbsBackend = fakeDevice
            ? FakeBackend(name: device ?? "fake0", nodeIP: IPv4Address(nodeIP)!)
            : try NodeDevice(deviceName: device, port: port, nodeIP: IPv4Address(nodeIP)!)
        let options = RouterOptions(replyTimeoutMilliseconds: Int(replyTimeout * 1000), replyQueueDepth: replyQueue,
                                    maxConnectionsPerPod: maxConnectionsPerPod, limits: limits,
                                    clientSocket: clientSocket.flatMap { path in etcdMap.map { ClientSocketOptions(path: path, procRoot: procRoot, directory: $0) } })
        var sessionLimits = SessionLimits()
        sessionLimits.pds = maxPDs
        sessionLimits.mrs = maxMRs
        sessionLimits.completionChannels = maxCompChannels
        sessionLimits.cqs = maxCQs
        sessionLimits.qps = maxQPs
        sessionLimits.srqs = maxSRQs
        sessionLimits.ahs = maxAHs
        sessionLimits.descriptors = maxDescriptors
        sessionLimits.pinnedBytes = maxPinnedBytes
        sessionLimits.workRequests = maxWorkRequests
        sessionLimits.cqEntries = maxCQEntries
        logger.info("session limits", metadata: ["limits": "\(sessionLimits)"])
        let tuning = DataPathTuning(threads: datapathThreads, batch: datapathBatch, spinNanoseconds: UInt64(datapathSpinMicroseconds) * 1000,
                                    yieldNanoseconds: UInt64(datapathYieldMicroseconds) * 1000, realtimePriority: datapathRealtimePriority)
        let router = Router(backend: node, map: vipMap, socketDirectory: socketDirectory,
                            pods: pods.compactMap(PodDeclaration.init(argument:)), logger: logger, options: options, limits: sessionLimits,
                            dataPath: datapathThreads == 0 ? nil : DataPath(backend: node, tuning: tuning, logger: logger))
        let admin = AdminServer(path: adminSocket ?? "\(socketDirectory)/admin.sock", router: router, logger: logger)
        var services: [any Service] = [RouterService(router: router, admin: admin, etcdMap: etcdMap)]
        if metricsPort != 0 {
            // Ready and healthy are one answer: the port is active and the map has been loaded (docs/router.md).
            let ready: @Sendable () async -> MetricsEndpoint.Health = { [vipMap] in
                let (portActive, detail) = router.health()
                guard vipMap.isReady else {
                    return MetricsEndpoint.Health(healthy: false, detail: "map not listed from etcd yet (translations answer EAGAIN until then), \(detail)")
                }
                return MetricsEndpoint.Health(healthy: portActive, detail: detail)
            }
            services.append(MetricsEndpoint.makeApplication(
                registry: registry, host: metricsHost, port: metricsPort, logger: logger,
                beforeScrape: { router.metrics.update(from: router.status) },
                readiness: ready, health: ready))
        }
        let group = ServiceGroup(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        do {
            try await group.run()
        } catch {
            try? await etcdClient?.shutdown()
            throw error
        }
        // AsyncHTTPClient must be shut down before it is released.
        try await etcdClient?.shutdown()
        logger.info("stopped")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The router, its admin socket and the etcd map mirror as one service: graceful shutdown cancels both, which closes every
/// session and removes the sockets.
struct RouterService: Service {
    let router: Router
    let admin: AdminServer
    let etcdMap: EtcdVipMap?

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await router.run() }
                group.addTask { try await admin.run() }
                if let etcdMap { group.addTask { await etcdMap.run() } }
            }
        }
    }
}
