import FFProtocol
@testable import FFRouter
import FFRouterAPI
import FFSystem
import FreeFlowTestSupport
import Foundation
import Logging
import Synchronization
import XCTest

// The router's I/O layer on the host: session threads, outbound queues, descriptor exhaustion, runtime pods
// and the admin socket, driven with a stub session handler (no RDMA device needed).

/// Which sessions the stub made and closed, shared between the router's threads and the test.
final class StubRecorder: Sendable {
    private let closed = Mutex<[UInt64: SessionContext]>([:])
    private let made = Mutex<Int>(0)

    func didMake() { made.withLock { $0 += 1 } }
    func didClose(_ context: SessionContext) { closed.withLock { $0[context.id] = context } }
    var closedSessions: [UInt64: SessionContext] { closed.withLock { $0 } }
    func isClosed(_ id: UInt64) -> Bool { closed.withLock { $0[id] != nil } }
}

/// Answers hello like the real session (refusing a version mismatch and asking the router to close), alloc_pd
/// with a fresh handle, a malformed datagram with EPROTO, anything else with EOPNOTSUPP.
final class StubSession: SessionHandler {
    private let context: SessionContext
    private let recorder: StubRecorder
    private var version: UInt16?
    private var pds = 0
    private var requests: UInt64 = 0
    private var errors: UInt64 = 0

    init(_ context: SessionContext, recorder: StubRecorder) {
        self.context = context
        self.recorder = recorder
        recorder.didMake()
    }

    func handle(_ datagram: Datagram) -> Reply {
        requests += 1
        let frame: Frame
        do throws(WireError) {
            frame = try Frame.decode(datagram.bytes)
        } catch {
            errors += 1
            return Reply(message: .error(ErrorReply(malformed: error)), requestID: (try? WireHeader.decode(datagram.bytes).requestID) ?? 0)
        }
        if let hello = frame.message.request(Hello.self) {
            let answer = ProtocolVersion.answer(hello, sessionID: context.id, vip: context.vip)
            guard let reply = answer.reply(to: Hello.self) else {
                errors += 1
                return Reply(message: answer, requestID: frame.requestID, closeAfterSend: true)
            }
            version = reply.version
            return Reply(message: answer, requestID: frame.requestID)
        }
        if frame.message.request(AllocPDRequest.self) != nil, version != nil {
            pds += 1
            return Reply(message: Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: UInt32(pds))), requestID: frame.requestID)
        }
        errors += 1
        return Reply(message: .error(ErrorReply(errno: Errno.protocolError, reason: "stub: unexpected \(frame.message.kind)")),
                     requestID: frame.requestID)
    }

    func close() { recorder.didClose(context) }

    var counters: SessionCounters { SessionCounters(objects: ObjectCounts(pd: pds), requests: requests, errors: errors) }
}

/// A vip map that knows nothing.
struct EmptyVipMap: VipResolver {
    func physicalIP(for vip: IPv4Address) -> IPv4Address? { nil }
    var summary: MapSummary { MapSummary(entries: 0, revision: 0, source: "test") }
    var isReady: Bool { true }
}

/// A client speaking raw frames over a pod socket.
struct TestClient {
    let socket: SeqPacketSocket
    private var nextRequest: UInt64 = 1

    init(path: String) throws { socket = try Self.connect(path) }

    /// Connects, retrying while the listener's backlog is full (EAGAIN on a non-blocking Unix socket) in a
    /// burst of connects.
    private static func connect(_ path: String) throws -> SeqPacketSocket {
        let deadline = Poll.nowMilliseconds() + 10_000
        while true {
            let result = Result { () throws(SystemError) -> SeqPacketSocket in try SeqPacketSocket.connect(path: path) }
            if case .failure(let error) = result, error.errno == EAGAIN, Poll.nowMilliseconds() < deadline {
                usleep(1000)
                continue
            }
            return try result.get()
        }
    }

    /// Sends `message` and returns the reply (nil at end of file), checking the request id.
    mutating func call(_ message: Message, version: UInt16 = ProtocolVersion.current, timeoutMilliseconds: Int32 = 10_000) throws -> Message? {
        let id = nextRequest
        nextRequest += 1
        try socket.send(try Frame(version: version, requestID: id, message: message).encode())
        return try receive(id, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The reply to request `id`, nil at end of file.
    func receive(_ id: UInt64, timeoutMilliseconds: Int32 = 10_000) throws -> Message? {
        guard let datagram = try socket.receive(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        let frame = try Frame.decode(datagram.bytes)
        XCTAssertEqual(frame.requestID, id)
        return frame.message
    }

    /// Says hello; the reply.
    mutating func hello() throws -> HelloReply {
        let reply = try call(Message(Hello(minVersion: 1, maxVersion: 1, clientName: "test")))
        guard let hello = reply?.reply(to: Hello.self) else { throw ErrorReply(errno: -1, reason: "hello answered \(String(describing: reply))") }
        return hello
    }

    /// One call that must succeed.
    mutating func allocPD() throws -> PDHandle {
        let reply = try call(Message(AllocPDRequest()))
        guard let pd = reply?.reply(to: AllocPDRequest.self) else { throw ErrorReply(errno: -1, reason: "alloc_pd answered \(String(describing: reply))") }
        return pd
    }
}

final class RouterIOTests: XCTestCase {
    private var directory = ""
    private let recorder = StubRecorder()

    override func setUp() {
        directory = "/tmp/ffr-\(getpid())-\(UUID().uuidString.prefix(8))"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func makeRouter(pods: [String] = ["a=10.9.0.1"], options: RouterOptions = RouterOptions()) throws -> Router {
        var logger = Logger(label: "router-io-test")
        logger.logLevel = .warning
        let recorder = self.recorder
        let device = DeviceDescription(name: "stub0", nodeIP: IPv4Address("10.0.2.15")!, gidIndex: 1) { (true, "stub port up") }
        let router = Router(device: device, map: EmptyVipMap(), socketDirectory: directory, pods: pods.compactMap(PodDeclaration.init(argument:)),
                            options: options, logger: logger) { StubSession($0, recorder: recorder) }
        try router.start()
        return router
    }

    private func socket(_ name: String) -> String { "\(directory)/\(name).sock" }

    private func startAdmin(_ router: Router) throws -> (AdminClient, Task<Void, Error>) {
        var logger = Logger(label: "admin-test")
        logger.logLevel = .warning
        let path = "\(directory)/admin.sock"
        let admin = AdminServer(path: path, router: router, logger: logger)
        let task = Task { try await admin.run() }
        let client = AdminClient(path: path, timeoutMilliseconds: 20_000)
        try eventuallyBlocking("the admin socket to answer") { (try? client.listPods()) != nil }
        return (client, task)
    }

    func testAnEmptyDatagramGetsEPROTOAndTheSessionGoesOn() async throws {
        let router = try makeRouter()
        var client = try TestClient(path: socket("a"))
        _ = try client.hello()
        try client.socket.send([])
        let datagram = try XCTUnwrap(try client.socket.receive(timeoutMilliseconds: 10_000), "an empty datagram must not end the session")
        guard let error = (try Frame.decode(datagram.bytes).message).errorReply else { return XCTFail("expected an error reply") }
        XCTAssertEqual(error.errno, Errno.protocolError)
        XCTAssertEqual(try client.allocPD(), PDHandle(rawValue: 1), "the session goes on")
        XCTAssertTrue(recorder.closedSessions.isEmpty)
        await router.shutdown()
        XCTAssertEqual(recorder.closedSessions.count, 1, "stopping the router closes the session")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket("a")), "and removes the socket file")
    }

    func testAVersionMismatchHelloIsRefusedAndTheConnectionClosed() async throws {
        let router = try makeRouter()
        var client = try TestClient(path: socket("a"))
        let reply = try client.call(Message(Hello(minVersion: 2, maxVersion: 3, clientName: "future")), version: 3)
        guard let refusal = reply?.errorReply else { return XCTFail("expected a refusal, got \(String(describing: reply))") }
        XCTAssertEqual(refusal.errno, Errno.protocolNotSupported)
        XCTAssertNil(try client.socket.receive(timeoutMilliseconds: 10_000), "the router closes the connection after the refusal")
        try await eventually("the refused session to close") { recorder.closedSessions.count == 1 }
        await router.shutdown()
    }

    func testAClientThatNeverReadsIsCutOffWhileAnotherKeepsBeingServed() async throws {
        let router = try makeRouter(pods: ["a=10.9.0.1", "b=10.9.0.2"], options: RouterOptions(replyTimeoutMilliseconds: 500, replyQueueDepth: 8))
        var slow = try TestClient(path: socket("a"))
        let slowSession = try slow.hello().sessionID
        var good = try TestClient(path: socket("b"))
        _ = try good.hello()
        let request = try Frame(requestID: 99, message: Message(AllocPDRequest())).encode()
        var worst: Int64 = 0
        var calls = 0
        var cutOffAt: Int64?
        let deadline = Poll.nowMilliseconds() + 30_000
        // The slow client sends as fast as the router takes requests and never reads; the good client's calls
        // are timed throughout, and for a while after the slow one is gone.
        while Poll.nowMilliseconds() < deadline {
            for _ in 0..<50 { guard (try? slow.socket.trySend(request)) == true else { break } }
            let started = Poll.nowMilliseconds()
            _ = try good.allocPD()
            worst = max(worst, Poll.nowMilliseconds() - started)
            calls += 1
            if cutOffAt == nil && recorder.isClosed(slowSession) { cutOffAt = Poll.nowMilliseconds() }
            if let cutOffAt, Poll.nowMilliseconds() - cutOffAt > 300 { break }
        }
        XCTAssertNotNil(cutOffAt, "the slow client was never disconnected")
        XCTAssertLessThan(worst, 2000, "a call of the good client took \(worst) ms while another client did not read")
        XCTAssertGreaterThan(calls, 10)
        // The slow client reads what was sent before the cut, then end of file (or a reset), never a hang.
        var drained = 0
        while drained < 100_000, let datagram = try? slow.socket.receive(timeoutMilliseconds: 10_000) {
            _ = datagram
            drained += 1
        }
        XCTAssertLessThan(drained, 100_000)
        let status = router.status
        XCTAssertEqual(status.slowClientsDisconnected, 1)
        XCTAssertEqual(status.clients.map(\.identity.pod), ["b"])
        await router.shutdown()
    }

    func testConnectionsBeyondTheDescriptorLimitAreRefusedCleanlyAndServiceRecovers() async throws {
        let router = try makeRouter()
        let before = try ResourceLimits.current(.openFiles)
        // Router and test share this process's descriptor table. The test holds back a descriptor for each client it
        // will make and frees one just before each connect, so that it never runs out itself: whoever runs out is the
        // router, after `headroom` / 2 sessions (each costs it a socket and a wake event).
        let headroom = 16
        let inUse = Set(try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int($0) })
        // The limit bounds descriptor numbers: it is set where exactly headroom + 64 numbers below it are free.
        var limit = 0, free = 0
        while free < headroom + 64 {
            if !inUse.contains(limit) { free += 1 }
            limit += 1
        }
        try ResourceLimits.setSoft(.openFiles, to: UInt64(limit))
        var heldBack: [Int32] = []
        for _ in 0..<64 { heldBack.append(open("/dev/null", O_RDONLY | O_CLOEXEC)) }
        var restored = false
        func restore() {
            for fd in heldBack { close(fd) }
            heldBack = []
            if !restored { try? ResourceLimits.setSoft(.openFiles, to: before.soft); restored = true }
        }
        defer { restore() }
        XCTAssertFalse(heldBack.contains(-1), "the test could not hold back its descriptors")
        var served: [TestClient] = []
        var refused = 0
        while refused < 3, let slot = heldBack.popLast() {
            close(slot)
            var client: TestClient
            do {
                client = try TestClient(path: socket("a"))
            } catch where (error as? SystemError)?.errno == EMFILE {
                // A router thread took the freed slot first; the next round frees another.
                continue
            }
            do {
                _ = try client.hello()
                served.append(client)
            } catch let error as SystemError where [EPIPE, ECONNRESET].contains(error.errno) {
                refused += 1
            } catch let error as ErrorReply where error.errno == -1 {
                refused += 1
            }
        }
        XCTAssertEqual(refused, 3, "the router ran out of descriptors and refused connections")
        XCTAssertGreaterThan(served.count, 3)
        XCTAssertEqual(router.status.refusedConnections, UInt64(refused), "each refusal is counted before its client sees it")
        for index in served.indices { XCTAssertNotNil(try served[index].allocPD(), "an existing client is still served") }
        served.removeAll()
        try await eventually("every served client to close") { router.status.clients.isEmpty }
        var fresh = try TestClient(path: socket("a"))
        XCTAssertNoThrow(try fresh.hello(), "connections are accepted again once others closed")
        XCTAssertEqual(try fresh.allocPD(), PDHandle(rawValue: 1))
        restore()
        await router.shutdown()
    }

    func testAPodAtItsConnectionLimitIsRefusedWhileOtherPodsConnect() async throws {
        let router = try makeRouter(pods: ["a=10.9.0.1", "b=10.9.0.2"], options: RouterOptions(maxConnectionsPerPod: 2))
        var first = try TestClient(path: socket("a")), second = try TestClient(path: socket("a"))
        _ = try first.hello()
        _ = try second.hello()
        var third = try TestClient(path: socket("a"))
        XCTAssertThrowsError(try third.hello(), "a third connection of pod a is refused")
        var other = try TestClient(path: socket("b"))
        XCTAssertNoThrow(try other.hello(), "pod b is not limited by pod a's connections")
        XCTAssertEqual(router.status.refusedConnections, 1)
        first.socket.close()
        try await eventually("pod a to hold one client") { router.status.pods.first { $0.name == "a" }?.clients == 1 }
        var again = try TestClient(path: socket("a"))
        XCTAssertNoThrow(try again.hello(), "a slot freed is usable again")
        await router.shutdown()
    }

    func testStatusWithAThousandClientsArrivesWhole() async throws {
        let before = try ResourceLimits.current(.openFiles)
        defer { try? ResourceLimits.setSoft(.openFiles, to: before.soft) }
        _ = ResourceLimits.raise(.openFiles, tryUnlimited: false)
        guard let soft = try ResourceLimits.current(.openFiles).soft, soft > 3500 else {
            throw XCTSkip("a thousand clients need about 3,100 descriptors in this process")
        }
        let router = try makeRouter()
        let (admin, task) = try startAdmin(router)
        var clients: [TestClient] = []
        for _ in 0..<1000 {
            var client = try TestClient(path: socket("a"))
            _ = try client.hello()
            clients.append(client)
        }
        let status = try admin.status()
        XCTAssertEqual(status.clients.count, 1000)
        XCTAssertEqual(Set(status.clients.map(\.session)).count, 1000)
        XCTAssertTrue(status.clients.allSatisfy { $0.identity.pod == "a" && $0.identity.pid == getpid() && $0.requests == 1 })
        XCTAssertEqual(status.pods.first?.clients, 1000)
        let size = try JSONEncoder().encode(status).count
        XCTAssertGreaterThan(size, 65536, "the status must exceed what one datagram could carry")
        clients.removeAll()
        task.cancel()
        try await task.value
        await router.shutdown()
        XCTAssertEqual(recorder.closedSessions.count, 1000)
    }

    func testPodsAddedAndRemovedAtRuntimeLeaveOtherPodsAlone() async throws {
        let router = try makeRouter()
        let (admin, task) = try startAdmin(router)
        var steady = try TestClient(path: socket("a"))
        let steadySession = try steady.hello().sessionID

        let spec = PodSpec(name: "web-0", namespace: "team", uid: "0f9c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", vip: "10.9.0.7")
        let (added, created) = try admin.addPod(spec)
        XCTAssertTrue(created)
        XCTAssertEqual(added.socket, "\(directory)/pod-\(spec.uid).sock")
        XCTAssertEqual(try admin.addPod(spec).created, false, "adding the same pod again is a no-op")
        XCTAssertThrowsError(try admin.addPod(PodSpec(name: "web-1", namespace: "team", uid: "other-uid", vip: "10.9.0.7"))) { error in
            XCTAssertEqual((error as? AdminFailure)?.errno, EEXIST, "\(error)")
        }
        XCTAssertThrowsError(try admin.addPod(PodSpec(name: "x", namespace: "team", uid: "../../etc", vip: "10.9.0.8"))) { error in
            XCTAssertEqual((error as? AdminFailure)?.errno, EINVAL, "\(error)")
        }
        XCTAssertEqual(try admin.listPods().map(\.name), ["a", "web-0"])

        var pod1 = try TestClient(path: added.socket)
        var pod2 = try TestClient(path: added.socket)
        let hello1 = try pod1.hello()
        XCTAssertEqual(hello1.vip, IPv4Address("10.9.0.7"), "a runtime pod's clients get its vip")
        let hello2 = try pod2.hello()
        XCTAssertEqual(try steady.allocPD(), PDHandle(rawValue: 1))
        XCTAssertEqual(try admin.status().clients.filter { $0.identity.pod == "team/web-0" }.count, 2)

        let removed = try admin.removePod("team/web-0")
        XCTAssertEqual(removed.closedSessions, 2)
        XCTAssertTrue(recorder.isClosed(hello1.sessionID) && recorder.isClosed(hello2.sessionID), "the removed pod's sessions are closed")
        XCTAssertNil(try pod1.socket.receive(timeoutMilliseconds: 10_000), "its clients read end of file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: added.socket), "its socket is gone")
        XCTAssertThrowsError(try TestClient(path: added.socket))
        XCTAssertFalse(recorder.isClosed(steadySession), "another pod's session is untouched")
        XCTAssertEqual(try steady.allocPD(), PDHandle(rawValue: 2))
        XCTAssertThrowsError(try admin.removePod("team/web-0")) { error in
            XCTAssertEqual((error as? AdminFailure)?.errno, ENOENT, "\(error)")
        }
        XCTAssertEqual(try admin.listPods().map(\.name), ["a"])
        task.cancel()
        try await task.value
        await router.shutdown()
    }

    func testTheAdminSocketIsRootOnly() async throws {
        XCTAssertTrue(AdminServer.permits(peerUID: 0, routerUID: 1000))
        XCTAssertTrue(AdminServer.permits(peerUID: 1000, routerUID: 1000))
        XCTAssertFalse(AdminServer.permits(peerUID: 65534, routerUID: 1000))
        XCTAssertFalse(AdminServer.permits(peerUID: 65534, routerUID: 0))
        let router = try makeRouter()
        let (admin, task) = try startAdmin(router)
        var mode = stat()
        XCTAssertEqual(stat(admin.path, &mode), 0)
        XCTAssertEqual(mode.st_mode & 0o777, 0o600)
        defer { task.cancel() }
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("needs root, setpriv and python3 to run a peer as nobody")
        }
        // Loosen the mode as a misconfigured deployment might: the peer-uid check must still refuse.
        XCTAssertEqual(chmod(admin.path, 0o666), 0)
        XCTAssertEqual(chmod(directory, 0o755), 0)
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10); s.connect(sys.argv[1])
            s.sendall(b'{"command":"pod-list"}\\n'); data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            s.close()
            print(data.decode())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, admin.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let response = try JSONDecoder().decode(AdminResponse.self, from: Data(text.utf8))
        XCTAssertEqual(response.errno, EACCES, text)
        XCTAssertTrue(response.error?.contains("permission denied") == true, text)
        XCTAssertNil(response.pods, "a refused peer learns nothing")
        XCTAssertNoThrow(try admin.listPods(), "root is still served")
        task.cancel()
        try await task.value
        await router.shutdown()
    }

    func testAStalledAdminClientBlocksNeitherSessionsNorOtherAdminClients() async throws {
        let router = try makeRouter()
        let (admin, task) = try startAdmin(router)
        // Connected, never sends its request line, never reads.
        let stalled = try (0..<3).map { _ in try StreamSocket.connect(path: admin.path) }
        let started = Poll.nowMilliseconds()
        XCTAssertEqual(try admin.status().pods.count, 1)
        var client = try TestClient(path: socket("a"))
        _ = try client.hello()
        XCTAssertEqual(try client.allocPD(), PDHandle(rawValue: 1))
        XCTAssertLessThan(Poll.nowMilliseconds() - started, 3000, "a stalled admin client held up others")
        // The stalled ones are answered with an error once their request deadline passes, then closed.
        let answer = try stalled[0].readToEnd(maxBytes: 65536, deadline: Poll.nowMilliseconds() + 20_000)
        let response = try JSONDecoder().decode(AdminResponse.self, from: Data(answer))
        XCTAssertEqual(response.errno, ETIMEDOUT, "\(response)")
        stalled.forEach { $0.close() }
        task.cancel()
        try await task.value
        await router.shutdown()
    }

    func testAdminRequestsThatAreNotUnderstoodGetAnError() throws {
        let router = try makeRouter()
        let admin = AdminServer(path: "\(directory)/unused.sock", router: router, logger: Logger(label: "t"))
        let bad = admin.respond(to: Array("reboot".utf8))
        XCTAssertEqual(bad.errno, EINVAL)
        XCTAssertNotNil(bad.error)
        XCTAssertEqual(admin.respond(to: Array("status\n".utf8)).status?.device, "stub0", "the bare word status still works")
        XCTAssertEqual(admin.respond(to: Array(#"{"command":"pod-add"}"#.utf8)).errno, EINVAL)
        XCTAssertEqual(admin.respond(to: Array(#"{"command":"pod-remove","id":"nope"}"#.utf8)).errno, ENOENT)
        let semaphore = DispatchSemaphore(value: 0)
        Task { await router.shutdown(); semaphore.signal() }
        XCTAssertEqual(semaphore.wait(timeout: .now() + 20), .success)
    }

    /// Runs the built `ffctl` (next to the test bundle) and returns its exit status, stdout and stderr.
    private func ffctl(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ffctl")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else { throw XCTSkip("ffctl not built at \(executable.path)") }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    func testFFCtlAddsListsAndRemovesPodsAndShowsStatus() async throws {
        let router = try makeRouter()
        let (admin, task) = try startAdmin(router)
        let socketFlag = ["--admin-socket", admin.path]
        let add = try ffctl(["router", "pod", "add", "--name", "web-0", "--namespace", "team", "--uid", "u-1", "--vip", "10.9.0.9"] + socketFlag)
        XCTAssertEqual(add.status, 0, add.err)
        XCTAssertTrue(add.out.hasPrefix("added  team/web-0  vip 10.9.0.9  uid u-1  socket \(directory)/pod-u-1.sock"), add.out)
        let list = try ffctl(["router", "pod", "list"] + socketFlag)
        XCTAssertEqual(list.out.split(separator: "\n").count, 2, list.out)
        var client = try TestClient(path: "\(directory)/pod-u-1.sock")
        _ = try client.hello()
        let status = try ffctl(["router", "status"] + socketFlag)
        XCTAssertEqual(status.status, 0, status.err)
        XCTAssertTrue(status.out.contains("pod team/web-0 (10.9.0.9)"), status.out)
        XCTAssertTrue(status.out.contains("limits open files"), status.out)
        let conflict = try ffctl(["router", "pod", "add", "--name", "web-1", "--uid", "u-2", "--vip", "10.9.0.9"] + socketFlag)
        XCTAssertNotEqual(conflict.status, 0)
        XCTAssertTrue(conflict.err.contains("already has vip 10.9.0.9"), conflict.err)
        let remove = try ffctl(["router", "pod", "remove", "u-1"] + socketFlag)
        XCTAssertEqual(remove.status, 0, remove.err)
        XCTAssertTrue(remove.out.contains("sessions closed 1"), remove.out)
        XCTAssertNil(try client.socket.receive(timeoutMilliseconds: 10_000))
        let missing = try ffctl(["router", "pod", "remove", "u-1"] + socketFlag)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("no pod u-1"), missing.err)
        let nowhere = try ffctl(["router", "status", "--admin-socket", "\(directory)/none.sock"])
        XCTAssertTrue(nowhere.err.contains("no router is listening at"), nowhere.err)
        task.cancel()
        try await task.value
        await router.shutdown()
    }
}
