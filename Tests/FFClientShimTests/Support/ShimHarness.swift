import Foundation
import XCTest

/// Where the built artifacts are: next to the test bundle (.build/<configuration>).
enum ShimArtifacts {
    static var directory: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    static var preload: String { directory.appendingPathComponent("libffclient.so").path }
    static var dropInLibrary: String { directory.appendingPathComponent("libffclient-dropin.so").path }
    static var router: String { directory.appendingPathComponent("ffrouter").path }
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

    /// Waits for the program to end and returns what it did.
    /// What the program has written to stdout so far.
    var outputSoFar: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    func finish() -> ProgramResult {
        process.waitUntilExit()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        return ProgramResult(status: process.terminationStatus, output: output, errors: errors)
    }

    /// Runs a program to its end.
    static func run(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
                    directory: String) throws -> ProgramResult {
        try RunningProgram(executable, arguments, environment: environment, directory: directory).finish()
    }
}

/// Routers serving pods a (10.9.0.1) and b (10.9.0.2) from a temporary directory, plus the two ways a program loads
/// the shim. By default one `ffrouter --fake-device` serves both pods on the host; `onRealDevice` (the Soft-RoCE lab
/// only) starts two routers on rxe0, one per lab address ("node 1" serves pod a, "node 2" pod b), so that traffic
/// crosses between the node GIDs as between two machines.
final class FakeRouterFixture {
    let directory: String
    private var routers: [Process] = []
    /// The routers' process ids (for CPU time and liveness checks).
    var routerPIDs: [Int32] { routers.map(\.processIdentifier) }
    private let nodeOf: [String: String]

    init(onRealDevice: Bool = false) throws {
        try ShimArtifacts.require(ShimArtifacts.router)
        try ShimArtifacts.require(ShimArtifacts.preload)
        try ShimArtifacts.require(ShimArtifacts.dropInLibrary)
        let env = ProcessInfo.processInfo.environment
        var nodes = [(name: "fake", ip: "10.0.2.15", pods: ["a=10.9.0.1", "b=10.9.0.2"])]
        if onRealDevice {
            guard env["FFLAB"] == "1", let ip1 = env["FFLAB_IP1"], let ip2 = env["FFLAB_IP2"] else {
                throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run scripts/test")
            }
            nodes = [(name: "node1", ip: ip1, pods: ["a=10.9.0.1"]), (name: "node2", ip: ip2, pods: ["b=10.9.0.2"])]
        }
        nodeOf = onRealDevice ? ["a": "node1", "b": "node2"] : ["a": "fake", "b": "fake"]
        directory = NSTemporaryDirectory() + "ffshim-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/dropin", withIntermediateDirectories: true)
        // The drop-in layout: the library under the name the dynamic linker looks for.
        try FileManager.default.createSymbolicLink(atPath: directory + "/dropin/libibverbs.so.1", withDestinationPath: ShimArtifacts.dropInLibrary)
        let map = onRealDevice ? "10.9.0.1 \(nodes[0].ip)\n10.9.0.2 \(nodes[1].ip)\n" : "10.9.0.1 10.0.2.15\n10.9.0.2 10.0.2.15\n"
        try map.write(toFile: directory + "/map.txt", atomically: true, encoding: .utf8)
        for node in nodes {
            let sockets = "\(directory)/sockets/\(node.name)"
            try FileManager.default.createDirectory(atPath: sockets, withIntermediateDirectories: true)
            let router = Process()
            router.executableURL = URL(fileURLWithPath: ShimArtifacts.router)
            router.arguments = (onRealDevice ? [] : ["--fake-device"]) + ["--node-ip", node.ip, "--socket-dir", sockets]
                + node.pods.flatMap { ["--pod", $0] } + ["--map", directory + "/map.txt", "--metrics-port", "0", "--log-level", "warning"]
            try router.run()
            routers.append(router)
        }
        for pod in ["a", "b"] { try waitForSocket(socket(pod)) }
    }

    deinit {
        for router in routers where router.isRunning {
            router.terminate()
            router.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Pod `pod`'s router socket.
    func socket(_ pod: String) -> String { "\(directory)/sockets/\(nodeOf[pod] ?? "fake")/\(pod).sock" }

    /// The environment that runs a program as pod `pod` with the shim loaded in `mode`.
    func environment(pod: String, mode: ShimMode) -> [String: String] {
        var env = ["FFCLIENT_SOCKET": socket(pod)]
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
        let server = try RunningProgram("/usr/bin/\(program)", arguments(port), environment: environment(pod: "a", mode: mode).merging(extra) { $1 },
                                        directory: directory)
        try waitForListener(port: port)
        let client = try RunningProgram("/usr/bin/\(program)", arguments(port) + ["127.0.0.1"],
                                        environment: environment(pod: "b", mode: mode).merging(extra) { $1 }, directory: directory).finish()
        return (client, server.finish())
    }

    /// The router starts in well under a second; wait for its socket with a generous bound.
    private func waitForSocket(_ path: String, seconds: Double = 60) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !FileManager.default.fileExists(atPath: path) {
            if let dead = routers.first(where: { !$0.isRunning }) {
                throw HarnessError("ffrouter exited with status \(dead.terminationStatus) during start-up")
            }
            guard Date() < deadline else { throw HarnessError("router socket \(path) did not appear in \(seconds) s") }
            usleep(20_000)
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

/// Waits until something listens on TCP `port` of loopback (a pingpong server is ready), within a bound.
func waitForListener(port: Int, seconds: Double = 60) throws {
    let hex = String(format: ":%04X", port)
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = (try? String(contentsOfFile: table, encoding: .utf8)) ?? ""
            // local_address is the second column, state 0A is LISTEN.
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                if fields.count > 3, fields[1].hasSuffix(hex), fields[3] == "0A" { return }
            }
        }
        guard Date() < deadline else { throw HarnessError("nothing listened on port \(port) within \(seconds) s") }
        usleep(20_000)
    }
}
