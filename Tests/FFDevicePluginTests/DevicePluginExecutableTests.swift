import DevicePluginAPI
import Foundation
import FreeFlowTestSupport
import XCTest

/// The `ffdevice-plugin` binary with a real `ffrouter --fake-device` and the fake kubelet: the devices are healthy while
/// the router answers on its admin socket, unhealthy once it is gone, and SIGTERM removes the plugin's socket.
final class DevicePluginExecutableTests: XCTestCase {
    private static var binaries: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }

    private func start(_ name: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = Self.binaries.appendingPathComponent(name)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func testHealthFollowsTheRouterAndSIGTERMRemovesThePluginSocket() async throws {
        let directory = "/tmp/ffdp-exe-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kubelet = try FakeKubelet(directory: "\(directory)/device-plugins")
        try await kubelet.start()
        try FileManager.default.createDirectory(atPath: "\(directory)/run", withIntermediateDirectories: true)
        try "10.9.0.1 10.0.2.15\n".write(toFile: "\(directory)/map.txt", atomically: true, encoding: .utf8)
        let router = try start("ffrouter", ["--fake-device", "--node-ip", "10.0.2.15", "--socket-dir", "\(directory)/run", "--pod", "a=10.9.0.1",
                                            "--map", "\(directory)/map.txt", "--metrics-port", "0"])
        defer { if router.isRunning { router.terminate() } }
        let plugin = try start("ffdevice-plugin", ["--plugin-dir", kubelet.directory, "--admin-socket", "\(directory)/run/admin.sock",
                                                   "--cdi-dir", "\(directory)/cdi", "--devices", "2", "--health-interval", "0.2"])
        defer { if plugin.isRunning { plugin.terminate() } }

        try await eventually("the plugin's registration", timeout: .seconds(30)) { kubelet.registrations.count == 1 }
        try await eventually("healthy devices", timeout: .seconds(30)) {
            kubelet.deviceLists.last.map { Set($0.map(\.health)) == ["Healthy"] } ?? false
        }
        XCTAssertEqual(kubelet.deviceLists.last?.map(\.id), ["vrdma-0", "vrdma-1"])

        router.terminate()
        router.waitUntilExit()
        try await eventually("unhealthy devices once the router is gone", timeout: .seconds(30)) {
            kubelet.deviceLists.last.map { Set($0.map(\.health)) == ["Unhealthy"] } ?? false
        }

        plugin.terminate()
        plugin.waitUntilExit()
        XCTAssertEqual(plugin.terminationStatus, 0, "SIGTERM is a clean stop")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(kubelet.directory)/freeflow-vrdma.sock"), "the plugin removed its socket")
        await kubelet.stop()
    }
}
