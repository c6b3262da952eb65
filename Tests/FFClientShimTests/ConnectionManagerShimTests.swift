import FreeFlowTestSupport
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

    /// Starts `server` as pod `serverPod`, waits until it listens (the router's status shows its listening cm id),
    /// then runs `client` as pod `clientPod`.
    private func runPair(_ server: [String], _ client: [String], mode: ShimMode, serverPod: String = "a", clientPod: String = "b")
        throws -> (client: ProgramResult, server: ProgramResult) {
        let started = try RunningProgram(server[0], Array(server.dropFirst()), environment: router.environment(pod: serverPod, mode: mode),
                                         directory: router.directory)
        try router.waitForCMListeners(pod: serverPod)
        let clientResult = try run(client, pod: clientPod, mode: mode)
        return (clientResult, started.finish())
    }

    private func run(_ program: [String], pod: String, mode: ShimMode) throws -> ProgramResult {
        try RunningProgram(program[0], Array(program.dropFirst()), environment: router.environment(pod: pod, mode: mode),
                           directory: router.directory, seconds: 60).finish()
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

    private func ucmatose(_ mode: ShimMode, _ options: [String]) throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/ucmatose", "-p", port] + options, ["/usr/bin/ucmatose", "-s", Self.vipA, "-p", port] + options, mode: mode)
        assertSucceeded(pair, "ucmatose \(options.joined(separator: " ")) (\(mode))")
        XCTAssertTrue(pair.client.output.contains("test complete"), pair.client.output)
    }

    func testUcmatoseWithFourConnectionsDropIn() throws { try ucmatose(.dropIn, ["-c", "4", "-C", "10"]) }
    func testUcmatosePreloaded() throws { try ucmatose(.preload, []) }

    /// `server -p PORT` as pod a and `client -s VIP -p PORT` as pod b, each ending with "NAME: end 0".
    private func exampleServerAndClient(_ server: String, _ client: String, _ mode: ShimMode) throws {
        let port = "\(freshPort())"
        let pair = try runPair(["/usr/bin/\(server)", "-p", port], ["/usr/bin/\(client)", "-s", Self.vipA, "-p", port], mode: mode)
        assertSucceeded(pair, "\(server)/\(client) (\(mode))")
        XCTAssertTrue(pair.client.output.contains("\(client): end 0"), pair.client.output)
        XCTAssertTrue(pair.server.output.contains("\(server): end 0"), pair.server.output)
    }

    /// Synchronous ids, rdma_getaddrinfo, rdma_create_ep, rdma_get_request and the rdma_verbs.h helpers, on static buffers.
    func testRdmaServerAndClientPreloaded() throws { try exampleServerAndClient("rdma_server", "rdma_client", .preload) }
    func testRdmaServerAndClientDropIn() throws { try exampleServerAndClient("rdma_server", "rdma_client", .dropIn) }

    /// rdma_xclient posts 16 bytes inline on a QP created with max_inline_data 0: the device grants what rxe grants
    /// (room for one SGE, 16 bytes, may be sent inline). RC only; XRC (`-c x`) is not served (docs/rdma-cm.md).
    func testRdmaXServerAndClientPreloaded() throws { try exampleServerAndClient("rdma_xserver", "rdma_xclient", .preload) }
    func testRdmaXServerAndClientDropIn() throws { try exampleServerAndClient("rdma_xserver", "rdma_xclient", .dropIn) }

    /// cmtime's client times every step of 10 connections (its server runs until stopped: it is stopped once the
    /// client ended).
    func testCmtimeClientCompletesEveryStep() throws {
        let port = "\(freshPort())"
        let server = try RunningProgram("/usr/bin/cmtime", ["-p", port], environment: router.environment(pod: "a", mode: .preload),
                                        directory: router.directory, seconds: 120)
        try router.waitForCMListeners(pod: "a")
        let client = try run(["/usr/bin/cmtime", "-s", Self.vipA, "-p", port, "-c", "10"], pod: "b", mode: .dropIn)
        server.kill()
        _ = server.finish()
        XCTAssertEqual(client.status, 0, "cmtime client: \(client.output) \(client.errors)")
        XCTAssertTrue(client.output.contains("step              total ms"), client.output)
        for step in Self.cmtimeSteps {
            XCTAssertTrue(client.output.contains("\(step.padding(toLength: 13, withPad: " ", startingAt: 0)):"), "step \(step): \(client.output)")
        }
    }

    /// The steps cmtime's client reports, each on its own line.
    static let cmtimeSteps = ["create id", "resolve addr", "resolve route", "create qp", "connect", "disconnect", "destroy"]

    // MARK: - UD (SIDR) and replies from a received completion

    /// udaddy: the client's UD connect (SIDR) gets the server's QP number, Q_Key and an address vector to its vip; the
    /// server answers each message through an address handle made from the received completion
    /// (ibv_create_ah_from_wc), whose sender the router names by vip.
    private func udaddy(_ mode: ShimMode) throws {
        let pair = try runPair(["/usr/bin/udaddy", "-C", "10"], ["/usr/bin/udaddy", "-s", Self.vipA, "-C", "10"], mode: mode)
        assertSucceeded(pair, "udaddy (\(mode))")
        XCTAssertTrue(pair.server.output.contains("sending replies"), pair.server.output)
        for side in [pair.client, pair.server] {
            XCTAssertTrue(side.output.contains("data transfers complete"), side.output)
            XCTAssertTrue(side.output.contains("test complete"), side.output)
        }
    }

    /// ibv_init_ah_from_wc reads rxe's RoCE v2 IPv4 GRH (the IPv4 header's source, asked of the router as
    /// ::ffff:10.0.2.99, a node whose senders it does not know: ENOENT), the same bytes as an IPv6 GRH when the IPv4
    /// checksum fails (a GID that is no node's: EINVAL), zeros as a sender of this node (no such UD QP on a cm id:
    /// ENOENT), and refuses a receiving QP that is not the caller's (EINVAL).
    func testAReplyAddressFromACompletionReadsTheGRHAsLibibverbsAndRefusesWhatTheRouterCannotName() throws {
        let program = try compileProgram("ahfromwc", into: router.directory)
        let result = try run([program], pod: "a", mode: .preload)
        XCTAssertEqual(result.status, 0, "\(result.output) \(result.errors)")
        let lines = Set(result.output.split(separator: "\n").map(String.init))
        for expected in ["ipv4 rc=2 errno=2", "ipv6 rc=22 errno=22", "zeros rc=2 errno=2", "foreign-receiver rc=22 errno=22"] {
            XCTAssertTrue(lines.contains(expected), "\(expected): \(result.output)")
        }
    }

    func testUdaddyPreloaded() throws { try udaddy(.preload) }
    func testUdaddyDropIn() throws { try udaddy(.dropIn) }

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
        try router.waitForCMListeners(pod: "a")
        try router.waitForCMListeners(pod: "b")
        let toA = try run(["/usr/bin/rping", "-c", "-a", Self.vipA, "-p", port, "-C", "5", "-V"], pod: "b", mode: .preload)
        let toB = try run(["/usr/bin/rping", "-c", "-a", Self.vipB, "-p", port, "-C", "5", "-V"], pod: "a", mode: .dropIn)
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
        try router.waitForCMListeners(pod: "a")
        let client = try RunningProgram("/usr/bin/rping", ["-c", "-a", Self.vipA, "-p", port, "-C", "100000"],
                                        environment: router.environment(pod: "b", mode: .preload), directory: router.directory)
        // Kill the server once it is serving (its ping data shows up), mid-transfer.
        try eventuallyBlocking("the server to serve", timeout: .seconds(60)) {
            server.outputSoFar.contains("server ping data")
        }
        server.kill()
        let clientResult = client.finish()
        XCTAssertTrue(clientResult.errors.contains("DISCONNECT EVENT"), "the client hears its peer is gone: \(clientResult.errors)")
        XCTAssertNotEqual(clientResult.status, 137, "the client ended by itself, not by its timeout's SIGKILL")
        _ = server.finish()
        // Both sessions are gone from the router, with their QPs, cm ids and listener.
        try router.waitForNoClients(of: "a")
        try rping(.preload)
    }

    // MARK: - perftest over rdma_cm

    private func perftest(_ program: String, mode: ShimMode) throws {
        let port = "\(freshPort())"
        // -F: a side whose CPU-clock fit fails would exit before the closing hand-shake and leave its peer polling for
        // ever (CMShimLabTests.perftestOverRDMACM says how); with -F it reports 0 and closes.
        let options = ["-R", "-F", "-p", port, "-n", "200"]
        let pair = try runPair(["/usr/bin/\(program)"] + options, ["/usr/bin/\(program)"] + options + [Self.vipA], mode: mode)
        assertSucceeded(pair, "\(program) -R (\(mode))")
        XCTAssertTrue(pair.client.output.contains("#bytes"), pair.client.output)
        // Each side reports the other's virtual GID: perftest read it from the connection, not a node address.
        XCTAssertTrue(pair.client.output.contains("255:255:10:09:00:01"), pair.client.output)
    }

    func testSendBandwidthOverRDMACMPreloaded() throws { try perftest("ib_send_bw", mode: .preload) }
    func testWriteBandwidthOverRDMACMDropIn() throws { try perftest("ib_write_bw", mode: .dropIn) }
    func testSendLatencyOverRDMACMPreloaded() throws { try perftest("ib_send_lat", mode: .preload) }
}
