import Etcd
import FreeFlowTestSupport
import Foundation
import Testing

/// Runs the built `ffctl` next to the test bundle.
struct FFCtlProcess {
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ffctl")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw LocalEtcdError(description: "ffctl not built at \(executable.path); run `swift build` first")
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Runs `etcdctl` (Debian etcd-client) as an operator would.
func etcdctl(_ endpoint: String, _ arguments: [String]) throws {
    guard let path = ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
        throw LocalEtcdError(description: "etcdctl not found: install the Debian package etcd-client")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["--endpoints", endpoint] + arguments
    process.environment = ["ETCDCTL_API": "3"]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    if process.terminationStatus != 0 { throw LocalEtcdError(description: "etcdctl \(arguments) failed") }
}

@Suite("ffctl against a real etcd")
struct FFCtlTests {
    let vipJSON = #"{"namespace":"default","node":"node-a","pip":"192.168.0.11","pod":"rdma-0","uid":"p-1","vip":"10.244.1.5"}"#
    let movedJSON = #"{"namespace":"default","node":"node-b","pip":"192.168.0.12","pod":"rdma-0","uid":"p-2","vip":"10.244.1.5"}"#
    let nodeJSON = #"{"addresses":["InternalIP=192.168.0.11"],"node":"node-a","pip":"192.168.0.11","uid":"n-1"}"#

    @Test func watchPrintsChangesMadeWithEtcdctlAndSaysWhenItResumes() async throws {
        try await withEtcd { etcd, _ in
            let process = Process()
            process.executableURL = FFCtlProcess.executable
            process.arguments = ["watch", "--etcd-endpoints", etcd.clientURL]
            let pipe = Pipe()
            let errors = Pipe()
            process.standardOutput = pipe
            process.standardError = errors
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            let output = OutputCollector(pipe.fileHandleForReading)
            let diagnostics = OutputCollector(errors.fileHandleForReading)
            defer { if !diagnostics.text.isEmpty { print("ffctl stderr: \(diagnostics.text)") } }
            try await eventually("watch started") { output.text.contains("# watching /freeflow/v1/") }
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/nodes/node-a", nodeJSON])
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/vips/10.244.1.5", vipJSON])
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/vips/10.244.1.5", movedJSON])
            try etcdctl(etcd.clientURL, ["del", "/freeflow/v1/vips/10.244.1.5"])
            try await eventually("four changes printed") { output.text.contains("DELETE") }
            try await etcd.restart()
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/vips/10.244.1.7", "garbage"])
            try await eventually("change after restart printed", timeout: .seconds(15)) { output.text.contains("10.244.1.7") }
            let lines = output.text.split(separator: "\n").map(String.init)
            #expect(lines.contains("2  PUT     node node-a: (none) → pip=192.168.0.11"))
            #expect(lines.contains("3  PUT     vip 10.244.1.5: (none) → pip=192.168.0.11 node=node-a pod=default/rdma-0"))
            #expect(lines.contains("4  PUT     vip 10.244.1.5: pip=192.168.0.11 node=node-a pod=default/rdma-0 → pip=192.168.0.12 node=node-b pod=default/rdma-0"))
            #expect(lines.contains("5  DELETE  vip 10.244.1.5: pip=192.168.0.12 node=node-b pod=default/rdma-0 → (none)"))
            #expect(lines.contains { $0.hasPrefix("# etcd stream broke") && $0.contains("resumed from revision 6") })
            #expect(lines.contains("6  PUT     vip 10.244.1.7: (none) → \"garbage\""))
        }
    }

    @Test func watchFromACompactedRevisionExitsWithStatus2AndSaysWhereHistoryStarts() async throws {
        try await withEtcd { etcd, client in
            try await client.put("/freeflow/v1/vips/10.0.0.1", "a")
            let last = try await client.put("/freeflow/v1/vips/10.0.0.1", "b")
            try await client.compact(revision: last.revision)
            let result = try FFCtlProcess.run(["watch", "--etcd-endpoints", etcd.clientURL, "--from-revision", "2"])
            #expect(result.status == 2)
            #expect(result.output.contains("revision 2 has been compacted"))
            #expect(result.output.contains("--from-revision \(last.revision) or later"))
        }
    }

    @Test func mapAndLookupPrintTheEntriesAndLookupFailsForAnUnknownVip() async throws {
        try await withEtcd { etcd, _ in
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/nodes/node-a", nodeJSON])
            try etcdctl(etcd.clientURL, ["put", "/freeflow/v1/vips/10.244.1.5", vipJSON])
            let map = try FFCtlProcess.run(["map", "--etcd-endpoints", etcd.clientURL])
            #expect(map.status == 0)
            #expect(map.output.contains("10.244.1.5  192.168.0.11  node-a  default/rdma-0"))
            let lookup = try FFCtlProcess.run(["lookup", "10.244.1.5", "--etcd-endpoints", etcd.clientURL])
            #expect(lookup.status == 0)
            #expect(lookup.output.contains("pgid:      ::ffff:192.168.0.11"))
            let missing = try FFCtlProcess.run(["lookup", "10.1.1.1", "--etcd-endpoints", etcd.clientURL])
            #expect(missing.status == 1)
            #expect(missing.output.contains("vip 10.1.1.1 is not in the map"))
            let port = try LocalEtcdPort.free()
            let down = try FFCtlProcess.run([
                "map", "--etcd-endpoints", "127.0.0.1:\(port)", "--etcd-request-timeout", "2",
            ])
            #expect(down.status == 1)
            #expect(down.output.contains("etcd unavailable"))
        }
    }

    @Test func theOldSpellingsStillReachEtcdAndNameTheirReplacements() throws {
        let port = try LocalEtcdPort.free()
        let down = try FFCtlProcess.run(["map", "--endpoints", "127.0.0.1:\(port)", "--timeout", "2"])
        #expect(down.status == 1)
        #expect(down.output.contains("etcd unavailable at http://127.0.0.1:\(port)"))
        #expect(down.output.contains("ffctl: --endpoints is deprecated: use --etcd-endpoints\n"))
        #expect(down.output.contains("ffctl: --timeout is deprecated: use --etcd-request-timeout\n"))
    }
}

/// Reads a pipe in the background and keeps everything read.
final class OutputCollector: @unchecked Sendable {
    let lock = NSLock()
    var data = Data()

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self else { return }
            if chunk.isEmpty { handle.readabilityHandler = nil; return }
            self.lock.withLock { self.data.append(chunk) }
        }
    }

    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
}
