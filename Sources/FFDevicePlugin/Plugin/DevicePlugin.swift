import DevicePluginAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// The device plugin as a service: writes the CDI spec, serves the `DevicePlugin` service on its socket in the
/// kubelet's folder, registers with the kubelet, and keeps the devices' health current. When the kubelet restarts it
/// deletes every socket in the folder and creates `kubelet.sock` anew; the plugin sees its own socket gone or
/// `kubelet.sock` replaced, and serves and registers again. Cancellation (SIGTERM through the service group) removes
/// its socket.
public struct DevicePlugin: Service {
    /// What is advertised and handed out.
    public let configuration: PluginConfiguration
    /// The devices' health, as `ListAndWatch` streams it.
    public let health: DeviceHealth
    private let healthSource: @Sendable () async -> DeviceHealth.State
    private let healthInterval: Duration
    private let watchInterval: Duration
    private let logger: Logger

    /// A plugin for `configuration` whose health `healthSource` tells, checked every `healthInterval`; the sockets are
    /// checked for a kubelet restart every `watchInterval`.
    public init(configuration: PluginConfiguration, healthInterval: Duration = .seconds(5),
                watchInterval: Duration = .seconds(1),
                logger: Logger, healthSource: @escaping @Sendable () async -> DeviceHealth.State) {
        self.configuration = configuration
        self.health = DeviceHealth()
        self.healthSource = healthSource
        self.healthInterval = healthInterval
        self.watchInterval = watchInterval
        self.logger = logger
    }

    /// Serves until cancelled. Throws at once if the kubelet's folder is missing: the kubelet creates it when it
    /// starts, so a missing one means a wrong `--plugin-dir` or a host path not mounted into the container, and the
    /// server transport would only say that it stopped.
    public func run() async throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: configuration.pluginDirectory, isDirectory: &isDirectory),
              isDirectory.boolValue else {
            throw DevicePluginError(description: "the kubelet's device-plugin folder \(configuration.pluginDirectory) "
                                    + "does not exist (is --plugin-dir the kubelet's device-plugins folder, "
                                    + "mounted into this container?)")
        }
        if let directory = configuration.cdiDirectory {
            let spec = CDISpec(configuration: configuration)
            try spec.write(to: directory)
            logger.info("CDI spec written", metadata: ["path": "\(spec.path(in: directory))",
                                                       "devices": "\(spec.devices.count)"])
        }
        defer { unlink(configuration.socketPath) }
        // Checked once before serving, so the first list the kubelet sees is the real state; the monitor goes on from
        // there.
        await health.update(healthSource())
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await health.monitor(every: healthInterval, healthSource) }
                    group.addTask {
                        while !Task.isCancelled {
                            try await serveOnce()
                            logger.debug("plugin socket closed")
                        }
                    }
                }
            }
        } catch is CancellationError {
            logger.info("device plugin stopping")
        }
    }

    /// One life of the plugin socket: serve, register, and return once the kubelet restarted (or on cancellation).
    private func serveOnce() async throws {
        unlink(configuration.socketPath)
        let transport = HTTP2ServerTransport.Posix(address: .unixDomainSocket(path: configuration.socketPath),
                                                   transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [DevicePluginService(configuration: configuration,
            health: health, logger: logger)])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await server.serve()
                } catch where Task.isCancelled {
                    // This life ended (the server reports its cancellation as a transport error): not a failure.
                }
            }
            // Ending this life cancels the server, and with it the ListAndWatch streams of the kubelet that went away
            // (a graceful shutdown would wait for them: they last as long as the plugin).
            defer { group.cancelAll() }
            _ = try await transport.listeningAddress
            logger.debug("serving", metadata: ["socket": "\(configuration.socketPath)"])
            let ours = FileIdentity(configuration.socketPath)
            let kubelet = try await register()
            while !Task.isCancelled {
                try? await Task.sleep(for: watchInterval)
                let socketNow = FileIdentity(configuration.socketPath),
                    kubeletNow = FileIdentity(configuration.kubeletSocket)
                if socketNow != ours || kubeletNow != kubelet {
                    logger.notice("the kubelet restarted; serving and registering again", metadata: [
                        "plugin_socket": "\(socketNow == nil ? "deleted" : socketNow == ours ? "kept" : "replaced")",
                        "kubelet_socket": "\(kubeletNow == nil ? "deleted" : "recreated")"])
                    return
                }
            }
        }
    }

    /// Registers with the kubelet, retrying while it cannot be reached; returns the identity of the `kubelet.sock` it
    /// registered on. A refusal by a running kubelet (an unsupported version, a resource taken) is thrown: the plugin
    /// then stops, as the API expects.
    private func register() async throws -> FileIdentity? {
        let request = V1beta1_RegisterRequest.with {
            $0.version = PluginConfiguration.apiVersion
            $0.endpoint = configuration.endpoint
            $0.resourceName = configuration.resourceName
            $0.options = .with { $0.getPreferredAllocationAvailable = true }
        }
        var delay = Duration.milliseconds(100)
        while true {
            try Task.checkCancellation()
            let identity = FileIdentity(configuration.kubeletSocket)
            do {
                let transport = try HTTP2ClientTransport.Posix(
                    target: .unixDomainSocket(path: configuration.kubeletSocket), transportSecurity: .plaintext)
                try await withGRPCClient(transport: transport) { client in
                    _ = try await V1beta1_Registration.Client(wrapping: client).register(request)
                }
                logger.info("registered with the kubelet", metadata: ["resource": "\(configuration.resourceName)",
                                                                      "endpoint": "\(configuration.endpoint)",
                                                                     "kubelet": "\(configuration.kubeletSocket)"])
                return identity
            } catch let error as RPCError where error.code != .unavailable && error.code != .deadlineExceeded {
                logger.error("the kubelet refused the registration", metadata: ["error": "\(error)"])
                throw error
            } catch {
                logger.warning("kubelet not reachable; retrying",
                               metadata: ["socket": "\(configuration.kubeletSocket)", "error": "\(error)",
                                                                             "retry_in": "\(delay)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}

/// Which file a path names (device and inode), to tell a socket recreated under the same name.
struct FileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64

    init?(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }
}

/// Why the device plugin cannot start, in words an operator can act on.
public struct DevicePluginError: Error, CustomStringConvertible {
    /// What is wrong and what to check.
    public let description: String
}
