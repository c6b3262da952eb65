import FFClient
import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFRouterAPI
import FFSystem
import FreeFlowTestSupport
import Foundation
import Logging
import XCTest

/// The whole router on the host: real sessions on the in-memory backend behind the real I/O layer, driven by the real
/// Swift client over pod sockets. What the lab checks with `rdma res`, these check with the fake's live objects.
final class RouterFakeBackendTests: XCTestCase {
    private var directory = ""

    override func setUp() { directory = "/tmp/ffr-fake-\(getpid())-\(UUID().uuidString.prefix(8))" }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private func makeRouter(_ backend: FakeBackend, options: RouterOptions = RouterOptions()) throws -> Router {
        var logger = Logger(label: "router-fake-test")
        logger.logLevel = .warning
        let router = Router(backend: backend, map: SessionDriver.map, socketDirectory: directory,
                            pods: [PodDeclaration(name: "a", vip: SessionDriver.vipA)], logger: logger, options: options)
        try router.start()
        return router
    }

    /// PD, MR, CQ and QP of one client: four live objects on the backend.
    private func populate(_ client: RouterConnection, _ memory: SharedMemory) throws {
        let pd = try client.allocatePD()
        _ = try client.registerMemory(pd: pd, memory: memory, access: [.localWrite])
        let cq = try client.createCQ(entries: 16).cq
        _ = try client.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                                capabilities: QPCapabilities(maxSendWR: 8, maxRecvWR: 8, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)))
    }

    func testRemovingARuntimePodDestroysItsObjectsWhileAnotherPodKeepsWorking() async throws {
        let backend = FakeBackend()
        let router = try makeRouter(backend)
        let memory = try SharedMemory(name: "fake-router", size: 8192)
        let steady = try RouterConnection(path: "\(directory)/a.sock", name: "steady")
        try populate(steady, memory)
        XCTAssertEqual(backend.liveObjectCount, 4)

        let added = try router.addPod(PodSpec(name: "web-0", namespace: "team", uid: "uid-web-0", vip: SessionDriver.vipB.description))
        let pod = try RouterConnection(path: added.pod.socket, name: "runtime")
        XCTAssertEqual(pod.session.vip, SessionDriver.vipB)
        try populate(pod, memory)
        XCTAssertEqual(backend.liveObjectCount, 8)

        let removed = try router.removePod("team/web-0")
        XCTAssertEqual(removed.closed, 1)
        try await eventually("the removed pod's objects destroyed") { backend.liveObjectCount == 4 }
        XCTAssertThrowsError(try pod.allocatePD(), "the removed pod's connection is closed")
        // The other pod's session and objects are untouched and it goes on working.
        _ = try steady.allocatePD()
        XCTAssertEqual(backend.liveObjectCount, 5)
        steady.close()
        await router.shutdown()
        XCTAssertEqual(backend.liveObjects, [:], "shutdown destroyed every object")
    }

    func testAClientThatStopsReadingIsCutOffAndItsObjectsDestroyed() async throws {
        let backend = FakeBackend()
        let router = try makeRouter(backend, options: RouterOptions(replyTimeoutMilliseconds: 500, replyQueueDepth: 4))
        let memory = try SharedMemory(name: "fake-router", size: 8192)
        let hog = try RouterConnection(path: "\(directory)/a.sock", name: "hog")
        try populate(hog, memory)
        let steady = try RouterConnection(path: "\(directory)/a.sock", name: "steady")
        // Another client makes a PD, then floods requests and never reads a reply.
        let socket = try SeqPacketSocket.connect(path: "\(directory)/a.sock")
        try socket.send(try Frame(requestID: 0, message: Message(Hello(minVersion: 1, maxVersion: 1, clientName: "flood"))).encode())
        XCTAssertNotNil(try socket.receive(timeoutMilliseconds: 10_000))
        try socket.send(try Frame(requestID: 1, message: Message(AllocPDRequest())).encode())
        XCTAssertNotNil(try socket.receive(timeoutMilliseconds: 10_000))
        XCTAssertEqual(backend.liveObjectCount, 5)
        let flood = try Frame(requestID: 1, message: Message(QueryDeviceRequest())).encode()
        // Keep the router's reply queue full: once the client's socket buffer is full too, the router stops reading and
        // the reply timeout runs.
        let deadline = Date().addingTimeInterval(20)
        flooding: while router.status.slowClientsDisconnected == 0 && Date() < deadline {
            do {
                if try !socket.trySend(flood) { usleep(1000) }
            } catch {
                break flooding
            }
        }
        try await eventually("the flooding client cut off", timeout: .seconds(20)) {
            router.status.slowClientsDisconnected >= 1
        }
        try await eventually("the cut-off client's PD destroyed") { backend.liveObjectCount == 4 }
        // The other clients are still served.
        _ = try steady.allocatePD()
        _ = try hog.queryDevice()
        XCTAssertEqual(backend.liveObjectCount, 5)
        hog.close()
        try await eventually("a closed client's objects destroyed") { backend.liveObjectCount == 1 }
        socket.close()
        steady.close()
        await router.shutdown()
    }
}
