import ArgumentParser
import Dispatch
import FFDevicePlugin
import FFOperations
import FFRouterAPI
import Logging
import ServiceLifecycle

/// `ffdevice-plugin`: the kubelet device plugin for FreeFlow's virtual RDMA device.
@main
struct DevicePluginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffdevice-plugin",
        abstract: "Advertise FreeFlow's virtual RDMA device to the kubelet and hand containers the router socket and "
                + "the shim.",
        discussion: """
            Runs next to ffrouter on every node. Serves the kubelet device-plugin API v1beta1 on \
            <plugin-dir>/<endpoint>, registers with <plugin-dir>/kubelet.sock and advertises --devices devices of \
            --resource-name; a pod asks for one with `resources.limits: freeflow.io/vrdma: 1`. Allocate mounts the \
            router's client socket and the shim folder into the container and sets FFCLIENT_SOCKET and LD_LIBRARY_PATH \
            (drop-in) or LD_PRELOAD (preload); it also names CDI devices, whose spec is written to --cdi-dir for \
            runtimes that resolve CDI. The devices are healthy while the router answers on --admin-socket and its port \
            is active. When the kubelet restarts, the plugin serves and registers again. SIGTERM or SIGINT removes its \
            socket and exits.
            """
    )

    @Option(name: .customLong("resource-name"), help: "The extended resource advertised.")
    var resourceName = PluginConfiguration().resourceName

    @Option(help: "How many containers of this node may hold the resource at once.")
    var devices = PluginConfiguration().deviceCount

    @Option(name: .customLong("plugin-dir"), help: "The kubelet's device-plugin folder (kubelet.sock is there).")
    var pluginDirectory = PluginConfiguration().pluginDirectory

    @Option(help: "File name of this plugin's socket in --plugin-dir.")
    var endpoint = PluginConfiguration().endpoint

    @Option(name: .customLong("router-socket"),
            help: "The router's client socket on the node, mounted into containers.")
    var routerSocket = PluginConfiguration().routerSocket

    @Option(name: .customLong("container-socket"), help: "Where containers find the router socket (FFCLIENT_SOCKET).")
    var containerSocket = PluginConfiguration().containerSocket

    @Option(name: .customLong("shim-dir"),
            help: "The node's folder holding libffclient.so and libibverbs.so.1 (scripts/shim-install DIR).")
    var shimDirectory = PluginConfiguration().shimDirectory

    @Option(name: .customLong("container-shim-dir"), help: "Where containers find the shim folder.")
    var containerShimDirectory = PluginConfiguration().containerShimDirectory

    @Option(name: .customLong("shim-mode"),
            help: "How the shim is loaded: drop-in (LD_LIBRARY_PATH, also for dlopen) or preload (LD_PRELOAD).")
    var shimMode = PluginConfiguration.ShimMode.dropIn

    @Option(name: .customLong("cdi-dir"), help: "Folder for the CDI spec (empty: write none and name no CDI devices).")
    var cdiDirectory = PluginConfiguration().cdiDirectory ?? ""

    @Option(name: .customLong("admin-socket"), help: "The router's admin socket, asked for the device's health.")
    var adminSocket = "/run/freeflow/admin.sock"

    @Option(name: .customLong("health-interval"), help: "Seconds between health checks.")
    var healthInterval = 5.0

    @Option(name: .customLong("log-level"), help: "Log level.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        guard devices > 0, devices <= 1024 else { throw ValidationError("--devices \(devices): give 1...1024") }
        guard healthInterval > 0, healthInterval <= 3600 else {
            throw ValidationError("--health-interval \(healthInterval): give 0 < seconds <= 3600")
        }
        guard resourceName.split(separator: "/").count == 2 else {
            throw ValidationError("--resource-name \(resourceName): expected vendor-domain/resource, e.g. "
                                + "freeflow.io/vrdma")
        }
        guard !endpoint.contains("/"), !endpoint.isEmpty else {
            throw ValidationError("--endpoint \(endpoint): a file name, not a path")
        }
    }

    func run() async throws {
        // The daemons' one logging set-up (its metrics registry is not served: the plugin has no metrics endpoint).
        _ = DaemonBootstrap.start(logLevel: logLevel)
        let logger = Logger(label: "ffdevice-plugin")
        var configuration = PluginConfiguration()
        configuration.resourceName = resourceName
        configuration.deviceCount = devices
        configuration.pluginDirectory = pluginDirectory
        configuration.endpoint = endpoint
        configuration.routerSocket = routerSocket
        configuration.containerSocket = containerSocket
        configuration.shimDirectory = shimDirectory
        configuration.containerShimDirectory = containerShimDirectory
        configuration.shimMode = shimMode
        configuration.cdiDirectory = cdiDirectory.isEmpty ? nil : cdiDirectory
        let admin = AdminClient(path: adminSocket, timeoutMilliseconds: 5000)
        let plugin = DevicePlugin(configuration: configuration,
                                  healthInterval: .milliseconds(Int64(healthInterval * 1000)), logger: logger) {
            // The admin call blocks (a socket read with a deadline), so it runs on a Dispatch thread, never on the
            // cooperative pool.
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    do {
                        let status = try admin.status()
                        continuation.resume(returning: DeviceHealth.State(healthy: status.portActive,
                            detail: status.portState))
                    } catch {
                        continuation.resume(returning: DeviceHealth.State(healthy: false,
                            detail: "router not answering on \(adminSocket): \(error)"))
                    }
                }
            }
        }
        let group = ServiceGroup(services: [plugin], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        logger.info("stopped")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension PluginConfiguration.ShimMode: ExpressibleByArgument {}
