import DevicePluginAPI
@testable import FFDevicePlugin
import Foundation
import FreeFlowTestSupport
import GRPCCore
import Logging
import Synchronization
import XCTest

/// The device plugin driven by a fake kubelet over real gRPC on Unix sockets: registration, the device list and its
/// health, Allocate (mounts, environment, CDI), preferred allocations, bad requests, and a kubelet restart.
final class DevicePluginTests: XCTestCase {
    private var directory = ""
    private var kubelet: FakeKubelet!
    /// What the health source reports, switched by the tests.
    private final class Switch: Sendable {
        private let state = Mutex(true)
        var on: Bool {
            get { state.withLock { $0 } }
            set { state.withLock { $0 = newValue } }
        }
    }

    private let healthy = Switch()
    private var pluginTask: Task<Void, Error>?

    override func setUp() async throws {
        directory = "/tmp/ffdp-\(getpid())-\(UUID().uuidString.prefix(8))"
        kubelet = try FakeKubelet(directory: "\(directory)/device-plugins")
        try await kubelet.start()
    }

    override func tearDown() async throws {
        pluginTask?.cancel()
        _ = try? await pluginTask?.value
        await kubelet.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private var configuration: PluginConfiguration {
        var c = PluginConfiguration()
        c.deviceCount = 4
        c.pluginDirectory = kubelet.directory
        c.routerSocket = "\(directory)/run/ffclient.sock"
        c.shimDirectory = "\(directory)/lib"
        c.cdiDirectory = "\(directory)/cdi"
        return c
    }

    private func startPlugin() {
        var logger = Logger(label: "device-plugin-test")
        logger.logLevel = ProcessInfo.processInfo.environment["FFDP_DEBUG"] != nil ? .debug : .warning
        let healthy = self.healthy
        let plugin = DevicePlugin(configuration: configuration, healthInterval: .milliseconds(50), watchInterval: .milliseconds(50), logger: logger) {
            let up = healthy.on
            return DeviceHealth.State(healthy: up, detail: up ? "port active" : "port down")
        }
        pluginTask = Task { try await plugin.run() }
    }

    func testThePluginRegistersAndAdvertisesItsDevicesAsHealthy() async throws {
        startPlugin()
        try await eventually("a registration") { kubelet.registrations.count == 1 }
        let registration = try XCTUnwrap(kubelet.registrations.first)
        XCTAssertEqual(registration.version, "v1beta1")
        XCTAssertEqual(registration.endpoint, "freeflow-vrdma.sock")
        XCTAssertEqual(registration.resourceName, "freeflow.io/vrdma")
        XCTAssertTrue(registration.options.getPreferredAllocationAvailable)
        try await eventually("the kubelet's options call") { kubelet.options.count == 1 }
        XCTAssertFalse(kubelet.options.first?.preStartRequired ?? true)
        try await eventually("a device list") { !kubelet.deviceLists.isEmpty }
        let list = try XCTUnwrap(kubelet.deviceLists.last)
        XCTAssertEqual(list.map(\.id), ["vrdma-0", "vrdma-1", "vrdma-2", "vrdma-3"])
        XCTAssertEqual(Set(list.map(\.health)), ["Healthy"])
    }

    func testListAndWatchReportsTheDevicesUnhealthyWhenTheRouterIsAndHealthyAgainAfter() async throws {
        startPlugin()
        try await eventually("a healthy list") { kubelet.deviceLists.last?.first?.health == "Healthy" }
        healthy.on = false
        try await eventually("an unhealthy list") {
            kubelet.deviceLists.last.map { Set($0.map(\.health)) == ["Unhealthy"] } ?? false
        }
        healthy.on = true
        try await eventually("a healthy list again") {
            kubelet.deviceLists.last.map { Set($0.map(\.health)) == ["Healthy"] } ?? false
        }
        XCTAssertGreaterThanOrEqual(kubelet.deviceLists.count, 3)
    }

    func testAllocateHandsTheContainerTheRouterSocketTheShimAndCDIDevices() async throws {
        startPlugin()
        try await eventually("a registration") { kubelet.registrations.count == 1 }
        let response = try await kubelet.plugin { plugin in
            try await plugin.allocate(.with { $0.containerRequests = [.with { $0.devicesIds = ["vrdma-1", "vrdma-3"] }] })
        }
        let container = try XCTUnwrap(response.containerResponses.first)
        XCTAssertEqual(container.envs["FFCLIENT_SOCKET"], "/run/freeflow/ffclient.sock")
        XCTAssertEqual(container.envs["LD_LIBRARY_PATH"], "/opt/freeflow/lib", "the drop-in is found first, also by dlopen")
        XCTAssertEqual(container.envs["FREEFLOW_VRDMA_DEVICES"], "vrdma-1,vrdma-3")
        XCTAssertEqual(container.mounts.map(\.hostPath), ["\(directory)/run/ffclient.sock", "\(directory)/lib"])
        XCTAssertEqual(container.mounts.map(\.containerPath), ["/run/freeflow/ffclient.sock", "/opt/freeflow/lib"])
        XCTAssertEqual(container.mounts.map(\.readOnly), [false, true])
        XCTAssertEqual(container.cdiDevices.map(\.name), ["freeflow.io/vrdma=vrdma-1", "freeflow.io/vrdma=vrdma-3"])

        // The CDI spec names every device with the same edits.
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/cdi/freeflow.io-vrdma.json"))
        let spec = try JSONDecoder().decode(CDISpec.self, from: data)
        XCTAssertEqual(spec.kind, "freeflow.io/vrdma")
        XCTAssertEqual(spec.devices.map(\.name), ["vrdma-0", "vrdma-1", "vrdma-2", "vrdma-3"])
        let edits = try XCTUnwrap(spec.devices.first { $0.name == "vrdma-1" }?.containerEdits)
        XCTAssertTrue(edits.env.contains("FFCLIENT_SOCKET=/run/freeflow/ffclient.sock"), "\(edits.env)")
        XCTAssertEqual(edits.mounts.last?.options, ["bind", "ro"])
    }

    func testBadRequestsAreRefusedWithAStatusAndThePluginKeepsServing() async throws {
        startPlugin()
        try await eventually("a registration") { kubelet.registrations.count == 1 }
        do {
            _ = try await kubelet.plugin { plugin in
                try await plugin.allocate(.with { $0.containerRequests = [.with { $0.devicesIds = ["vrdma-0", "vrdma-99"] }] })
            }
            XCTFail("an unknown device was allocated")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("vrdma-99"), error.message)
        }
        do {
            _ = try await kubelet.plugin { plugin in try await plugin.allocate(.with { $0.containerRequests = [V1beta1_ContainerAllocateRequest()] }) }
            XCTFail("an empty container request was allocated")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument)
        }
        // Still serving: a preferred allocation puts the required device first, then the lowest-numbered ones.
        let preferred = try await kubelet.plugin { plugin in
            try await plugin.getPreferredAllocation(.with {
                $0.containerRequests = [.with {
                    $0.availableDeviceIds = ["vrdma-3", "vrdma-0", "vrdma-2"]
                    $0.mustIncludeDeviceIds = ["vrdma-1"]
                    $0.allocationSize = 2
                }]
            })
        }
        XCTAssertEqual(preferred.containerResponses.first?.deviceIds, ["vrdma-1", "vrdma-0"])
        let response = try await kubelet.plugin { plugin in
            try await plugin.allocate(.with { $0.containerRequests = [.with { $0.devicesIds = ["vrdma-2"] }] })
        }
        XCTAssertEqual(response.containerResponses.count, 1)
    }

    func testAfterAKubeletRestartThePluginServesAndRegistersAgain() async throws {
        startPlugin()
        try await eventually("a registration") { kubelet.registrations.count == 1 }
        try await eventually("a device list") { !kubelet.deviceLists.isEmpty }
        let listsBefore = kubelet.deviceLists.count
        try await kubelet.restart()
        XCTAssertFalse(FileManager.default.fileExists(atPath: configuration.socketPath), "the restart deleted the plugin's socket")
        try await eventually("a second registration") { kubelet.registrations.count == 2 }
        try await eventually("a device list from the new registration") { kubelet.deviceLists.count > listsBefore }
        let response = try await kubelet.plugin { plugin in
            try await plugin.allocate(.with { $0.containerRequests = [.with { $0.devicesIds = ["vrdma-0"] }] })
        }
        XCTAssertEqual(response.containerResponses.first?.envs["FREEFLOW_VRDMA_DEVICES"], "vrdma-0")
    }

    func testAMissingKubeletFolderStopsThePluginWithAnErrorNamingIt() async throws {
        var configuration = self.configuration
        configuration.pluginDirectory = "\(directory)/no-such-kubelet/device-plugins"
        configuration.cdiDirectory = nil
        let plugin = DevicePlugin(configuration: configuration, logger: Logger(label: "device-plugin-test")) {
            DeviceHealth.State(healthy: true, detail: "port active")
        }
        do {
            try await plugin.run()
            XCTFail("the plugin ran without the kubelet's folder")
        } catch {
            XCTAssertTrue("\(error)".contains("\(directory)/no-such-kubelet/device-plugins does not exist"), "\(error)")
        }
    }
}
