import ArgumentParser
import DevicePluginAPI
import Dispatch
import Foundation
import FreeFlowTestSupport

/// `ffdemo`: the test fakes as standalone processes for `scripts/demo`, which plays a two-node cluster without
/// Kubernetes: the fake API server that iphunter lists and watches, and a fake kubelet per node that the device plugin
/// registers with and that allocates each pod its device.
@main
struct FFDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffdemo",
        abstract: "The fake Kubernetes API server and the fake kubelet of the tests, as processes for scripts/demo.",
        subcommands: [KubeAPI.self, Kubelet.self]
    )
}

/// Prints a progress line at once (stdout is a log file in the demo, which would otherwise buffer it).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Runs until SIGTERM or SIGINT.
func waitForTermination() async {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
    let sources = [SIGTERM, SIGINT].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
        source.setEventHandler { continuation.yield(number) }
        source.resume()
        return source
    }
    for await _ in stream { break }
    for source in sources { source.cancel() }
}

/// Writes `text` to `path` through a temporary file and a rename, so that a reader polling for it sees all or nothing.
func publish(_ text: String, to path: String) throws {
    try text.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
    guard rename(path + ".tmp", path) == 0 else {
        throw ValidationError("cannot rename \(path).tmp: \(String(cString: strerror(errno)))")
    }
}

struct KubeAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-api",
        abstract: "Serve the fake Kubernetes API server (list/watch of pods and nodes) with the given nodes and pods.",
        discussion: "Writes the server's URL (http://127.0.0.1:PORT) to --url-file once it serves, then runs until "
                  + "SIGTERM."
    )

    @Option(name: .customLong("url-file"), help: "Where to write the server's URL.")
    var urlFile: String

    @Option(name: .customLong("node"), help: "A node as NAME=INTERNAL_IP (repeatable).")
    var nodes: [String] = []

    @Option(name: .customLong("pod"), help: "A running pod as NAMESPACE/NAME=UID,NODE,POD_IP (repeatable).")
    var pods: [String] = []

    func validate() throws {
        for node in nodes where node.split(separator: "=").count != 2 {
            throw ValidationError("--node \(node): expected NAME=IP")
        }
        for pod in pods where Self.parsePod(pod) == nil {
            throw ValidationError("--pod \(pod): expected NAMESPACE/NAME=UID,NODE,POD_IP")
        }
    }

    static func parsePod(_ text: String) -> (namespace: String, name: String, uid: String, node: String, ip: String)? {
        let sides = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard sides.count == 2 else { return nil }
        let name = sides[0].split(separator: "/").map(String.init)
        let fields = sides[1].split(separator: ",").map(String.init)
        guard name.count == 2, fields.count == 3 else { return nil }
        return (name[0], name[1], fields[0], fields[1], fields[2])
    }

    func run() async throws {
        let server = try await FakeKubeAPIServer.start()
        for node in nodes {
            let parts = node.split(separator: "=").map(String.init)
            let object: [String: Any] = [
                "kind": "Node", "apiVersion": "v1",
                "metadata": ["name": parts[0], "uid": "node-uid-\(parts[0])"],
                "status": ["addresses": [["type": "InternalIP", "address": parts[1]],
                                         ["type": "Hostname", "address": parts[0]]]],
            ]
            try await server.apply("nodes", try JSONSerialization.data(withJSONObject: object))
        }
        for text in pods {
            guard let pod = Self.parsePod(text) else { continue }
            let object: [String: Any] = [
                "kind": "Pod", "apiVersion": "v1",
                "metadata": ["name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                             "creationTimestamp": "2026-01-01T00:00:00Z"],
                "spec": ["nodeName": pod.node],
                "status": ["phase": "Running", "podIP": pod.ip, "podIPs": [["ip": pod.ip]]],
            ]
            try await server.apply("pods", try JSONSerialization.data(withJSONObject: object))
        }
        try publish(server.url + "\n", to: urlFile)
        say("ffdemo kube-api: serving \(server.url) with \(nodes.count) nodes and \(pods.count) pods")
        await waitForTermination()
        await server.stop()
    }
}

struct Kubelet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubelet",
        abstract: "Serve a fake kubelet's registration socket; once a device plugin registered and lists healthy "
                + "devices, allocate devices as the kubelet does when a container starts.",
        discussion: """
            For each --allocate NAME=DEVICE it calls the plugin's Allocate for one container with that device and \
            writes the answer to <--out-dir>/NAME.alloc, one line each: `env KEY=VALUE`, `mount HOST_PATH \
            CONTAINER_PATH ro|rw`, `cdi NAME`. Then it runs until SIGTERM (the plugin keeps its registration).
            """
    )

    @Option(name: .customLong("plugin-dir"), help: "The device-plugin folder (kubelet.sock is served there).")
    var pluginDirectory: String

    @Option(name: .customLong("allocate"), help: "A container to allocate for, as NAME=DEVICE_ID (repeatable).")
    var allocations: [String] = []

    @Option(name: .customLong("out-dir"), help: "Where the NAME.alloc files go.")
    var outDirectory = "."

    @Option(help: "Seconds to wait for the plugin's registration and healthy devices.")
    var timeout = 120.0

    func run() async throws {
        let kubelet = try FakeKubelet(directory: pluginDirectory)
        try await kubelet.start()
        say("ffdemo kubelet: serving \(kubelet.socketPath)")
        let deadline = Date().addingTimeInterval(timeout)
        while !(kubelet.deviceLists.last.map { !$0.isEmpty && $0.allSatisfy { $0.health == "Healthy" } } ?? false) {
            guard Date() < deadline else {
                await kubelet.stop()
                throw ValidationError("no plugin registered with healthy devices within \(timeout) s (registrations: "
                                    + "\(kubelet.registrations.count))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let registration = kubelet.registrations.last!
        say("ffdemo kubelet: \(registration.resourceName) registered at \(registration.endpoint), devices "
            + "\(kubelet.deviceLists.last!.map(\.id).joined(separator: ","))")
        for allocation in allocations {
            let parts = allocation.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--allocate \(allocation): expected NAME=DEVICE_ID") }
            let response = try await kubelet.plugin { plugin in
                try await plugin.allocate(.with { $0.containerRequests = [.with { $0.devicesIds = [parts[1]] }] })
            }
            guard let container = response.containerResponses.first else {
                throw ValidationError("Allocate answered no container")
            }
            var lines = container.envs.sorted { $0.key < $1.key }.map { "env \($0.key)=\($0.value)" }
            lines += container.mounts.map { "mount \($0.hostPath) \($0.containerPath) \($0.readOnly ? "ro" : "rw")" }
            lines += container.cdiDevices.map { "cdi \($0.name)" }
            try publish(lines.joined(separator: "\n") + "\n", to: "\(outDirectory)/\(parts[0]).alloc")
            say("ffdemo kubelet: allocated \(parts[1]) for \(parts[0]): \(container.mounts.count) mounts, "
                + "\(container.envs.count) env vars")
        }
        await waitForTermination()
        await kubelet.stop()
    }
}
