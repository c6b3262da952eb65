import Etcd
import FFClient
import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Foundation
import FreeFlowTestSupport
import Logging
import Synchronization
import XCTest

/// A pod directory held in memory: uid → pod, with a revision that moves on every change.
final class MemoryPodDirectory: PodDirectory {
    private let state = Mutex<(pods: [String: PodDeclaration], revision: Int64, listed: Bool)>(([:], 1, true))
    let nodeIP: IPv4Address

    init(nodeIP: IPv4Address, pods: [PodDeclaration] = [], listed: Bool = true) {
        self.nodeIP = nodeIP
        state.withLock { s in
            for pod in pods { s.pods[pod.uid] = pod }
            s.listed = listed
        }
    }

    func set(_ pod: PodDeclaration?, uid: String) { state.withLock { $0.pods[uid] = pod; $0.revision += 1 } }

    func localPod(uid: String, nodeIP: IPv4Address) -> PodLookup {
        state.withLock { s in
            guard s.listed else { return .notListed }
            guard nodeIP == self.nodeIP, let pod = s.pods[uid] else { return .absent("no vip for pod uid \(uid) in the test map") }
            return .found(pod)
        }
    }

    var revision: Int64 { state.withLock { $0.revision } }
}

/// Which pod a process is in, from its cgroup file: cgroup v1 and v2, the cgroupfs and systemd drivers, paths relative to
/// a cgroup namespace, and files that name no pod or several.
final class PodCgroupTests: XCTestCase {
    private let uid = "4c1d2f0e-9a7b-4e21-8d3c-0f5a6b7c8d9e"
    private var underscored: String { uid.replacingOccurrences(of: "-", with: "_") }

    private func parsed(_ text: String) -> Result<String, PodCgroupError> { PodCgroup.podUID(cgroupFile: text) }

    func testCgroupV2SystemdDriverBestEffortPod() {
        let text = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(underscored).slice/cri-containerd-3f2a.scope\n"
        XCTAssertEqual(parsed(text), .success(uid))
    }

    func testCgroupV2SystemdDriverGuaranteedPodHasNoQoSLevel() {
        XCTAssertEqual(parsed("0::/kubepods.slice/kubepods-pod\(underscored).slice/cri-containerd-3f2a.scope\n"), .success(uid))
    }

    func testCgroupV2CgroupfsDriverBurstablePod() {
        XCTAssertEqual(parsed("0::/kubepods/burstable/pod\(uid)/0123456789abcdef\n"), .success(uid))
    }

    func testCgroupV1CgroupfsDriverEveryHierarchyNamesThePod() {
        let text = """
            12:pids:/kubepods/burstable/pod\(uid)/0123456789abcdef
            11:memory:/kubepods/burstable/pod\(uid)/0123456789abcdef
            3:cpu,cpuacct:/kubepods/burstable/pod\(uid)/0123456789abcdef
            1:name=systemd:/kubepods/burstable/pod\(uid)/0123456789abcdef
            0::/
            """
        XCTAssertEqual(parsed(text), .success(uid), "the hybrid v2 line without a pod is ignored")
    }

    func testCgroupV1SystemdDriverGuaranteedPod() {
        let text = """
            10:memory:/kubepods.slice/kubepods-pod\(underscored).slice/docker-0123.scope
            1:name=systemd:/kubepods.slice/kubepods-pod\(underscored).slice/docker-0123.scope
            """
        XCTAssertEqual(parsed(text), .success(uid))
    }

    func testAPathRelativeToTheRoutersCgroupNamespaceStillNamesThePod() {
        let text = "0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod\(underscored).slice/cri-containerd-3f2a.scope\n"
        XCTAssertEqual(parsed(text), .success(uid))
    }

    func testAStaticPodsConfigHashIsAUID() {
        XCTAssertEqual(parsed("0::/kubepods/besteffort/pod6f8a0e1d2c3b4a5968778695a4b3c2d1/abc\n"), .success("6f8a0e1d2c3b4a5968778695a4b3c2d1"))
    }

    func testAHostProcessNamesNoPod() {
        guard case .failure(.noPod(let paths)) = parsed("0::/user.slice/user-1000.slice/session-3.scope\n") else {
            return XCTFail("a host process is not in a pod")
        }
        XCTAssertEqual(paths, ["/user.slice/user-1000.slice/session-3.scope"])
        XCTAssertEqual(parsed(""), .failure(.noPod(paths: [])))
        XCTAssertEqual(parsed("2:cpu:/\n1:name=systemd:/init.scope\n0::/\n"), .failure(.noPod(paths: ["/", "/init.scope"])), "each path once")
    }

    func testLookalikeComponentsAreNotPods() {
        for path in ["/system.slice/podman-1234.scope", "/kubepods/burstable/pod1234", "/kubepods.slice/kubepods-weird-pod\(underscored).slice",
                     "/kubepods/burstable/pod\(uid.uppercased())/c", "/machine.slice/pod\(uid)x/c"] {
            XCTAssertEqual(parsed("0::\(path)\n"), .failure(.noPod(paths: [path])), path)
        }
    }

    func testLinesNamingDifferentPodsAreRefused() {
        let other = "00000000-1111-2222-3333-444444444444"
        let text = "11:memory:/kubepods/pod\(uid)/c\n1:name=systemd:/kubepods/pod\(other)/c\n"
        XCTAssertEqual(parsed(text), .failure(.severalPods([uid, other])))
    }
}

/// Peer credentials to pod, through a fake proc root and an in-memory directory.
final class PeerPodIdentityTests: XCTestCase {
    private let uid = "4c1d2f0e-9a7b-4e21-8d3c-0f5a6b7c8d9e"
    private let node = IPv4Address("10.0.2.15")!
    private var root = ""

    override func setUp() {
        root = "/tmp/ffr-proc-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: "\(root)/4242", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    private func identity(_ directory: MemoryPodDirectory) -> PeerPodIdentity { PeerPodIdentity(procRoot: root, directory: directory, nodeIP: node) }

    private func writeCgroup(_ text: String, pid: Int32 = 4242) throws {
        try text.write(toFile: "\(root)/\(pid)/cgroup", atomically: true, encoding: .utf8)
    }

    func testAProcessInAPodWithAVipOnThisNodeIsThatPod() throws {
        let pod = PodDeclaration(name: "web-0", namespace: "team", uid: uid, vip: IPv4Address("10.244.1.7")!)
        try writeCgroup("0::/kubepods/besteffort/pod\(uid)/c\n")
        let result = identity(MemoryPodDirectory(nodeIP: node, pods: [pod])).identify(PeerCredentials(pid: 4242, uid: 1000, gid: 1000))
        XCTAssertEqual(try result.get(), pod)
    }

    func testEveryRefusalSaysWhy() throws {
        let directory = MemoryPodDirectory(nodeIP: node)
        func refusal(_ pid: Int32, _ directory: MemoryPodDirectory) -> IdentityRefusal? {
            if case .failure(let refusal) = identity(directory).identify(PeerCredentials(pid: pid, uid: 0, gid: 0)) { return refusal }
            return nil
        }
        let hidden = refusal(0, directory)
        XCTAssertEqual(hidden?.errno, EACCES)
        XCTAssertTrue(hidden?.reason.contains("hostPID") ?? false, hidden?.reason ?? "")

        let gone = refusal(999_999, directory)
        XCTAssertTrue(gone?.reason.contains("\(root)/999999/cgroup") ?? false, gone?.reason ?? "")

        try writeCgroup("0::/user.slice/session-3.scope\n")
        let host = refusal(4242, directory)
        XCTAssertEqual(host?.errno, EACCES)
        XCTAssertTrue(host?.reason.contains("not in a pod") ?? false, host?.reason ?? "")

        try writeCgroup("0::/kubepods/besteffort/pod\(uid)/c\n")
        let noVip = refusal(4242, directory)
        XCTAssertTrue(noVip?.reason.contains("pod uid \(uid), which has no vip here") ?? false, noVip?.reason ?? "")

        let early = refusal(4242, MemoryPodDirectory(nodeIP: node, listed: false))
        XCTAssertEqual(early?.errno, EAGAIN, "before the first list the client may retry")
    }

    func testTheEtcdMapFindsAPodByUIDOnlyOnItsOwnNode() async throws {
        try await withLocalEtcd { etcd, client in
            let schema = MapSchema(root: "/identity-test/")
            let entry = VipEntry(vip: "10.244.1.7", pip: "10.0.2.15", node: "node-1", namespace: "team", pod: "web-0", uid: uid)
            _ = try await client.put(schema.vipKey(entry.vip), MapCodec.encode(entry))
            let map = EtcdVipMap(mirror: MapMirror(client: client, schema: schema), endpoints: etcd.clientURL)
            XCTAssertEqual(map.localPod(uid: uid, nodeIP: node), .notListed)
            _ = try await map.mirror.list()
            XCTAssertEqual(map.localPod(uid: uid, nodeIP: node), .found(PodDeclaration(name: "web-0", namespace: "team", uid: uid, vip: IPv4Address("10.244.1.7")!)))
            guard case .absent(let why) = map.localPod(uid: uid, nodeIP: IPv4Address("10.0.2.16")!) else { return XCTFail("another node's pod") }
            XCTAssertTrue(why.contains("on node node-1 (10.0.2.15), not on this node (10.0.2.16)"), why)
            XCTAssertEqual(map.localPod(uid: "00000000-1111-2222-3333-444444444444", nodeIP: node),
                           .absent("the map has no vip for pod uid 00000000-1111-2222-3333-444444444444"))
        }
    }
}

/// The router's shared client socket end to end: the test process itself connects, identified through a fake proc root
/// keyed by its real pid (its real cgroup is no pod's), with the real etcd map mirrored from a local etcd.
final class ClientSocketTests: XCTestCase {
    private let uid = "4c1d2f0e-9a7b-4e21-8d3c-0f5a6b7c8d9e"
    private let node = IPv4Address("10.0.2.15")!
    private var directory = ""

    override func setUp() {
        directory = "/tmp/ffr-client-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: "\(directory)/proc/\(getpid())", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private var clientSocket: String { "\(directory)/ffclient.sock" }

    private func writeOwnCgroup(_ text: String) throws {
        try text.write(toFile: "\(directory)/proc/\(getpid())/cgroup", atomically: true, encoding: .utf8)
    }

    private func makeRouter(_ backend: FakeBackend, _ pods: any PodDirectory) throws -> Router {
        var logger = Logger(label: "client-socket-test")
        logger.logLevel = .warning
        let options = RouterOptions(clientSocket: ClientSocketOptions(path: clientSocket, procRoot: "\(directory)/proc", directory: pods,
                                                                      checkIntervalMilliseconds: 50))
        let router = Router(backend: backend, map: SessionDriver.map, socketDirectory: directory,
                            pods: [PodDeclaration(name: "a", vip: SessionDriver.vipA)], logger: logger, options: options)
        try router.start()
        return router
    }

    private func populate(_ client: RouterConnection) throws {
        let pd = try client.allocatePD()
        let cq = try client.createCQ(entries: 16).cq
        _ = try client.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                                capabilities: QPCapabilities(maxSendWR: 8, maxRecvWR: 8, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)))
    }

    private func refusal(_ path: String) -> ErrorReply? {
        do {
            _ = try RouterConnection(path: path, name: "refused")
            return nil
        } catch {
            guard case .router(let reply) = error else { XCTFail("expected the router's refusal, got \(error)"); return nil }
            return reply
        }
    }

    func testAProcessIsServedAsItsPodUntilThePodLeavesTheEtcdMap() async throws {
        try await withLocalEtcd { etcd, client in
            let schema = MapSchema(root: "/client-socket-test/")
            let map = EtcdVipMap(mirror: MapMirror(client: client, schema: schema), endpoints: etcd.clientURL)
            let mirroring = Task { await map.run() }
            defer { mirroring.cancel() }
            let backend = FakeBackend()
            let router = try makeRouter(backend, map)
            do {
                try await servedUntilDeleted(router, backend, client, schema, map)
            } catch {
                await router.shutdown()
                throw error
            }
            await router.shutdown()
            XCTAssertFalse(FileManager.default.fileExists(atPath: clientSocket), "shutdown removes the client socket")
            mirroring.cancel()
            await mirroring.value
        }
    }

    private func servedUntilDeleted(_ router: Router, _ backend: FakeBackend, _ client: EtcdClient, _ schema: MapSchema, _ map: EtcdVipMap) async throws {
        let entry = VipEntry(vip: "10.244.1.7", pip: node.description, node: "node-1", namespace: "team", pod: "web-0", uid: uid)
        let put = try await client.put(schema.vipKey(entry.vip), MapCodec.encode(entry))
        _ = try await map.mirror.waitForRevision(put.revision, timeout: .seconds(20))
        try writeOwnCgroup("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uid.replacingOccurrences(of: "-", with: "_")).slice/cri-containerd-1.scope\n")

        let pod = try RouterConnection(path: clientSocket, name: "pod-process")
        XCTAssertEqual(pod.session.vip, IPv4Address("10.244.1.7"), "the session runs as the pod the process's cgroup names")
        try populate(pod)
        XCTAssertEqual(router.status.clients.map(\.identity.pod), ["team/web-0"])
        XCTAssertEqual(router.status.clients.first?.identity.pid, getpid())
        XCTAssertEqual(router.status.clientSocket, clientSocket)
        // The per-pod sockets keep working next to the shared one.
        let flagged = try RouterConnection(path: "\(directory)/a.sock", name: "flag-pod")
        defer { flagged.close() }
        XCTAssertEqual(flagged.session.vip, SessionDriver.vipA)
        _ = try flagged.allocatePD()
        XCTAssertEqual(backend.liveObjectCount, 4)

        _ = try await client.delete(.key(schema.vipKey(entry.vip)))
        try await eventually("the deleted pod's objects destroyed", timeout: .seconds(20)) {
            backend.liveObjectCount == 1
        }
        XCTAssertThrowsError(try pod.allocatePD(), "the deleted pod's connection is closed")
        XCTAssertEqual(router.status.clients.map(\.identity.pod), ["a"], "the other pod's session goes on")
        _ = try flagged.allocatePD()

        let refused = refusal(clientSocket)
        XCTAssertEqual(refused?.errno, EACCES)
        XCTAssertTrue(refused?.reason.contains("pod uid \(uid), which has no vip here") ?? false, refused?.reason ?? "")
    }

    func testAProcessInNoPodIsRefusedWithTheReasonAndTheRouterGoesOn() async throws {
        let backend = FakeBackend()
        let pods = MemoryPodDirectory(nodeIP: node, pods: [PodDeclaration(name: "web-0", namespace: "team", uid: uid, vip: IPv4Address("10.244.1.7")!)])
        let router = try makeRouter(backend, pods)
        try writeOwnCgroup("0::/user.slice/user-1000.slice/session-3.scope\n")
        let refused = refusal(clientSocket)
        XCTAssertEqual(refused?.errno, EACCES)
        XCTAssertTrue(refused?.reason.contains("pid \(getpid()) is not in a pod") ?? false, refused?.reason ?? "")
        XCTAssertEqual(router.status.refusedConnections, 1)
        XCTAssertEqual(router.status.clients.count, 0)

        // A client that connects and never says hello holds nothing but its refusal thread, for a bounded time.
        let silent = try SeqPacketSocket.connect(path: clientSocket)
        try await eventually("the silent client refused") { router.status.refusedConnections == 2 }
        XCTAssertEqual(router.status.clients.count, 0)
        try writeOwnCgroup("0::/kubepods/besteffort/pod\(uid)/c\n")
        let pod = try RouterConnection(path: clientSocket, name: "pod-process")
        XCTAssertEqual(pod.session.vip, IPv4Address("10.244.1.7"))
        _ = try pod.allocatePD()
        silent.close()

        // A pod that moves to another vip is a different pod: its sessions end.
        pods.set(PodDeclaration(name: "web-0", namespace: "team", uid: uid, vip: IPv4Address("10.244.1.8")!), uid: uid)
        try await eventually("the session of the pod whose vip changed closed") {
            backend.liveObjectCount == 0 && router.status.clients.isEmpty
        }
        let again = try RouterConnection(path: clientSocket, name: "pod-process")
        XCTAssertEqual(again.session.vip, IPv4Address("10.244.1.8"))
        again.close()
        pod.close()
        await router.shutdown()
    }
}
