import Foundation
import XCTest

/// Stock ibv_devinfo and a minimal device-list program through the shim, in both modes, against
/// `ffrouter --fake-device`.
final class DeviceListTests: XCTestCase {
    private var router: FakeRouterFixture!

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    func testDevinfoPreloadedListsTheVirtualDeviceWithThePodsGID() throws {
        try assertDevinfoListsVirtualDevice(mode: .preload)
    }

    func testDevinfoDropInListsTheVirtualDeviceWithThePodsGID() throws {
        try assertDevinfoListsVirtualDevice(mode: .dropIn)
    }

    private func assertDevinfoListsVirtualDevice(mode: ShimMode) throws {
        let result = try RunningProgram.run("/usr/bin/ibv_devinfo", ["-v"], environment: router.environment(pod: "a", mode: mode),
                                            directory: router.directory)
        XCTAssertEqual(result.status, 0, "ibv_devinfo failed: \(result.errors)")
        XCTAssertTrue(result.output.contains("hca_id:\tfreeflow0"), result.output)
        XCTAssertTrue(result.output.contains("vendor_part_id:\t\t\t\(0xF4EE)"), result.output)
        XCTAssertTrue(result.output.contains("fw_ver:\t\t\t\tfreeflow-1"), result.output)
        XCTAssertTrue(result.output.contains("state:\t\t\tPORT_ACTIVE"), result.output)
        XCTAssertTrue(result.output.contains("GID[  0]:\t\t::ffff:10.9.0.1, RoCE v2"), result.output)
        XCTAssertEqual(result.errors, "", "nothing on stderr when the router is there")
    }

    func testPodBSeesItsOwnGID() throws {
        let result = try RunningProgram.run("/usr/bin/ibv_devinfo", ["-v"], environment: router.environment(pod: "b", mode: .preload),
                                            directory: router.directory)
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertTrue(result.output.contains("GID[  0]:\t\t::ffff:10.9.0.2, RoCE v2"), result.output)
        XCTAssertFalse(result.output.contains("10.9.0.1"), "pod b must not see pod a's GID")
    }

    func testDropInReplacesDebiansLibibverbs() throws {
        var env = router.environment(pod: "a", mode: .dropIn)
        env["LD_DEBUG"] = "files"
        let result = try RunningProgram.run("/usr/bin/ibv_devinfo", [], environment: env, directory: router.directory)
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertTrue(result.errors.contains("calling init: \(router.directory)/dropin/libibverbs.so.1"), result.errors)
        XCTAssertFalse(result.errors.contains("/usr/lib/x86_64-linux-gnu/libibverbs.so.1"), "Debian's library must not load")
    }

    func testMissingRouterSocketGivesAnEmptyListErrnoAndOneLineReason() throws {
        let program = try compileProgram("devicelist", into: router.directory)
        let missing = router.directory + "/sockets/nobody.sock"
        for mode in ShimMode.allCases {
            var env = router.environment(pod: "a", mode: mode)
            env["FFCLIENT_SOCKET"] = missing
            let result = try RunningProgram.run(program, environment: env, directory: router.directory)
            XCTAssertEqual(result.status, 0, "\(mode): \(result.errors)")
            XCTAssertEqual(result.output, "list=non-null count=0 errno=\(ENOENT)\n", "\(mode)")
            let lines = result.errors.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            XCTAssertEqual(lines.count, 1, "\(mode): exactly one line on stderr, got \(result.errors)")
            XCTAssertEqual(lines.first.map(String.init),
                           "libffclient: no RDMA device: cannot reach the FreeFlow router at \(missing): connect: No such file or directory (errno \(ENOENT))",
                           "\(mode)")
        }
    }

    func testMissingRouterSocketLetsDevinfoReportNoDevices() throws {
        var env = router.environment(pod: "a", mode: .preload)
        env["FFCLIENT_SOCKET"] = router.directory + "/sockets/nobody.sock"
        let result = try RunningProgram.run("/usr/bin/ibv_devinfo", environment: env, directory: router.directory)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.errors.contains("No IB devices found"), result.errors)
        XCTAssertTrue(result.errors.hasPrefix("libffclient: no RDMA device: cannot reach the FreeFlow router at "), result.errors)
    }

    func testDeviceListProgramSeesOneDeviceInBothModes() throws {
        let program = try compileProgram("devicelist", into: router.directory)
        for mode in ShimMode.allCases {
            let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: mode), directory: router.directory)
            XCTAssertEqual(result.output, "list=non-null count=1 errno=0 name=freeflow0\n", "\(mode): \(result.errors)")
        }
    }
}

/// Verbs loaded the way NCCL loads them: dlopen("libibverbs.so.1") + dlvsym(..., "IBVERBS_1.1"). Only the
/// drop-in can serve this; a preload never sees dlvsym.
final class DlvsymTests: XCTestCase {
    func testDlopenAndDlvsymFindTheDropIn() throws {
        let router = try FakeRouterFixture()
        let program = try compileProgram("dlvsym", into: router.directory, libraries: ["-ldl"])
        let result = try RunningProgram.run(program, environment: router.environment(pod: "b", mode: .dropIn), directory: router.directory)
        XCTAssertEqual(result.status, 0, result.output + result.errors)
        XCTAssertEqual(result.output, "device=freeflow0 state=4 gid=10.9.0.2\n")
    }
}
