import Foundation
import XCTest

/// Stock ibverbs-utils pingpongs between pod a (server) and pod b (client) through the fake router: the
/// QP info goes over TCP on loopback, the data through the shim and the router's loopback data movement.
final class PingpongTests: XCTestCase {
    private var router: FakeRouterFixture!

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    private func pingpong(_ program: String, _ options: [String], mode: ShimMode, file: StaticString = #filePath, line: UInt = #line) throws {
        let (client, served) = try router.runPair(program, mode: mode) { ["-g", "0", "-p", "\($0)", "-n", "200"] + options }
        let label = "\(program) \(options.joined(separator: " ")) (\(mode))"
        XCTAssertEqual(client.status, 0, "\(label) client: \(client.output) \(client.errors)", file: file, line: line)
        XCTAssertEqual(served.status, 0, "\(label) server: \(served.output) \(served.errors)", file: file, line: line)
        XCTAssertTrue(client.output.contains("200 iters in"), "\(label): \(client.output)", file: file, line: line)
        // Each side sees the other's virtual GID: the router translated nothing the program can see.
        XCTAssertTrue(client.output.contains("remote address: LID 0x0000") && client.output.contains("GID ::ffff:10.9.0.1"),
                      client.output, file: file, line: line)
        XCTAssertTrue(served.output.contains("GID ::ffff:10.9.0.2"), served.output, file: file, line: line)
    }

    func testRCPingpongPreloaded() throws { try pingpong("ibv_rc_pingpong", [], mode: .preload) }
    func testRCPingpongDropIn() throws { try pingpong("ibv_rc_pingpong", [], mode: .dropIn) }
    func testRCPingpongWithCompletionEventsPreloaded() throws { try pingpong("ibv_rc_pingpong", ["-e"], mode: .preload) }
    func testRCPingpongWithCompletionEventsDropIn() throws { try pingpong("ibv_rc_pingpong", ["-e"], mode: .dropIn) }
    /// -N: ibv_create_qp_ex with send_ops_flags and the ibv_wr_* post API.
    func testRCPingpongWithTheWRAPIPreloaded() throws { try pingpong("ibv_rc_pingpong", ["-N"], mode: .preload) }
    func testRCPingpongWithTheWRAPIDropIn() throws { try pingpong("ibv_rc_pingpong", ["-N"], mode: .dropIn) }
    func testUCPingpongPreloaded() throws { try pingpong("ibv_uc_pingpong", [], mode: .preload) }
    func testUDPingpongDropIn() throws { try pingpong("ibv_ud_pingpong", [], mode: .dropIn) }
}
