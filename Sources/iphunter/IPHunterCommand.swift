import ArgumentParser
import Etcd
import FFCommandLine
import FFOperations
import Foundation
import IPHunter
import Logging
import ServiceLifecycle

/// `iphunter`: publishes where every pod lives (vip→pip) into etcd for the FreeFlow routers.
@main
struct IPHunterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iphunter",
        abstract: "Watch pods and nodes in Kubernetes and publish the FreeFlow vip→pip map to etcd.",
        discussion: "See docs/iphunter.md for RBAC, metrics and leader election."
    )

    @OptionGroup
    var etcd: EtcdOptions

    @Option(help: "kubeconfig to use outside a cluster (default: $KUBECONFIG, else in-cluster config).")
    var kubeconfig: String?
    @Option(help: "kubeconfig context (default: current-context).")
    var context: String?
    @Option(help: "API server URL, overriding kubeconfig and in-cluster config.")
    var apiServer: String?
    @Option(help: "Bearer token file for --api-server.")
    var tokenFile: String?
    @Option(help: "CA file for --api-server.")
    var caFile: String?

    @Option(help: "Only publish pods matching this label selector (default: all pods of all namespaces).")
    var labelSelector: String?
    @Flag(help: "Write without leader election (only with a single replica).")
    var noLeaderElection = false
    @Option(help: "Leader lease TTL in seconds: how long a crashed leader blocks the others.")
    var leaseTTL: Int64 = 10
    @Option(help: "This replica's name in the leader key (default: $POD_NAME, else the host name).")
    var identity: String?
    @Option(help: "Seconds between full reconciliations without a relist.")
    var resyncSeconds = 600

    @Option(help: "Address for /metrics and /healthz.")
    var listenHost = "0.0.0.0"
    @Option(help: "Port for /metrics and /healthz.")
    var listenPort = 9102
    @Option(help: "Log level.")
    var logLevel: Logger.Level = .info

    func kubeConfiguration() throws -> KubeConfiguration {
        if let apiServer {
            var config = KubeConfiguration(server: apiServer, tokenFile: tokenFile, caFile: caFile)
            config.server = apiServer
            return config
        }
        if let path = kubeconfig
            ?? ProcessInfo.processInfo.environment["KUBECONFIG"]?.split(separator: ":").first.map(String.init) {
            return try KubeConfigFile.load(path: path, context: context)
        }
        return try KubeConfiguration.inCluster()
    }

    func run() async throws {
        let registry = DaemonBootstrap.start(logLevel: logLevel)
        let logger = Logger(label: "iphunter")

        // Configuration errors first, before any client exists that would need a shutdown.
        let kubeConfig = try kubeConfiguration()
        let kube = try KubeClient(kubeConfig, logger: logger)
        let etcdClient: EtcdClient
        do {
            etcdClient = try EtcdClient(etcd.configuration(), logger: logger)
        } catch {
            try? await kube.shutdown()
            throw error
        }
        var options = IPHunterOptions()
        options.schema = etcd.schema
        options.labelSelector = labelSelector
        options.leaderElection = !noLeaderElection
        options.leaseTTL = leaseTTL
        options.identity = identity ?? ProcessInfo.processInfo.environment["POD_NAME"]
            ?? ProcessInfo.processInfo.hostName
        options.resyncInterval = .seconds(resyncSeconds)
        let hunter = IPHunter(kube: kube, etcd: etcdClient, options: options, logger: logger)
        let http = HunterHTTP.makeApplication(hunter: hunter, registry: registry, host: listenHost, port: listenPort,
                                              logger: logger)
        logger.notice("starting", metadata: [
            "etcd": "\(etcd.endpointList())", "api_server": "\(kube.configuration.server)",
            "identity": "\(options.identity)",
            "leader_election": "\(options.leaderElection)", "listen": "\(listenHost):\(listenPort)",
        ])
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: HunterService(hunter: hunter),
                             successTerminationBehavior: .gracefullyShutdownGroup), .init(service: http)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error", metadata: ["error": "\(error)"])
        }
        try? await kube.shutdown()
        try? await etcdClient.shutdown()
        logger.notice("stopped")
    }
}

/// Runs the hunter as a Service: SIGTERM cancels it, and the leader resigns on the way out.
struct HunterService: Service {
    let hunter: IPHunter
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await hunter.run()
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
