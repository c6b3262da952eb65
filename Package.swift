// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "FreeFlow",
    products: [
        .library(name: "FFProtocol", targets: ["FFProtocol"]),
    ],
    targets: [
        .target(name: "FFProtocol"),
        .testTarget(name: "FFProtocolTests", dependencies: ["FFProtocol"]),
    ]
)
