import FreeFlowTestSupport
import Foundation
import XCTest

/// Where the built artifacts are: next to the test bundle (.build/<configuration>), or in `FFSHIM_ARTIFACTS` (the
/// lab benchmark measures a release router and shim from a debug test bundle that way).
enum ShimArtifacts {
    static var directory: URL {
        if let folder = ProcessInfo.processInfo.environment["FFSHIM_ARTIFACTS"], !folder.isEmpty {
            return URL(fileURLWithPath: folder)
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }
    static var preload: String { directory.appendingPathComponent("libffclient.so").path }
    static var dropInLibrary: String { directory.appendingPathComponent("libffclient-dropin.so").path }
    static var router: String { directory.appendingPathComponent("ffrouter").path }
    static var ffctl: String { directory.appendingPathComponent("ffctl").path }
    /// The repository's scripts (scripts/lab-pod).
    static var scripts: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts")
    }
    /// The C programs the tests compile (Tests/FFClientShimTests/Programs).
    static var programs: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Programs") }

    /// Fails the test (rather than skipping) when an artifact is missing: `swift build --build-tests` makes them all.
    static func require(_ path: String) throws {
        guard FileManager.default.isExecutableFile(atPath: path) || FileManager.default.fileExists(atPath: path) else {
            throw HarnessError("\(path) is missing; build with `swift build --build-tests`")
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a finished program did.
struct ProgramResult {
    let status: Int32
    let output: String
    let errors: String
}

/// A program started with its output going to files (no pipe can fill up and stall it).
final class RunningProgram {
    private let process = Process()
    private let outputPath: String
    private let errorPath: String

    /// Starts `executable` under coreutils' `timeout`, so a hung program is killed after `seconds`.
    init(_ executable: String, _ arguments: [String], environment: [String: String], directory: String, seconds: Int = 120) throws {
        let tag = UUID().uuidString.prefix(8)
        outputPath = "\(directory)/out-\(tag).txt"
        errorPath = "\(directory)/err-\(tag).txt"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil),
              FileManager.default.createFile(atPath: errorPath, contents: nil) else {
            throw HarnessError("cannot create output files in \(directory)")
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["-s", "KILL", "\(seconds)", executable] + arguments
        var env = ProcessInfo.processInfo.environment
        for key in ["LD_PRELOAD", "LD_LIBRARY_PATH", "FFCLIENT_SOCKET"] { env[key] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
    }

    /// What the program has written to standard output so far.
    var outputSoFar: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Kills the program itself with SIGKILL (`timeout` started it as its only child; the pod helper execs into it).
    func kill9() {
        let pid = process.processIdentifier
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        for child in children.split(separator: " ").compactMap({ pid_t($0) }) { Glibc.kill(child, SIGKILL) }
    }

    /// Waits for the program to end and returns what it did.
    func finish() -> ProgramResult {
        process.waitUntilExit()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        return ProgramResult(status: process.terminationStatus, output: output, errors: errors)
    }

    /// Ends the program abruptly, as a pod killed: `timeout` passes SIGTERM on, and nothing in the program handles it.
    func kill() { process.terminate() }

    /// Runs a program to its end.
    static func run(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
                    directory: String) throws -> ProgramResult {
        try RunningProgram(executable, arguments, environment: environment, directory: directory).finish()
    }
}

/// Routers serving pods a (10.9.0.1) and b (10.9.0.2) from a temporary directory, plus the two ways a program loads
/// the shim. By default one `ffrouter --fake-device` serves both pods on the host, and programs are host processes
/// given their pod's socket in FFCLIENT_SOCKET. `onRealDevice` (the Soft-RoCE lab only) starts two routers on rxe0, one
/// per lab address ("node 1" serves pod a, "node 2" pod b), so that traffic crosses between the node GIDs as between
/// two machines, and runs programs in real pods (scripts/lab-pod): no device visible, the router socket mounted at the
/// shim's default path, and the pods' own network, where they reach each other by vip.
final class FakeRouterFixture {
    let directory: String
    private var routers: [Process] = []
    /// The routers' process ids (for CPU time and liveness checks).
    var routerPIDs: [Int32] { routers.map(\.processIdentifier) }
    private let nodeOf: [String: String]
    /// Programs run in lab pods (namespaces) rather than as host processes.
    let inPods: Bool
    static let vips = ["a": "10.9.0.1", "b": "10.9.0.2"]

    /// `podsOnOneNode` (lab only): one router on node 1 serves both pods (its connection manager connects only its own pods).
    /// `FFSHIM_ROUTER_ARGS` (space-separated) adds flags to every router (benchmarks compare router tunings that way).
    /// `routerArguments` are added to every router's flags.
    init(onRealDevice: Bool = false, podsOnOneNode: Bool = false, routerArguments: [String] = []) throws {
        try ShimArtifacts.require(ShimArtifacts.router)
        try ShimArtifacts.require(ShimArtifacts.preload)
        try ShimArtifacts.require(ShimArtifacts.dropInLibrary)
        let env = ProcessInfo.processInfo.environment
        var nodes = [(name: "fake", ip: "10.0.2.15", pods: ["a=10.9.0.1", "b=10.9.0.2"])]
        if onRealDevice {
            guard env["FFLAB"] == "1", let ip1 = env["FFLAB_IP1"], let ip2 = env["FFLAB_IP2"] else {
                throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run scripts/test")
            }
            nodes = podsOnOneNode ? [(name: "node1", ip: ip1, pods: ["a=10.9.0.1", "b=10.9.0.2"])]
                : [(name: "node1", ip: ip1, pods: ["a=10.9.0.1"]), (name: "node2", ip: ip2, pods: ["b=10.9.0.2"])]
        }
        nodeOf = !onRealDevice ? ["a": "fake", "b": "fake"] : podsOnOneNode ? ["a": "node1", "b": "node1"] : ["a": "node1", "b": "node2"]
        inPods = onRealDevice
        directory = NSTemporaryDirectory() + "ffshim-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/dropin", withIntermediateDirectories: true)
        // The drop-in layout: the library under the name the dynamic linker looks for.
        try FileManager.default.createSymbolicLink(atPath: directory + "/dropin/libibverbs.so.1", withDestinationPath: ShimArtifacts.dropInLibrary)
        // librdmacm's API is in the same library (scripts/shim-install makes the same link).
        try FileManager.default.createSymbolicLink(atPath: directory + "/dropin/librdmacm.so.1", withDestinationPath: "libibverbs.so.1")
        let map = onRealDevice ? "10.9.0.1 \(nodes[0].ip)\n10.9.0.2 \(nodes[nodes.count - 1].ip)\n" : "10.9.0.1 10.0.2.15\n10.9.0.2 10.0.2.15\n"
        try map.write(toFile: directory + "/map.txt", atomically: true, encoding: .utf8)
        for node in nodes {
            let sockets = "\(directory)/sockets/\(node.name)"
            try FileManager.default.createDirectory(atPath: sockets, withIntermediateDirectories: true)
            let router = Process()
            router.executableURL = URL(fileURLWithPath: ShimArtifacts.router)
            var arguments: [String] = onRealDevice ? [] : ["--fake-device"]
            arguments += ["--node-ip", node.ip, "--socket-dir", sockets] + node.pods.flatMap { ["--pod", $0] }
            arguments += ["--map", directory + "/map.txt", "--metrics-port", "0", "--log-level", "warning"]
            arguments += routerArguments + (env["FFSHIM_ROUTER_ARGS"] ?? "").split(separator: " ").map(String.init)
            router.arguments = arguments
            try router.run()
            routers.append(router)
        }
        for pod in ["a", "b"] { try waitForSocket(socket(pod)) }
        if inPods {
            for (pod, vip) in Self.vips.sorted(by: { $0.key < $1.key }) {
                _ = try RunningProgram.run(Self.labPod, ["down", pod], directory: directory)
                let up = try RunningProgram.run(Self.labPod, ["up", pod, "--vip", vip], directory: directory)
                guard up.status == 0 else { throw HarnessError("lab-pod up \(pod) failed: \(up.errors)") }
            }
        }
    }

    private static var labPod: String { ShimArtifacts.scripts.appendingPathComponent("lab-pod").path }

    deinit {
        if inPods {
            for pod in Self.vips.keys { _ = try? RunningProgram.run(Self.labPod, ["down", pod], directory: directory) }
        }
        for router in routers where router.isRunning {
            router.terminate()
            router.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Pod `pod`'s router socket.
    func socket(_ pod: String) -> String { "\(directory)/sockets/\(nodeOf[pod] ?? "fake")/\(pod).sock" }

    /// A router's admin socket (node "fake", or "node1"/"node2" on the real device).
    func adminSocket(node: String) -> String { "\(directory)/sockets/\(node)/admin.sock" }

    /// The routers' nodes.
    var nodes: [String] { Array(Set(nodeOf.values)).sorted() }

    /// The address a program uses to reach a server in pod `pod`: its vip in lab pods, loopback on the host.
    func address(of pod: String) -> String { inPods ? Self.vips[pod] ?? "" : "127.0.0.1" }

    /// Starts `executable` as pod `pod` with the shim loaded in `mode` (in the pod's namespaces in the lab).
    /// `extra` adds to (or overrides) the pod's environment.
    func start(_ executable: String, _ arguments: [String], pod: String, mode: ShimMode, extra: [String: String] = [:],
               seconds: Int = 120) throws -> RunningProgram {
        let env = environment(pod: pod, mode: mode).merging(extra) { $1 }
        if inPods {
            return try RunningProgram(Self.labPod, ["exec", pod, "--socket", socket(pod), "--", executable] + arguments,
                                      environment: env, directory: directory, seconds: seconds)
        }
        return try RunningProgram(executable, arguments, environment: env, directory: directory, seconds: seconds)
    }

    /// Waits until something listens on TCP `port` in pod `pod`'s network (the host's, outside the lab).
    func waitForListener(pod: String, port: Int) throws {
        guard inPods else { return try FFClientShimTests.waitForListener(port: port) }
        let pid = try RunningProgram.run(Self.labPod, ["pid", pod], directory: directory).output.trimmingCharacters(in: .whitespacesAndNewlines)
        try FFClientShimTests.waitForListener(port: port, tables: ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"])
    }

    /// A router's status as `ffctl router status --json` prints it.
    func status(node: String) throws -> [String: Any] {
        let result = try RunningProgram.run(ShimArtifacts.ffctl, ["router", "status", "--admin-socket", adminSocket(node: node), "--json"],
                                            directory: directory)
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw HarnessError("ffctl router status on \(node) failed: \(result.errors)")
        }
        return object
    }

    /// The environment that runs a program as pod `pod` with the shim loaded in `mode`. In a lab pod the router
    /// socket is at the shim's default path, so FFCLIENT_SOCKET stays unset.
    func environment(pod: String, mode: ShimMode) -> [String: String] {
        var env = inPods ? [:] : ["FFCLIENT_SOCKET": socket(pod)]
        switch mode {
        case .preload: env["LD_PRELOAD"] = ShimArtifacts.preload
        case .dropIn: env["LD_LIBRARY_PATH"] = directory + "/dropin"
        }
        return env
    }

    /// Runs a stock client/server program: the server as pod a, then, once it listens on a fresh loopback
    /// port, the client as pod b connecting to it. `arguments(port)` are both sides' options.
    func runPair(_ program: String, mode: ShimMode, environment extra: [String: String] = [:],
                 arguments: (Int) -> [String]) throws -> (client: ProgramResult, server: ProgramResult) {
        // A port per run, so parallel test runs on a shared machine do not meet.
        let port = 20_000 + Int.random(in: 0..<20_000)
        let server = try start("/usr/bin/\(program)", arguments(port), pod: "a", mode: mode, extra: extra)
        try waitForListener(pod: "a", port: port)
        let client = try start("/usr/bin/\(program)", arguments(port) + [address(of: "a")], pod: "b", mode: mode, extra: extra).finish()
        return (client, server.finish())
    }

    /// Runs a perftest-style client/server pair once, on a fresh port: directly on rxe0 (the server with `gid(0)`,
    /// the client with `gid(1)`, by loopback in the node's network), or through the shim with the server as pod a and
    /// the client as pod b reaching it by `address(of: "a")`.
    func pair(_ program: String, _ options: [String], way: Way, gid: (Int) -> [String]) throws -> (client: ProgramResult, server: ProgramResult) {
        let port = 20_000 + Int.random(in: 0..<20_000)
        let executable = "/usr/bin/\(program)"
        switch way {
        case .direct:
            let device = ["-d", "rxe0"]
            let server = try RunningProgram(executable, options + device + gid(0) + ["-p", "\(port)"], environment: [:], directory: directory)
            try FFClientShimTests.waitForListener(port: port)
            let client = try RunningProgram(executable, options + device + gid(1) + ["-p", "\(port)", "127.0.0.1"], environment: [:],
                                            directory: directory).finish()
            return (client, server.finish())
        case .shim(let mode):
            let server = try start(executable, options + gid(0) + ["-p", "\(port)"], pod: "a", mode: mode)
            try waitForListener(pod: "a", port: port)
            let client = try start(executable, options + gid(1) + ["-p", "\(port)", address(of: "a")], pod: "b", mode: mode).finish()
            return (client, server.finish())
        }
    }

    /// Waits until pod `pod` holds at least `count` listening rdma_cm ids, as its router's status reports them
    /// (`ffctl router status --json`), within a generous bound: a librdmacm server is ready for its client.
    func waitForCMListeners(pod: String, count: Int = 1, seconds: Double = 60) throws {
        try waitForStatus(of: pod, "\(count) rdma_cm listeners of pod \(pod)", seconds: seconds) { clients in
            clients.filter { ($0["identity"] as? [String: Any])?["pod"] as? String == pod }
                .reduce(0) { $0 + ((($1["objects"] as? [String: Any])?["cmListener"] as? Int) ?? 0) } >= count
        }
    }

    /// Waits until the router serving `pod` has no client left (every session closed, its objects and cm ids gone).
    func waitForNoClients(of pod: String, seconds: Double = 60) throws {
        try waitForStatus(of: pod, "no clients on pod \(pod)'s router", seconds: seconds) { $0.isEmpty }
    }

    /// Polls `ffctl router status --json` of the router serving `pod` until `condition` holds for its clients.
    private func waitForStatus(of pod: String, _ what: String, seconds: Double, _ condition: ([[String: Any]]) -> Bool) throws {
        let admin = "\(directory)/sockets/\(nodeOf[pod] ?? "fake")/admin.sock"
        let ffctl = ShimArtifacts.directory.appendingPathComponent("ffctl").path
        var last = ""
        do {
            try eventuallyBlocking(what, timeout: .seconds(seconds), every: .milliseconds(100)) {
                let result = try RunningProgram.run(ffctl, ["router", "status", "--json", "--admin-socket", admin],
                                                    directory: directory)
                last = "\(result.output) \(result.errors)"
                guard result.status == 0, let data = result.output.data(using: .utf8),
                      let status = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      let clients = status["clients"] as? [[String: Any]] else { return false }
                return condition(clients)
            }
        } catch let timedOut as ConditionTimedOut {
            throw HarnessError("\(timedOut); the last status: \(last)")
        }
    }

    /// The router starts in well under a second; wait for its socket with a generous bound.
    private func waitForSocket(_ path: String, seconds: Double = 60) throws {
        try eventuallyBlocking("router socket \(path) to appear", timeout: .seconds(seconds)) {
            if FileManager.default.fileExists(atPath: path) { return true }
            if let dead = routers.first(where: { !$0.isRunning }) {
                throw HarnessError("ffrouter exited with status \(dead.terminationStatus) during start-up")
            }
            return false
        }
    }
}

/// How a side of a lab pair runs: through the shim in a pod, or directly on rxe0 (the baseline).
enum Way: CustomStringConvertible {
    case direct, shim(ShimMode)
    var description: String {
        switch self {
        case .direct: "direct on rxe0"
        case .shim(let mode): "through the shim (\(mode))"
        }
    }
}

/// How a program gets the shim.
enum ShimMode: CaseIterable {
    /// LD_PRELOAD=libffclient.so.
    case preload
    /// A directory holding it as libibverbs.so.1, first on LD_LIBRARY_PATH.
    case dropIn
}

/// Compiles one of Programs/*.c against <infiniband/verbs.h> and `libraries` into `directory`.
func compileProgram(_ name: String, into directory: String, libraries: [String] = ["-libverbs"]) throws -> String {
    let output = "\(directory)/\(name)"
    let result = try RunningProgram.run("/usr/bin/cc", ["-O2", "-Wall", "-Werror", "-o", output,
                                                        ShimArtifacts.programs.appendingPathComponent("\(name).c").path] + libraries,
                                        directory: directory)
    guard result.status == 0 else { throw HarnessError("cc \(name).c failed: \(result.errors)") }
    return output
}

/// Waits until something listens on TCP `port` (a pingpong server is ready), within a bound; `tables` are the
/// network's /proc tables (this process's own network by default).
func waitForListener(port: Int, tables: [String] = ["/proc/net/tcp", "/proc/net/tcp6"], seconds: Double = 60) throws {
    let hex = String(format: ":%04X", port)
    try eventuallyBlocking("something to listen on port \(port)", timeout: .seconds(seconds)) {
        tables.contains { table in
            let text = (try? String(contentsOfFile: table, encoding: .utf8)) ?? ""
            // local_address is the second column, state 0A is LISTEN.
            return text.split(separator: "\n").dropFirst().contains { line in
                let fields = line.split(separator: " ")
                return fields.count > 3 && fields[1].hasSuffix(hex) && fields[3] == "0A"
            }
        }
    }
}

/// The node's huge pages (/proc/meminfo).
enum HugePages {
    /// Free huge pages of the default size.
    static var free: Int {
        let text = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("HugePages_Free:") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }
}

/// Checks the report of Programs/memcheck.c: every check passed for every kind of memory, huge pages included when
/// `hugePages` (else memcheck must have said it skipped them).
func verifyMemcheck(_ result: ProgramResult, hugePages: Bool, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(result.status, 0, "\(label): \(result.output)\n\(result.errors)", file: file, line: line)
    XCTAssertTrue(result.output.hasSuffix("ok all\n"), "\(label): \(result.output)", file: file, line: line)
    for check in ["wr api write inline and send with imm", "wr api read and fetch and add",
                  "wr api refuses a setter without a request, abort drops the batch",
                  "cq_ex start_poll, next_poll and read_* report both completions",
                  "partial overlap, first dereg first keeps memory valid", "partial overlap, second dereg first keeps memory valid",
                  "spanning overlap keeps memory valid"] {
        XCTAssertTrue(result.output.contains("ok \(check)\n"), "\(label): \(check) missing", file: file, line: line)
    }
    for kind in ["malloc", "mmap", "aligned_alloc", "stack"] + (hugePages ? ["hugepages"] : []) {
        for check in ["reg_mr keeps contents", "send", "write", "write with imm", "read", "compare and swap",
                      "fetch and add", "nested reg_mr", "dereg_mr keeps memory valid"] {
            XCTAssertTrue(result.output.contains("ok \(kind) \(check)\n"), "\(label): \(kind) \(check) missing", file: file, line: line)
        }
    }
    let hugeReport = hugePages ? "ok hugepages stay on " : "skip hugepages"
    XCTAssertTrue(result.output.contains(hugeReport), "\(label): no '\(hugeReport)' in \(result.output)", file: file, line: line)
    if hugePages {
        // Two huge pages may not be free; with them, a range reaching out of a huge-page region is refused.
        XCTAssertTrue(result.output.contains("ok hugepages composite refused\n") || result.output.contains("skip hugepages composite"),
                      "\(label): no huge-page composite case in \(result.output)", file: file, line: line)
    }
}
