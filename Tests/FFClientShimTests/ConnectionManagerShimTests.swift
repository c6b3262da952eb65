import Foundation
import XCTest

/// Stock librdmacm programs (rdmacm-utils, perftest -R) between pods of one `ffrouter --fake-device`, by vip,
/// through libffclient's librdmacm API: the router's in-process connection manager demultiplexes by vip.
final class ConnectionManagerShimTests: XCTestCase {
    private var router: FakeRouterFixture!
    private static let vipA = "10.9.0.1", vipB = "10.9.0.2"

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    private func freshPort() -> Int { 20_000 + Int.random(in: 0..<20_000) }

    /// Starts `server` as pod `serverPod`, then runs `client` as pod `clientPod`. The server needs a moment to
    /// listen, and nothing outside the router can see when it does: a client refused because nothing listens yet
    /// (REJECTED, "refused") is started again while the server runs, within a bound.
    private func runPair(_ server: [String], _ client: [String], mode: ShimMode, serverPod: String = "a", clientPod: String = "b",
                         seconds: Double = 60) throws -> (client: ProgramResult, server: ProgramResult) {
        let started = try RunningProgram(server[0], Array(server.dropFirst()), environment: router.environment(pod: serverPod, mode: mode),
                                         directory: router.directory)
        let clientResult = try retryingWhileRefused(client, pod: clientPod, mode: mode, seconds: seconds)
        return (clientResult, started.finish())
    }

    private func retryingWhileRefused(_ client: [String], pod: String, mode: ShimMode, seconds: Double) throws -> ProgramResult {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let result = try RunningProgram(client[0], Array(client.dropFirst()), environment: router.environment(pod: pod, mode: mode),
                                            directory: router.directory, seconds: 60).finish()
            guard result.status != 0, refusedForNoListener(result), Date() < deadline else { return result }
            usleep(100_000)
        }
    }

    private func assertSucceeded(_ pair: (client: ProgramResult, server: ProgramResult), _ label: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(pair.client.status, 0, "\(label) client: \(pair.client.output) \(pair.client.errors)", file: file, line: line)
        XCTAssertEqual(pair.server.status, 0, "\(label) server: \(pair.server.output) \(pair.server.errors)", file: file, line: line)
    }

    // MARK: - rping: RC send/recv plus RDMA read and write, data verified

    private func rping(_ mode: ShimMode, extra: [String] = []) throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/rping", "-s", "-a", Self.vipA, "-p", port, "-C", "10", "-v"] + extra,
                               ["/usr/bin/rping", "-c", "-a", Self.vipA, "-p", port, "-C", "10", "-v", "-V"] + extra, mode: mode)
        assertSucceeded(pair, "rping \(mode)")
        XCTAssertEqual(pair.client.output.components(separatedBy: "ping data: rdma-ping-").count - 1, 10, pair.client.output)
        XCTAssertEqual(pair.server.output.components(separatedBy: "server ping data: rdma-ping-").count - 1, 10, pair.server.output)
    }

    func testRpingPreloaded() throws { try rping(.preload) }
    func testRpingDropIn() throws { try rping(.dropIn) }
    /// -q: the program creates its own QP and moves it with rdma_init_qp_attr, then calls rdma_establish.
    func testRpingWithItsOwnQPPreloaded() throws { try rping(.preload, extra: ["-q"]) }

    // MARK: - the other rdmacm-utils examples

    func testUcmatoseWithFourConnectionsDropIn() throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/ucmatose", "-p", port, "-c", "4", "-C", "10"],
                               ["/usr/bin/ucmatose", "-s", Self.vipA, "-p", port, "-c", "4", "-C", "10"], mode: .dropIn)
        assertSucceeded(pair, "ucmatose -c 4")
        XCTAssertTrue(pair.client.output.contains("test complete"), pair.client.output)
    }

    func testUcmatosePreloaded() throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/ucmatose", "-p", port], ["/usr/bin/ucmatose", "-s", Self.vipA, "-p", port], mode: .preload)
        assertSucceeded(pair, "ucmatose")
    }

    func testRdmaServerAndClientPreloaded() throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/rdma_server", "-p", port], ["/usr/bin/rdma_client", "-s", Self.vipA, "-p", port], mode: .preload)
        assertSucceeded(pair, "rdma_server/rdma_client")
        XCTAssertTrue(pair.client.output.contains("rdma_client: end 0"), pair.client.output)
        XCTAssertTrue(pair.server.output.contains("rdma_server: end 0"), pair.server.output)
    }

    func testRdmaServerAndClientDropIn() throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/rdma_server", "-p", port], ["/usr/bin/rdma_client", "-s", Self.vipA, "-p", port], mode: .dropIn)
        assertSucceeded(pair, "rdma_server/rdma_client")
    }

    // MARK: - addressing

    /// Pods a and b both listen on one port; a client addressing a's vip reaches a, one addressing b's reaches b.
    /// Each rping server takes exactly one connection and ends, so a connect delivered to the wrong pod would
    /// leave the other server waiting until its timeout.
    func testTwoPodsListeningOnOnePortAreEachReachedByTheirOwnClient() throws {
        let port = "\(freshPort())"
        let servers = try ["a", "b"].map { pod in
            try RunningProgram("/usr/bin/rping", ["-s", "-p", port, "-C", "5", "-v"], environment: router.environment(pod: pod, mode: .preload),
                               directory: router.directory, seconds: 90)
        }
        let toA = try retryingWhileRefused(["/usr/bin/rping", "-c", "-a", Self.vipA, "-p", port, "-C", "5", "-V"], pod: "b", mode: .preload, seconds: 60)
        let toB = try retryingWhileRefused(["/usr/bin/rping", "-c", "-a", Self.vipB, "-p", port, "-C", "5", "-V"], pod: "a", mode: .dropIn, seconds: 60)
        XCTAssertEqual(toA.status, 0, "client of a: \(toA.output) \(toA.errors)")
        XCTAssertEqual(toB.status, 0, "client of b: \(toB.output) \(toB.errors)")
        for (pod, server) in zip(["a", "b"], servers.map { $0.finish() }) {
            XCTAssertEqual(server.status, 0, "server \(pod): \(server.output) \(server.errors)")
            XCTAssertEqual(server.output.components(separatedBy: "server ping data: rdma-ping-").count - 1, 5, "server \(pod): \(server.output)")
        }
    }

    func testAnUnknownVipFailsQuicklyWithAnAddressErrorNamingIt() throws {
        let started = Date()
        let result = try RunningProgram("/usr/bin/rping", ["-c", "-a", "10.9.9.9", "-p", "\(freshPort())", "-C", "1"],
                                        environment: router.environment(pod: "b", mode: .preload), directory: router.directory).finish()
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.errors.contains("RDMA_CM_EVENT_ADDR_ERROR"), result.errors)
        XCTAssertTrue(result.errors.contains("unknown vip 10.9.9.9"), result.errors)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "no timeout: the router answers at once")
    }

    /// A server pod killed mid-transfer: its client sees RDMA_CM_EVENT_DISCONNECTED and ends (rping ends quietly on
    /// it) instead of hanging, and the router serves the next pair.
    func testAServerKilledMidTransferDisconnectsItsClientAndTheRouterServesTheNextPair() throws {
        let port = "\(freshPort())"
        let server = try RunningProgram("/usr/bin/rping", ["-s", "-a", Self.vipA, "-p", port, "-C", "100000", "-v"],
                                        environment: router.environment(pod: "a", mode: .preload), directory: router.directory)
        let client = try RunningProgram("/usr/bin/rping", ["-c", "-a", Self.vipA, "-p", port, "-C", "100000"],
                                        environment: router.environment(pod: "b", mode: .preload), directory: router.directory)
        // Kill the server once it is serving (its ping data shows up), mid-transfer.
        XCTAssertTrue(waitFor(seconds: 60) { server.output().contains("server ping data") }, "the server never served")
        server.kill()
        let clientResult = client.finish()
        XCTAssertTrue(clientResult.errors.contains("DISCONNECT EVENT"), "the client hears its peer is gone: \(clientResult.errors)")
        XCTAssertNotEqual(clientResult.status, 137, "the client ended by itself, not by its timeout's SIGKILL")
        _ = server.finish()
        try rping(.preload)
    }

    // MARK: - perftest over rdma_cm

    func testSendBandwidthOverRDMACMPreloaded() throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/ib_send_bw", "-R", "-p", port, "-n", "200"], ["/usr/bin/ib_send_bw", "-R", "-p", port, "-n", "200", Self.vipA],
                               mode: .preload)
        assertSucceeded(pair, "ib_send_bw -R")
        XCTAssertTrue(pair.client.output.contains("#bytes"), pair.client.output)
    }

    private func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }
}

/// Whether a librdmacm client failed because nothing listened yet: rping and ucmatose name the REJECTED event,
/// rdma_client says "Connection refused", perftest "Unexpected CM event ... 8" (REJECTED).
func refusedForNoListener(_ result: ProgramResult) -> Bool {
    let said = (result.output + result.errors).lowercased()
    return said.contains("rejected") || said.contains("refused") || said.contains("unexpected cm event")
}
