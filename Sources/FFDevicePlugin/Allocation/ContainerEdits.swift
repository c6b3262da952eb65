/// What a container gets for its virtual RDMA devices, independent of how it is delivered (the kubelet's
/// `ContainerAllocateResponse` or a CDI spec's `containerEdits`): the router socket and the shim as mounts, and the
/// environment that loads the shim and finds the router.
public struct ContainerEdits: Sendable, Equatable {
    /// A bind mount.
    public struct Mount: Sendable, Equatable {
        /// Path on the node.
        public var hostPath: String
        /// Path in the container.
        public var containerPath: String
        /// Mounted read-only.
        public var readOnly: Bool
    }

    /// An environment variable.
    public struct Variable: Sendable, Equatable {
        /// Its name.
        public var name: String
        /// Its value.
        public var value: String
    }

    /// Environment variables, sorted by name.
    public var environment: [Variable]
    /// Mounts.
    public var mounts: [Mount]

    /// The edits for a container that holds `devices`.
    public init(for devices: [String], configuration c: PluginConfiguration) {
        var env: [String: String] = [
            "FFCLIENT_SOCKET": c.containerSocket,
            "FREEFLOW_VRDMA_DEVICES": devices.joined(separator: ","),
        ]
        switch c.shimMode {
        case .preload: env["LD_PRELOAD"] = "\(c.containerShimDirectory)/libffclient.so"
        case .dropIn: env["LD_LIBRARY_PATH"] = c.containerShimDirectory
        }
        environment = env.sorted { $0.key < $1.key }.map { Variable(name: $0.key, value: $0.value) }
        mounts = [Mount(hostPath: c.routerSocket, containerPath: c.containerSocket, readOnly: false),
                  Mount(hostPath: c.shimDirectory, containerPath: c.containerShimDirectory, readOnly: true)]
    }
}
