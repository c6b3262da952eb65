// swift-tools-version:6.1
import PackageDescription

/// The package root, for linker flags that name files in it (SwiftPM does not fix the linker's directory).
let packageRoot = String(#filePath.dropLast("Package.swift".count))

let package = Package(
    name: "FreeFlow",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Verbs", targets: ["Verbs"]),
        .library(name: "FFProtocol", targets: ["FFProtocol"]),
        .library(name: "FFClient", targets: ["FFClient"]),
        .library(name: "Etcd", targets: ["Etcd"]),
        .library(name: "IPHunter", targets: ["IPHunter"]),
        // libffclient.so: the verbs C API over the router, for LD_PRELOAD (docs/shim.md).
        .library(name: "ffclient", type: .dynamic, targets: ["FFClientShim"]),
        // The same library with SONAME libibverbs.so.1, installed as libibverbs.so.1 for drop-in use.
        .library(name: "ffclient-dropin", type: .dynamic, targets: ["CFFClientDropIn"]),
        .executable(name: "ffctl", targets: ["ffctl"]),
        .executable(name: "ffrouter", targets: ["ffrouter"]),
        .executable(name: "iphunter", targets: ["iphunter"]),
        .executable(name: "ffdevice-plugin", targets: ["ffdevice-plugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // libibverbs and librdmacm, found through pkg-config; shim.h wraps what Swift cannot import.
        .systemLibrary(
            name: "CVerbs",
            pkgConfig: "libibverbs librdmacm",
            providers: [.apt(["libibverbs-dev", "librdmacm-dev"])]
        ),
        // System calls shared by the router and the client: Unix SEQPACKET sockets with SCM_RIGHTS,
        // memfd mappings, waiting for a descriptor from async code.
        .systemLibrary(name: "CFFSystem"),
        .target(name: "FFSystem", dependencies: ["CFFSystem"]),
        .target(name: "Verbs", dependencies: ["CVerbs", "FFSystem"]),
        // The client/router wire format: no dependencies, no I/O.
        .target(name: "FFProtocol"),
        // The Swift core of libffclient: a session with the router, one generic call(_:) per WireRequest.
        .target(name: "FFClient", dependencies: ["FFProtocol", "FFSystem"]),
        // libffclient's exported C layer: libibverbs' API and object layout; calls FFClientShim for the router.
        .target(name: "CFFClientShim", exclude: ["libibverbs.map"]),
        // libffclient's Swift side: sessions with the router behind the C layer's bridge table.
        .target(
            name: "FFClientShim",
            dependencies: ["CFFClientShim", "FFClient", "FFProtocol", "FFSystem"],
            // The Swift runtime linked in (no libswiftCore.so in a pod, and none of its signal handlers in the
            // host program); exports limited to libibverbs' names, at Debian's version nodes.
            linkerSettings: [.unsafeFlags([
                "-static-stdlib",
                "-Xlinker", "--version-script=\(packageRoot)Sources/CFFClientShim/libibverbs.map",
            ])]
        ),
        // Only the drop-in's SONAME.
        .target(
            name: "CFFClientDropIn",
            dependencies: ["FFClientShim"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libibverbs.so.1"])]
        ),
        // etcd v3 client over the JSON gateway, the FreeFlow map schema and the map mirror.
        .target(
            name: "Etcd",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HashTreeCollections", package: "swift-collections"),
            ]
        ),
        // The router's admin API (requests, answers, status) and its client: what ffctl and the device plugin
        // need of the router, without the router or libibverbs.
        .target(name: "FFRouterAPI", dependencies: ["FFSystem"]),
        // What the command lines of ffctl, iphunter and ffrouter share: the etcd connection options, one spelling each.
        .target(
            name: "FFCommandLine",
            dependencies: ["Etcd", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The per-node router: sessions, ownership, vip translation, on the real device.
        .target(
            name: "FFRouter",
            dependencies: [
                "Verbs", "FFProtocol", "FFSystem", "Etcd", "FFRouterAPI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The in-memory verbs device of `ffrouter --fake-device`, host tests and benchmarks: an implementation of the
        // router's public backend protocols from outside the router's module, so the production router carries no fake.
        .target(name: "FFFakeDevice", dependencies: ["FFRouter", "Verbs", "FFProtocol", "FFSystem"]),
        // What every daemon exposes for operations: Prometheus /metrics, /healthz and /readyz over HTTP.
        .target(
            name: "FFOperations",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The kubelet device-plugin API v1beta1: Swift code generated from Protos/ by scripts/generate-protos and
        // committed, so that a build never runs protoc.
        .target(
            name: "DevicePluginAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The device plugin: advertises freeflow.io/vrdma to the kubelet and hands containers the router socket and the shim.
        .target(
            name: "FFDevicePlugin",
            dependencies: [
                "DevicePluginAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "ffdevice-plugin",
            dependencies: [
                "FFDevicePlugin",
                "FFRouterAPI",
                "FFOperations",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Kubernetes list+watch, reconciliation into etcd, leader election.
        .target(
            name: "IPHunter",
            dependencies: [
                "Etcd",
                "FFOperations",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .executableTarget(
            name: "ffrouter",
            dependencies: [
                "FFRouter",
                "FFFakeDevice",
                "FFRouterAPI",
                "FFOperations",
                "Etcd",
                "FFCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "iphunter",
            dependencies: [
                "IPHunter",
                "Etcd",
                "FFCommandLine",
                "FFOperations",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "ffctl",
            dependencies: [
                "Verbs",
                "FFRouterAPI",
                "FFClient",
                "Etcd",
                "FFCommandLine",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks for the map (not part of `swift test`; run scripts/bench-map).
        .executableTarget(
            name: "ffbench-map",
            dependencies: [
                "Etcd", "IPHunter", "FreeFlowTestSupport",
                .product(name: "HashTreeCollections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Benchmarks of the shared-memory fast path (not part of `swift test`; run scripts/bench-datapath).
        .executableTarget(
            name: "ffbench-datapath",
            dependencies: [
                "FFRouter", "FFFakeDevice", "FFClient", "FFProtocol", "FFSystem", "CAllocationCounter",
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The fake API server and fake kubelet as processes, for scripts/demo (not shipped).
        .executableTarget(
            name: "ffdemo",
            dependencies: [
                "FreeFlowTestSupport", "DevicePluginAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Test and benchmark support, never in a shipped binary: a counting front for glibc's malloc, so a test can
        // assert that a thread's steady-state loop (the router's data path) allocates nothing.
        .target(name: "CAllocationCounter"),
        // Real etcd processes, a fake Kubernetes API server and a fake kubelet for tests, benchmarks and the demo.
        .target(
            name: "FreeFlowTestSupport",
            dependencies: [
                "DevicePluginAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "VerbsTests", dependencies: ["Verbs"]),
        // Golden/: the wire bytes recorded before a refactoring, read by WireGoldenTests.
        .testTarget(name: "FFProtocolTests", dependencies: ["FFProtocol", "FreeFlowTestSupport"], exclude: ["Golden"]),
        .testTarget(name: "FFSystemTests", dependencies: ["FFSystem"]),
        .testTarget(name: "FFClientTests", dependencies: ["FFClient", "FFProtocol", "FFSystem"]),
        .testTarget(
            name: "FFRouterTests",
            dependencies: ["FFRouter", "FFFakeDevice", "FFRouterAPI", "FFClient", "FFProtocol", "FFSystem", "Verbs",
                           "Etcd", "FreeFlowTestSupport", "CAllocationCounter"]
        ),
        // Stock binaries (ibv_devinfo, pingpongs) through libffclient against `ffrouter --fake-device`.
        .testTarget(name: "FFClientShimTests", dependencies: ["FreeFlowTestSupport"], exclude: ["Programs"]),
        .testTarget(name: "EtcdTests", dependencies: ["Etcd", "FreeFlowTestSupport"]),
        .testTarget(name: "FFCommandLineTests", dependencies: ["FFCommandLine", "Etcd"]),
        .testTarget(
            name: "FFDevicePluginTests",
            dependencies: [
                "FFDevicePlugin", "DevicePluginAPI", "FreeFlowTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(
            name: "FFOperationsTests",
            dependencies: [
                "FFOperations",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "IPHunterTests",
            dependencies: [
                "IPHunter", "Etcd", "FreeFlowTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ]
)
