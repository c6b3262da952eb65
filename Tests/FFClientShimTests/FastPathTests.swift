import FreeFlowTestSupport
import Foundation
import Glibc
import XCTest

/// The shared-memory fast path through the shim against `ffrouter --fake-device`: the socket path behind
/// FFCLIENT_FASTPATH=0, an idle router that sleeps with sessions connected, and kill -9 of a client whose rings are
/// full. (Every other test in this target runs with the fast path on: it is the default.)
final class FastPathTests: XCTestCase {
    private var router: FakeRouterFixture!

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    private func pingpong(_ options: [String], environment: [String: String], file: StaticString = #filePath, line: UInt = #line) throws {
        let (client, served) = try router.runPair("ibv_rc_pingpong", mode: .preload, environment: environment) {
            ["-g", "0", "-p", "\($0)", "-n", "200"] + options
        }
        XCTAssertEqual(client.status, 0, "client: \(client.output) \(client.errors)", file: file, line: line)
        XCTAssertEqual(served.status, 0, "server: \(served.output) \(served.errors)", file: file, line: line)
        XCTAssertTrue(client.output.contains("200 iters in"), client.output, file: file, line: line)
    }

    func testRCPingpongWithTheFastPathOff() throws { try pingpong([], environment: ["FFCLIENT_FASTPATH": "0"]) }
    func testRCPingpongWithEventsAndTheFastPathOff() throws { try pingpong(["-e"], environment: ["FFCLIENT_FASTPATH": "0"]) }

    /// `--datapath-spin-us 0 --datapath-yield-us 0`: the data-path thread sleeps whenever a round finds nothing, so
    /// every post reaches it through the doorbell and every completion through a CQ event; nothing may be missed.
    /// With `--datapath-realtime-priority 1` the thread runs in SCHED_FIFO (when the tests may: as root).
    func testARouterThatSleepsAtOnceMissesNoPostAndNoCompletion() throws {
        router = nil
        router = try FakeRouterFixture(routerArguments: ["--datapath-spin-us", "0", "--datapath-yield-us", "0", "--datapath-realtime-priority", "1"])
        if geteuid() == 0 {
            let held = try hold(1)
            defer { release(held) }
            let pid = router.routerPIDs[0]
            try eventuallyBlocking("the data-path thread ffr-dp0 in SCHED_FIFO", timeout: .seconds(60)) {
                Self.schedulingPolicy(of: "ffr-dp0", in: pid) == SCHED_FIFO
            }
        }
        try pingpong([], environment: [:])
        try pingpong(["-e"], environment: [:])
        let (client, server) = try router.runPair("ib_send_bw", mode: .preload) { ["-x", "0", "-p", "\($0)", "-s", "4096", "-n", "500"] }
        XCTAssertEqual(client.status, 0, "client: \(client.output) \(client.errors)")
        XCTAssertEqual(server.status, 0, "server: \(server.output) \(server.errors)")
        XCTAssertTrue(client.output.contains("#bytes"), client.output)
    }
    /// The scheduling policy (`/proc/PID/task/TID/stat` field 41) of `pid`'s thread named `name`, or nil.
    private static func schedulingPolicy(of name: String, in pid: Int32) -> Int32? {
        let tasks = "/proc/\(pid)/task"
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? [] {
            guard let comm = try? String(contentsOfFile: "\(tasks)/\(tid)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
                  let stat = try? String(contentsOfFile: "\(tasks)/\(tid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // After the command's closing parenthesis come fields 3 (state) onwards.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 38 ? Int32(fields[38]) : nil
        }
        return nil
    }

    /// Starts `count` programs holding sessions and waits until each says it is set up; returns them and their pids.
    private func hold(_ count: Int, fill: Bool = false) throws -> [(RunningProgram, Int32)] {
        let program = try compileProgram("ringhold", into: router.directory)
        var held: [(RunningProgram, Int32)] = []
        for i in 0..<count {
            let running = try RunningProgram(program, fill ? ["fill"] : [], environment: router.environment(pod: i % 2 == 0 ? "a" : "b", mode: .preload),
                                             directory: router.directory, seconds: 120)
            var pid: Int32 = 0
            try eventuallyBlocking("program \(i) to set up its session", timeout: .seconds(60)) {
                let words = running.outputSoFar.split(whereSeparator: \.isWhitespace)
                guard let at = words.firstIndex(of: "pid"), at + 1 < words.count, let p = Int32(words[at + 1]) else { return false }
                pid = p
                return true
            }
            held.append((running, pid))
        }
        return held
    }

    private func release(_ held: [(RunningProgram, Int32)]) {
        for (_, pid) in held where pid > 0 { kill(pid, SIGKILL) }
        for (program, _) in held { _ = program.finish() }
    }

    func testIdleRouterSleepsWithTenSessionsConnected() throws {
        let held = try hold(10)
        defer { release(held) }
        let pid = try XCTUnwrap(router.routerPIDs.first)
        // After the set-up traffic the data-path thread sleeps within a few milliseconds: wait (bounded) for a 200 ms
        // window that costs the router at most a tick, then measure 2 s.
        try eventuallyBlocking("the router to go quiet", timeout: .seconds(30)) {
            let before = cpuTicks(pid)
            usleep(200_000)
            return cpuTicks(pid) - before <= 1
        }
        let before = cpuTicks(pid)
        let start = Date()
        usleep(2_000_000)
        let ticks = cpuTicks(pid) - before
        let elapsed = Date().timeIntervalSince(start)
        let percent = Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK))) / elapsed * 100
        // A spinning poller would show ~100 %; a sleeping one 0 (a tick or two of timers at most).
        XCTAssertLessThan(percent, 2.0, "router used \(percent) % CPU over \(elapsed) s idle with 10 sessions")
    }

    func testKillingAClientWithFullRingsLeavesTheRouterServingOthers() throws {
        let held = try hold(2, fill: true)
        for (program, _) in held { XCTAssertTrue(program.outputSoFar.contains("full"), program.outputSoFar) }
        kill(held[0].1, SIGKILL)
        _ = held[0].0.finish()
        XCTAssertTrue(router.routerPIDs.allSatisfy { kill($0, 0) == 0 }, "the router survived")
        // Another session keeps working, and a new pair runs through the same data-path thread.
        try pingpong([], environment: [:])
        XCTAssertTrue(held[1].0.outputSoFar.contains("full"))
        release([held[1]])
    }
}

/// utime + stime of a process in clock ticks (/proc/PID/stat fields 14 and 15).
private func cpuTicks(_ pid: Int32) -> Int {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After "pid (comm)": field 3 (state) is fields[0], so utime (14) is fields[11] and stime (15) fields[12].
    guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
    return user + system
}
