import AsyncHTTPClient
import Etcd
import FreeFlowTestSupport
import Foundation
import IPHunter
import Testing

@Suite("iphunter executable and configuration")
struct ExecutableTests {
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("iphunter")
    }

    func httpGet(_ url: String) async throws -> (Int, String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    @Test func iphunterPublishesServesMetricsAndHealthAndResignsOnSIGTERM() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable.path) else {
            Issue.record("iphunter not built at \(Self.executable.path)")
            return
        }
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("pods", podJSON("p0", ip: "10.9.0.1", node: "node-a"))
            let port = try LocalEtcdPort.free()
            let process = Process()
            process.executableURL = Self.executable
            process.arguments = ["--etcd-endpoints", world.etcd.clientURL, "--api-server", world.kube.url, "--root", world.schema.root,
                                 "--listen-host", "127.0.0.1", "--listen-port", String(port), "--identity", "exe-1", "--lease-ttl", "30", "--log-level", "warning"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer { if process.isRunning { process.interrupt() } }
            try await eventually("map published by the executable") { try await world.vips().count == 1 }
            try await eventually("healthy") { (try? await httpGet("http://127.0.0.1:\(port)/healthz"))?.0 == 200 }
            let (status, metrics) = try await httpGet("http://127.0.0.1:\(port)/metrics")
            #expect(status == 200)
            #expect(metrics.contains("iphunter_etcd_writes_total 2"))
            #expect(metrics.contains("iphunter_pods_seen 1"))
            #expect(metrics.contains("iphunter_is_leader 1"))
            #expect(metrics.contains("iphunter_last_sync_timestamp_seconds"))
            #expect(try await world.client.get(world.schema.leaderKey)?.valueString == "exe-1")
            process.terminate()
            try await eventually("exits on SIGTERM", timeout: .seconds(10)) { !process.isRunning }
            #expect(process.terminationStatus == 0)
            // Resigned: the 30 s lease was revoked, so the leader key is gone at once.
            #expect(try await world.client.get(world.schema.leaderKey) == nil)
            #expect(try await world.vips().count == 1, "stopping never wipes the map")
        }
    }

    @Test func kubeconfigYAMLSelectsTheCurrentContextsClusterAndUser() throws {
        let yaml = """
            apiVersion: v1
            kind: Config
            clusters:
            - cluster:
                server: https://10.0.0.1:6443
                insecure-skip-tls-verify: true
              name: other
            - name: main
              cluster:
                certificate-authority: ca.crt
                server: "https://kube.example:6443"
            contexts:
            - context:
                cluster: main
                user: admin
              name: main-admin
            current-context: main-admin
            users:
            - name: admin
              user:
                token: abc.def
            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kc-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("config")
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        let config = try KubeConfigFile.load(path: file.path)
        #expect(config.server == "https://kube.example:6443")
        #expect(config.token == "abc.def")
        #expect(config.caFile == directory.path + "/ca.crt")
        #expect(!config.insecureSkipTLSVerify)
        let other = try KubeConfigFile.load(path: file.path, context: "main-admin")
        #expect(other.server == config.server)
        #expect(throws: KubeError.self) { try KubeConfigFile.load(path: file.path, context: "missing") }
    }

    @Test func inClusterConfigNeedsTheServiceEnvironment() throws {
        #expect(throws: KubeError.self) { try KubeConfiguration.inCluster(environment: [:]) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sa-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "token-1\n".write(to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        let config = try KubeConfiguration.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                                     serviceAccountDirectory: directory.path)
        #expect(config.server == "https://10.96.0.1:443")
        #expect(config.caFile == directory.path + "/ca.crt")
        #expect(config.tokenFile == directory.path + "/token")
    }
}
