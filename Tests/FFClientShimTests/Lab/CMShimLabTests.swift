import Foundation
import XCTest

/// Issue 11 on the real device. One router on rxe0 (node 1) serving pods a and b: unmodified librdmacm programs
/// connect by vip through libffclient (preloaded and as the drop-in), the router's connection manager pairs their
/// ids, and their QPs are real rxe0 QPs moved to RTR/RTS with the router's PSNs and the translated peer GID; the
/// same program run directly on rxe0 (the kernel's rdma_cm) must succeed too, in the same guest. Two routers (pod a
/// on node 1, pod b on node 2): the connect crosses between the node IPs over the device's rdma_cm.
final class CMShimLabTests: XCTestCase {
    private var router: FakeRouterFixture!
    private static let vipA = "10.9.0.1"

    override func setUpWithError() throws { router = try FakeRouterFixture(onRealDevice: true, podsOnOneNode: true) }
    override func tearDown() { router = nil }

    /// Server as pod a, client as pod b (or both directly on rxe0 at node 1's IP). Through the shim the client starts
    /// once the router shows the server's listener; directly, a client refused because the server does not listen
    /// yet is started again while the server runs, within a bound.
    private func pair(_ server: [String], _ client: [String], way: Way) throws -> (client: ProgramResult, server: ProgramResult) {
        let result = try pairOnce(server, client, way: way)
        guard case .direct = way, result.client.status != 0 || result.server.status != 0 else { return result }
        // The direct run is only the baseline that the program works on rxe0 (the shim runs are never retried): rxe
        // in the guest has refused a direct ucmatose's QP now and then ("unable to create QP: Invalid argument").
        print("note: \(server[0]) directly on rxe0 failed once (\(result.server.output) \(result.server.errors)); running the baseline again")
        return try pairOnce(server, client, way: way)
    }

    private func pairOnce(_ server: [String], _ client: [String], way: Way) throws -> (client: ProgramResult, server: ProgramResult) {
        // Through the shim, each side runs in its pod (scripts/lab-pod); directly, on the node.
        func start(_ command: [String], as pod: String) throws -> RunningProgram {
            if case .shim(let mode) = way { return try router.start(command[0], Array(command.dropFirst()), pod: pod, mode: mode, seconds: 300) }
            return try RunningProgram(command[0], Array(command.dropFirst()), environment: [:], directory: router.directory, seconds: 300)
        }
        let started = try start(server, as: "a")
        if case .shim = way { try router.waitForCMListeners(pod: "a", seconds: 120) }
        let deadline = Date().addingTimeInterval(120)
        while true {
            let result = try start(client, as: "b").finish()
            if case .direct = way, result.status != 0, Self.refusedForNoListener(result), Date() < deadline {
                usleep(200_000)
                continue
            }
            return (result, started.finish())
        }
    }

    /// Whether a client failed because nothing listened yet: rping and ucmatose name the REJECTED event, rdma_client
    /// says "Connection refused", perftest "Unexpected CM event ... 8" (REJECTED), udaddy names UNREACHABLE (a SIDR
    /// REP refusing the UD connect).
    private static func refusedForNoListener(_ result: ProgramResult) -> Bool {
        let said = (result.output + result.errors).lowercased()
        return said.contains("rejected") || said.contains("refused") || said.contains("unexpected cm event") || said.contains("unreachable")
    }

    private func address(_ way: Way) -> String {
        if case .direct = way { return ProcessInfo.processInfo.environment["FFLAB_IP1"] ?? "10.0.2.15" }
        return Self.vipA
    }

    private func check(_ result: (client: ProgramResult, server: ProgramResult), _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.client.status, 0, "\(label) client: \(result.client.output) \(result.client.errors)", file: file, line: line)
        XCTAssertEqual(result.server.status, 0, "\(label) server: \(result.server.output) \(result.server.errors)", file: file, line: line)
    }

    func testRpingWithVerifiedDataEndsAsDirectlyOnRxe() throws {
        for way in [Way.direct, .shim(.preload), .shim(.dropIn)] {
            let port = "\(20_000 + Int.random(in: 0..<20_000))"
            let result = try pair(["/usr/bin/rping", "-s", "-a", address(way), "-p", port, "-C", "100", "-v"],
                                  ["/usr/bin/rping", "-c", "-a", address(way), "-p", port, "-C", "100", "-v", "-V"], way: way)
            check(result, "rping \(way)")
            XCTAssertEqual(result.client.output.components(separatedBy: "ping data: rdma-ping-").count - 1, 100, "\(way): \(result.client.output)")
        }
    }

    func testUcmatoseAndRdmaServerClientEndAsDirectlyOnRxe() throws {
        for way in [Way.direct, .shim(.preload), .shim(.dropIn)] {
            let port = "\(20_000 + Int.random(in: 0..<20_000))"
            check(try pair(["/usr/bin/ucmatose", "-p", port, "-c", "4"], ["/usr/bin/ucmatose", "-s", address(way), "-p", port, "-c", "4"], way: way),
                  "ucmatose -c 4 \(way)")
            let other = "\(20_000 + Int.random(in: 0..<20_000))"
            check(try pair(["/usr/bin/rdma_server", "-p", other], ["/usr/bin/rdma_client", "-s", address(way), "-p", other], way: way),
                  "rdma_server/rdma_client \(way)")
        }
    }

    /// Runs perftest's `program` over rdma_cm (`-R`) through the shim, server as pod a, client as pod b, and checks
    /// that both sides end with 0 and the client's peer is pod a's virtual GID.
    ///
    /// `-F`: under emulation perftest's fit of the CPU clock sometimes fails after the transfer ("Correlation
    /// coefficient r^2 … < 0.9"); without -F that side then exits at once ("Can't produce a report"), before the closing
    /// hand-shake. Over rdma_cm that hand-shake is a send and a receive on perftest's exchange QP, which its peer
    /// busy-polls with no timeout: its send to the gone side's QP may already have completed, nothing else completes,
    /// and it spins until killed (a QP whose peer died stays RTS; DISCONNECTED is an rdma_cm event, which perftest reads
    /// only later), as its `ibv_poll_cq` loop would directly on rxe0. With -F the report says 0 and the sides close.
    private func perftestOverRDMACM(_ program: String, _ options: [String], mode: ShimMode, file: StaticString = #filePath, line: UInt = #line) throws {
        let port = "\(20_000 + Int.random(in: 0..<20_000))"
        let all = ["-R", "-F", "-p", port] + options
        let result = try pair(["/usr/bin/\(program)"] + all, ["/usr/bin/\(program)"] + all + [Self.vipA], way: .shim(mode))
        check(result, "\(program) -R (\(mode))", file: file, line: line)
        XCTAssertTrue(result.client.output.contains("255:255:10:09:00:01"), "\(program) -R (\(mode)): the peer is pod a's virtual GID: \(result.client.output)",
                      file: file, line: line)
    }

    /// Through the shim only: run directly on rxe0 in the guest, perftest's -R server reports and then does not end.
    func testSendBandwidthOverRDMACMThroughTheShim() throws {
        try perftestOverRDMACM("ib_send_bw", ["-s", "8192", "-n", "100"], mode: .preload)
    }

    /// Pod a behind node 1's router, pod b behind node 2's: the client's router connects over rxe0's rdma_cm from
    /// node 2's IP to node 1's, with its header naming pod a's vip; both sides see vips, the data is verified.
    func testRpingBetweenPodsOnTwoNodes() throws {
        router = nil
        router = try FakeRouterFixture(onRealDevice: true)
        for mode in [ShimMode.preload, .dropIn] {
            let port = "\(20_000 + Int.random(in: 0..<20_000))"
            let result = try pair(["/usr/bin/rping", "-s", "-a", Self.vipA, "-p", port, "-C", "50", "-v"],
                                  ["/usr/bin/rping", "-c", "-a", Self.vipA, "-p", port, "-C", "50", "-v", "-V"], way: .shim(mode))
            check(result, "rping between nodes (\(mode))")
            XCTAssertEqual(result.client.output.components(separatedBy: "ping data: rdma-ping-").count - 1, 50, "\(mode): \(result.client.output)")
        }
        let port = "\(20_000 + Int.random(in: 0..<20_000))"
        check(try pair(["/usr/bin/rdma_server", "-p", port], ["/usr/bin/rdma_client", "-s", Self.vipA, "-p", port], way: .shim(.preload)),
              "rdma_server/rdma_client between nodes")
    }

    /// The rest of the acceptance between nodes: ucmatose with four connections, rdma_xserver/xclient, and perftest
    /// over rdma_cm (`ib_write_bw -R`, `ib_send_lat -R`), pod a behind node 1's router, pod b behind node 2's.
    func testUcmatosePerftestAndXClientBetweenPodsOnTwoNodes() throws {
        router = nil
        router = try FakeRouterFixture(onRealDevice: true)
        for mode in [ShimMode.preload, .dropIn] {
            var port = "\(20_000 + Int.random(in: 0..<20_000))"
            check(try pair(["/usr/bin/ucmatose", "-p", port, "-c", "4"], ["/usr/bin/ucmatose", "-s", Self.vipA, "-p", port, "-c", "4"], way: .shim(mode)),
                  "ucmatose -c 4 between nodes (\(mode))")
            port = "\(20_000 + Int.random(in: 0..<20_000))"
            let x = try pair(["/usr/bin/rdma_xserver", "-p", port], ["/usr/bin/rdma_xclient", "-s", Self.vipA, "-p", port], way: .shim(mode))
            check(x, "rdma_xserver/rdma_xclient between nodes (\(mode))")
            XCTAssertTrue(x.client.output.contains("rdma_xclient: end 0"), "\(mode): \(x.client.output)")
            for program in ["ib_write_bw", "ib_send_lat"] { try perftestOverRDMACM(program, ["-s", "4096", "-n", "100"], mode: mode) }
        }
    }

    func testRdmaXServerAndClientEndAsDirectlyOnRxe() throws {
        for way in [Way.direct, .shim(.preload), .shim(.dropIn)] {
            let port = "\(20_000 + Int.random(in: 0..<20_000))"
            let result = try pair(["/usr/bin/rdma_xserver", "-p", port], ["/usr/bin/rdma_xclient", "-s", address(way), "-p", port], way: way)
            check(result, "rdma_xserver/rdma_xclient \(way)")
            XCTAssertTrue(result.client.output.contains("rdma_xclient: end 0"), "\(way): \(result.client.output)")
        }
    }

    /// cmtime's server runs until stopped: it is stopped once its client ended, and the client must have timed every
    /// step, directly on rxe0 and through the shim.
    func testCmtimeClientCompletesEveryStepAsDirectlyOnRxe() throws {
        for way in [Way.direct, .shim(.preload)] {
            let port = "\(20_000 + Int.random(in: 0..<20_000))"
            let server: RunningProgram
            if case .shim(let mode) = way {
                server = try router.start("/usr/bin/cmtime", ["-p", port], pod: "a", mode: mode, seconds: 300)
                try router.waitForCMListeners(pod: "a", seconds: 120)
            } else {
                server = try RunningProgram("/usr/bin/cmtime", ["-p", port], environment: [:], directory: router.directory, seconds: 300)
            }
            let arguments = ["-s", address(way), "-p", port, "-c", "20"]
            let deadline = Date().addingTimeInterval(120)
            var client: ProgramResult
            repeat {
                if case .shim(let mode) = way {
                    client = try router.start("/usr/bin/cmtime", arguments, pod: "b", mode: mode, seconds: 300).finish()
                } else {
                    client = try RunningProgram("/usr/bin/cmtime", arguments, environment: [:], directory: router.directory, seconds: 300).finish()
                }
                if client.status == 0 || !Self.refusedForNoListener(client) { break }
                usleep(200_000)
            } while Date() < deadline
            server.kill()
            _ = server.finish()
            XCTAssertEqual(client.status, 0, "cmtime \(way): \(client.output) \(client.errors)")
            for step in ConnectionManagerShimTests.cmtimeSteps {
                XCTAssertTrue(client.output.contains("\(step.padding(toLength: 13, withPad: " ", startingAt: 0)):"), "cmtime \(way), step \(step): \(client.output)")
            }
        }
    }

    /// udaddy between pod a behind node 1's router and pod b behind node 2's: the UD connect is a SIDR exchange over
    /// rxe0's rdma_cm between the node IPs (the header carries the client's QP number), the client gets the server's
    /// QP number and an address vector to its vip, and the server answers from each received completion, whose GRH
    /// holds node 2's GID, through an address handle to pod b's vip (the router learned the sender in the SIDR
    /// exchange). The same udaddy runs directly on rxe0 first.
    func testUdaddyBetweenPodsOnTwoNodesEndsAsDirectlyOnRxe() throws {
        router = nil
        router = try FakeRouterFixture(onRealDevice: true)
        for way in [Way.direct, .shim(.preload), .shim(.dropIn)] {
            let result = try pair(["/usr/bin/udaddy", "-C", "20"], ["/usr/bin/udaddy", "-s", address(way), "-C", "20"], way: way)
            check(result, "udaddy between nodes \(way)")
            for side in [result.client, result.server] {
                XCTAssertTrue(side.output.contains("data transfers complete"), "\(way): \(side.output)")
            }
        }
    }
}
