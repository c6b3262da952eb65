// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "FreeFlow",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Verbs", targets: ["Verbs"]),
        .library(name: "FFProtocol", targets: ["FFProtocol"]),
        .executable(name: "ffctl", targets: ["ffctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .systemLibrary(name: "CSystem"),
        .target(name: "FFSystem", dependencies: ["CSystem"]),
        .target(name: "Verbs", dependencies: ["CVerbs", "FFSystem"]),
        // The client/router wire format: no dependencies, no I/O.
        .target(name: "FFProtocol"),
        .executableTarget(
            name: "ffctl",
            dependencies: [
                "Verbs",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "VerbsTests", dependencies: ["Verbs"]),
        .testTarget(name: "FFProtocolTests", dependencies: ["FFProtocol"]),
        .testTarget(name: "FFSystemTests", dependencies: ["FFSystem"]),
    ]
)
