/// How the device plugin advertises FreeFlow's virtual RDMA device and what it puts into the containers that get one.
public struct PluginConfiguration: Sendable, Equatable {
    /// How the shim reaches the application.
    public enum ShimMode: String, Sendable, CaseIterable {
        /// `LD_PRELOAD=<shim dir>/libffclient.so`: intercepts the verbs calls of dynamically linked binaries.
        case preload
        /// `LD_LIBRARY_PATH=<shim dir>`: the drop-in `libibverbs.so.1` found first, also by `dlopen`/`dlvsym`.
        case dropIn = "drop-in"
    }

    /// The extended resource pods ask for in `resources.limits`.
    public var resourceName = "freeflow.io/vrdma"
    /// How many containers of the node may hold one at a time.
    public var deviceCount = 16
    /// The kubelet's device-plugin folder: `kubelet.sock` is there and the plugin's own socket goes there too.
    public var pluginDirectory = "/var/lib/kubelet/device-plugins"
    /// The plugin socket's file name in `pluginDirectory`.
    public var endpoint = "freeflow-vrdma.sock"
    /// The router's client socket on the node.
    public var routerSocket = "/run/freeflow/ffclient.sock"
    /// Where a container finds the router socket (and `FFCLIENT_SOCKET` points).
    public var containerSocket = "/run/freeflow/ffclient.sock"
    /// The folder holding the shim on the node: `libffclient.so`, the drop-in `libibverbs.so.1` and its
    /// `librdmacm.so.1` link, as `scripts/shim-install` lays them out.
    public var shimDirectory = "/opt/freeflow/lib"
    /// Where a container finds that folder.
    public var containerShimDirectory = "/opt/freeflow/lib"
    /// How the shim is loaded.
    public var shimMode = ShimMode.dropIn
    /// Where the CDI spec is written (nil: no CDI spec, no `cdi_devices`).
    public var cdiDirectory: String? = "/var/run/cdi"

    /// The defaults above.
    public init() {}

    /// The device-plugin API version this plugin speaks.
    public static let apiVersion = "v1beta1"

    /// The ids of the advertised devices: `vrdma-0` … `vrdma-<count-1>`.
    public var deviceIDs: [String] { (0..<max(0, deviceCount)).map { "vrdma-\($0)" } }

    /// The plugin socket's path.
    public var socketPath: String { "\(pluginDirectory)/\(endpoint)" }

    /// The kubelet's registration socket.
    public var kubeletSocket: String { "\(pluginDirectory)/kubelet.sock" }
}
