import Foundation
import XCTest

/// Issue 9's acceptance on the real device: in the Soft-RoCE lab, two routers on rxe0's two node GIDs serve pod a
/// (node 1) and pod b (node 2); each unmodified Debian program runs as a server in pod a and a client in pod b through
/// the shim, preloaded and as the drop-in, and must end as the same program run directly on rxe0 between the two GIDs
/// (which these tests also run, in the same guest). Pods exchange QP numbers over loopback TCP here; the pods' own
/// network namespaces with their vips are still to come (docs/shim.md).
final class ShimLabTests: XCTestCase {
    private var routers: FakeRouterFixture!

    override func setUpWithError() throws { routers = try FakeRouterFixture(onRealDevice: true) }
    override func tearDown() { routers = nil }

    /// How a side of a pair runs: through the shim in a pod, or directly on rxe0 at a node GID.
    private enum Way: CustomStringConvertible {
        case direct, shim(ShimMode)
        var description: String {
            switch self {
            case .direct: "direct on rxe0"
            case .shim(let mode): "through the shim (\(mode))"
            }
        }
    }

    /// Runs `program` as server and client `way`, up to four times while perftest could not measure the CPU's clock:
    /// under emulation, with both vCPUs busy, its linear fit of cycles against time sometimes fails ("Correlation
    /// coefficient r^2 … Can't produce a report" on standard error, exit 1), which says nothing about the verbs.
    /// `gid(side)` gives the GID option for a side (0 = server).
    private func pair(_ program: String, _ options: [String], way: Way, gid: (Int) -> [String]) throws -> (client: ProgramResult, server: ProgramResult) {
        var result = try pairOnce(program, options, way: way, gid: gid)
        for _ in 0..<3 where Self.unmeasured(result.server) || Self.unmeasured(result.client) {
            result = try pairOnce(program, options, way: way, gid: gid)
        }
        return result
    }

    /// perftest ran every iteration, but could not fit the CPU clock to produce its report: it prints that only from
    /// its report functions, which run after the transfer has completed.
    private static func unmeasured(_ side: ProgramResult) -> Bool {
        side.status != 0 && (side.output + side.errors).contains("Can't produce a report")
    }

    /// How a side ended, with a clock-fit failure after a completed transfer counted as success (the verbs worked).
    private static func succeeded(_ side: ProgramResult) -> Bool { side.status == 0 || unmeasured(side) }

    private func pairOnce(_ program: String, _ options: [String], way: Way, gid: (Int) -> [String]) throws -> (client: ProgramResult, server: ProgramResult) {
        let port = 20_000 + Int.random(in: 0..<20_000)
        func environment(_ pod: String) -> [String: String] {
            if case .shim(let mode) = way { return routers.environment(pod: pod, mode: mode) }
            return [:]
        }
        let device: [String] = if case .direct = way { ["-d", "rxe0"] } else { [] }
        let server = try RunningProgram("/usr/bin/\(program)", options + device + gid(0) + ["-p", "\(port)"], environment: environment("a"),
                                        directory: routers.directory)
        try waitForListener(port: port)
        let client = try RunningProgram("/usr/bin/\(program)", options + device + gid(1) + ["-p", "\(port)", "127.0.0.1"],
                                        environment: environment("b"), directory: routers.directory).finish()
        return (client, server.finish())
    }

    /// The program ends the same way through the shim (both modes) as directly on rxe0, and directly it succeeds.
    private func sameAsDirect(_ program: String, _ options: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        // Directly, the two sides use the two node GIDs (indices 1 and 2); in a pod, the one virtual GID (index 0).
        let option = program.hasPrefix("ib_") ? "-x" : "-g"
        let direct = try pair(program, options, way: .direct) { [option, "\($0 + 1)"] }
        let label = "\(program) \(options.joined(separator: " "))"
        XCTAssertTrue(Self.succeeded(direct.client), "\(label) direct: \(direct.client.output) \(direct.client.errors)", file: file, line: line)
        for mode in ShimMode.allCases {
            let shim = try pair(program, options, way: .shim(mode)) { _ in [option, "0"] }
            for (side, result, baseline) in [("client", shim.client, direct.client), ("server", shim.server, direct.server)] {
                if Self.unmeasured(result) {
                    // Every iteration completed; only the clock fit for the report failed, four times in a row.
                    print("note: \(label) \(Way.shim(mode)): the \(side) could not fit the emulated CPU clock for its report")
                }
                XCTAssertEqual(Self.succeeded(result), Self.succeeded(baseline),
                               "\(label) \(Way.shim(mode)) \(side): \(result.output) \(result.errors)", file: file, line: line)
            }
            if program.hasPrefix("ib_") {
                XCTAssertTrue(shim.client.output.contains("#bytes"), "\(label) \(Way.shim(mode)): no results in \(shim.client.output)", file: file, line: line)
            }
        }
    }

    func testIbvDevinfoShowsTheVirtualDeviceOnRxe() throws {
        for mode in ShimMode.allCases {
            let result = try RunningProgram.run("/usr/bin/ibv_devinfo", environment: routers.environment(pod: "a", mode: mode), directory: routers.directory)
            XCTAssertEqual(result.status, 0, result.errors)
            XCTAssertTrue(result.output.contains("freeflow0") && result.output.contains("PORT_ACTIVE"), "\(mode): \(result.output)")
        }
    }

    func testRCPingpong() throws { try sameAsDirect("ibv_rc_pingpong", ["-n", "200"]) }
    func testRCPingpongWithEvents() throws { try sameAsDirect("ibv_rc_pingpong", ["-n", "200", "-e"]) }
    func testUCPingpong() throws { try sameAsDirect("ibv_uc_pingpong", ["-n", "200"]) }
    func testUDPingpong() throws { try sameAsDirect("ibv_ud_pingpong", ["-n", "200"]) }
    func testSendBandwidth8K() throws { try sameAsDirect("ib_send_bw", ["-n", "200", "-s", "8192"]) }
    func testWriteBandwidth64K() throws { try sameAsDirect("ib_write_bw", ["-n", "100", "-s", "65536"]) }
    func testWriteBandwidth1MFourQPs() throws { try sameAsDirect("ib_write_bw", ["-n", "20", "-s", "1048576", "-q", "4"]) }
    func testReadBandwidth2K() throws { try sameAsDirect("ib_read_bw", ["-n", "200", "-s", "2048"]) }
    func testWriteLatency() throws { try sameAsDirect("ib_write_lat", ["-n", "200"]) }
    func testSendLatency() throws { try sameAsDirect("ib_send_lat", ["-n", "200"]) }
    func testAtomicBandwidth() throws { try sameAsDirect("ib_atomic_bw", ["-n", "200"]) }
}
