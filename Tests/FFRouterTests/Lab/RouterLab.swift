import FFClient
import FFProtocol
import FFSystem
import Foundation
import FreeFlowTestSupport
import XCTest

/// Two routers in the lab guest, one per lab address ("node 1" and "node 2"), each as its own process, with
/// a static map that puts vip 10.9.0.1 (pod a) and 10.9.0.3 (pod c) on node 1 and 10.9.0.2 (pod b) on node 2.
final class TwoNodeLab {
    static let vipA = IPv4Address("10.9.0.1")!, vipB = IPv4Address("10.9.0.2")!, vipC = IPv4Address("10.9.0.3")!
    let directory: String
    let ip1: String, ip2: String
    private let etcdEndpoint: String?
    private var routers: [Process] = []
    /// Each router's metrics port, from the same allocator as the lab's etcd, so they never meet.
    private let metricsPorts: [Int]

    /// Binaries next to the test bundle (.build/debug).
    static var binaries: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }

    /// Routers reading the map from `map.txt`, or from etcd at `etcdEndpoint` when given.
    init(etcdEndpoint: String? = nil) throws {
        self.etcdEndpoint = etcdEndpoint
        let env = ProcessInfo.processInfo.environment
        guard env["FFLAB"] == "1", let ip1 = env["FFLAB_IP1"], let ip2 = env["FFLAB_IP2"] else {
            throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run scripts/test")
        }
        self.ip1 = ip1
        self.ip2 = ip2
        metricsPorts = [try LocalEtcdPort.free(), try LocalEtcdPort.free()]
        directory = NSTemporaryDirectory() + "fflab-routers-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let map = "\(Self.vipA) \(ip1) node1\n\(Self.vipC) \(ip1) node1\n\(Self.vipB) \(ip2) node2\n"
        try map.write(toFile: "\(directory)/map.txt", atomically: true, encoding: .utf8)
        try startRouter(node: 1, ip: ip1, pods: ["a=\(Self.vipA)", "c=\(Self.vipC)"])
        try startRouter(node: 2, ip: ip2, pods: ["b=\(Self.vipB)"])
        for path in [socket("node1", "a"), socket("node1", "c"), socket("node2", "b"), admin(1), admin(2)] {
            try waitForFile(path)
        }
    }

    deinit {
        for router in routers where router.isRunning {
            router.terminate()
            router.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Sends SIGTERM to every router and returns their exit statuses (0 is a clean shutdown).
    func stopRouters() -> [Int32] {
        for router in routers where router.isRunning { router.terminate() }
        return routers.map { $0.waitUntilExit(); return $0.terminationStatus }
    }

    func socket(_ node: String, _ pod: String) -> String { "\(directory)/\(node)/\(pod).sock" }
    func admin(_ node: Int) -> String { "\(directory)/node\(node)/admin.sock" }
    /// Router `node`'s (1 or 2) metrics port.
    func metricsPort(_ node: Int) -> Int { metricsPorts[node - 1] }

    /// GETs `path` from router `node`'s HTTP endpoint with curl: (HTTP status, body).
    func http(node: Int, _ path: String) throws -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "-m", "20", "-w", "\n%{http_code}", "http://127.0.0.1:\(metricsPort(node))\(path)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let code = Int(lines.popLast() ?? "") ?? 0
        return (code, lines.joined(separator: "\n"))
    }

    private func startRouter(node: Int, ip: String, pods: [String]) throws {
        let process = Process()
        process.executableURL = Self.binaries.appendingPathComponent("ffrouter")
        let mapSource = etcdEndpoint.map { ["--etcd-endpoints", $0] } ?? ["--map", "\(directory)/map.txt"]
        process.arguments = ["--node-ip", ip, "--socket-dir", "\(directory)/node\(node)"] + mapSource + [
                             "--metrics-host", "127.0.0.1", "--metrics-port", "\(metricsPort(node))",
                             "--log-level", "warning"] + pods.flatMap { ["--pod", $0] }
        try process.run()
        routers.append(process)
    }

    /// Routers start in about a second under TCG; wait for their sockets, but not for ever.
    private func waitForFile(_ path: String, seconds: Double = 60) throws {
        try eventuallyBlocking("router socket \(path) to appear", timeout: .seconds(seconds),
                               every: .milliseconds(50)) {
            if FileManager.default.fileExists(atPath: path) { return true }
            if let exited = routers.first(where: { !$0.isRunning }) {
                throw LabError("a router exited during start-up with status \(exited.terminationStatus) (its stderr is above)")
            }
            return false
        }
    }

    /// The object counts `rdma res show` reports for the device (what the kernel really holds).
    static func kernelResources() throws -> [String: Int] {
        let process = Process()
        // iproute2's rdma tool, wherever the distribution puts it.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["rdma", "res", "show"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // "0: rxe0: pd 2 cq 2 qp 2 cm_id 0 mr 1 ctx 1 srq 0"
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var counts: [String: Int] = [:]
        for (i, word) in words.enumerated() where i + 1 < words.count {
            if let n = Int(words[i + 1]), ["pd", "cq", "qp", "mr", "srq", "ctx"].contains(word) { counts[word] = n }
        }
        return counts
    }
}

/// One client's RC QP with a registered memfd buffer, made through the router.
struct ClientEndpoint {
    let connection: RouterConnection
    let memory: SharedMemory
    let pd: PDHandle
    let mr: RegMRReply
    let cq: CQHandle
    let qp: CreateQPReply

    init(_ connection: RouterConnection, bytes: Int = 16384) throws {
        self.connection = connection
        memory = try SharedMemory(name: "lab-client", size: bytes)
        pd = try connection.allocatePD()
        mr = try connection.registerMemory(pd: pd, memory: memory, access: [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic])
        cq = try connection.createCQ(entries: 64).cq
        qp = try connection.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                                    capabilities: QPCapabilities(maxSendWR: 16, maxRecvWR: 16, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 64)))
    }

    var address: UInt64 { memory.address }

    func sge(offset: Int, length: Int) -> ScatterGatherEntry {
        ScatterGatherEntry(address: memory.address + UInt64(offset), length: UInt32(length), lkey: mr.lkey)
    }

    /// RESET→INIT→RTR→RTS towards the peer's QP at the peer's *virtual* GID.
    func connect(toVIP vip: IPv4Address, qpn: UInt32) throws {
        try Self.connect(connection, qp: qp.qp, toVIP: vip, qpn: qpn)
    }

    /// The three modify_qp calls an RC application makes, with the peer's virtual GID.
    static func connect(_ connection: RouterConnection, qp: QPHandle, toVIP vip: IPv4Address, qpn: UInt32) throws {
        var attributes = QPAttributes()
        attributes.state = .initialized
        attributes.port = 1
        attributes.accessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
        try connection.modifyQP(qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: attributes)
        attributes = QPAttributes()
        attributes.state = .readyToReceive
        attributes.pathMTU = .mtu1024
        attributes.destQPN = qpn
        attributes.rqPSN = 0x100
        attributes.maxDestReadAtomic = 1
        attributes.minRNRTimer = 12
        attributes.addressVector = AHAttributes(globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: vip), sourceGIDIndex: 0), port: 1)
        try connection.modifyQP(qp, mask: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN, .maxDestReadAtomic, .minRNRTimer],
                                attributes: attributes)
        attributes = QPAttributes()
        attributes.state = .readyToSend
        attributes.sqPSN = 0x100
        attributes.timeout = 14
        attributes.retryCount = 7
        attributes.rnrRetry = 7
        attributes.maxReadAtomic = 1
        try connection.modifyQP(qp, mask: [.state, .sqPSN, .timeout, .retryCount, .rnrRetry, .maxReadAtomic], attributes: attributes)
    }

    /// Polls through the router until `count` completions arrived, for at most `seconds`.
    func completions(_ count: Int = 1, seconds: Double = 20) throws -> [WorkCompletion] {
        var result: [WorkCompletion] = []
        let deadline = Date().addingTimeInterval(seconds)
        while result.count < count {
            result += try connection.pollCQ(cq, maxEntries: UInt32(count - result.count))
            if result.count < count {
                guard Date() < deadline else {
                    XCTFail("only \(result.count) of \(count) completions in \(seconds) s")
                    return result
                }
                usleep(1000)
            }
        }
        return result
    }
}

/// A lab set-up step that failed: the test fails with this message (it is not a skip).
struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
