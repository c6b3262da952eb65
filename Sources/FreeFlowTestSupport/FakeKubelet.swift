import DevicePluginAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

/// A kubelet as a device plugin sees it, for tests and the demo: the `Registration` service on `<folder>/kubelet.sock`,
/// and, after each registration, what the kubelet then does itself: it dials the plugin's endpoint, asks for its
/// options and follows its `ListAndWatch` stream. `restart()` behaves like a kubelet restart: it stops serving, deletes
/// every socket in the folder (the plugin's too) and serves on a new `kubelet.sock`. Tests call `Allocate` and
/// `GetPreferredAllocation` through `plugin()`, as the kubelet would when a container starts.
public final class FakeKubelet: Sendable {
    /// The device-plugin folder.
    public let directory: String

    private struct State {
        var registrations: [V1beta1_RegisterRequest] = []
        var options: [V1beta1_DevicePluginOptions] = []
        var lists: [[V1beta1_Device]] = []
        var server: GRPCServer<HTTP2ServerTransport.Posix>?
        var tasks: [Task<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// A kubelet whose folder is `directory` (created if needed).
    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// The registration socket.
    public var socketPath: String { "\(directory)/kubelet.sock" }

    /// Every registration so far, oldest first.
    public var registrations: [V1beta1_RegisterRequest] { state.withLock { $0.registrations } }

    /// The options each registered plugin gave.
    public var options: [V1beta1_DevicePluginOptions] { state.withLock { $0.options } }

    /// Every device list the plugins streamed, oldest first.
    public var deviceLists: [[V1beta1_Device]] { state.withLock { $0.lists } }

    /// Starts serving `kubelet.sock`; returns once it listens.
    public func start() async throws {
        unlink(socketPath)
        let transport = HTTP2ServerTransport.Posix(address: .unixDomainSocket(path: socketPath),
                                                   transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [RegistrationService(kubelet: self)])
        let task = Task<Void, Never> {
            try? await server.serve()
        }
        state.withLock {
            $0.server = server
            $0.tasks.append(task)
        }
        _ = try await transport.listeningAddress
    }

    /// Stops serving and following plugins, deleting `kubelet.sock`.
    public func stop() async {
        let (server, tasks) = state.withLock { s in
            defer { s.server = nil; s.tasks = [] }
            return (s.server, s.tasks)
        }
        server?.beginGracefulShutdown()
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        unlink(socketPath)
    }

    /// Restarts like a kubelet: stops, deletes every socket in the folder, and serves a new `kubelet.sock`.
    public func restart() async throws {
        await stop()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory))
            ?? [] where name.hasSuffix(".sock") {
            unlink("\(directory)/\(name)")
        }
        try await start()
    }

    /// Calls the plugin that registered last, as the kubelet does, with a client on its socket.
    public func plugin<Result: Sendable>(
        _ body: @Sendable (V1beta1_DevicePlugin.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        guard let endpoint = registrations.last?.endpoint else {
            throw RPCError(code: .failedPrecondition, message: "no plugin registered")
        }
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: "\(directory)/\(endpoint)"),
                                                       transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(V1beta1_DevicePlugin.Client(wrapping: client))
        }
    }

    fileprivate func registered(_ request: V1beta1_RegisterRequest) {
        state.withLock { $0.registrations.append(request) }
        let task = Task<Void, Never> {
            // The kubelet asks for the options, then follows the device list for as long as the plugin serves.
            _ = try? await plugin { plugin in
                let options = try await plugin.getDevicePluginOptions(V1beta1_Empty())
                self.state.withLock { $0.options.append(options) }
                try await plugin.listAndWatch(V1beta1_Empty()) { response in
                    for try await list in response.messages {
                        self.state.withLock { $0.lists.append(list.devices) }
                    }
                }
            }
        }
        state.withLock { $0.tasks.append(task) }
    }
}

private struct RegistrationService: V1beta1_Registration.SimpleServiceProtocol {
    let kubelet: FakeKubelet

    func register(request: V1beta1_RegisterRequest, context: ServerContext) async throws -> V1beta1_Empty {
        guard request.version == "v1beta1" else {
            throw RPCError(code: .invalidArgument,
                           message: "device plugin API version \(request.version) is not supported (v1beta1 is)")
        }
        kubelet.registered(request)
        return V1beta1_Empty()
    }
}
