import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Foundation
import FreeFlowTestSupport
import Logging
import Synchronization
import XCTest

/// The router's in-process rdma_cm on the fake backend, driven as the client library drives it: cm calls over
/// sessions, events read from the channel descriptors the router handed out.
final class ConnectionManagerServiceTests: XCTestCase {
    private static let node = IPv4Address("10.0.2.15")!
    private static let vips = (1...4).map { IPv4Address("10.9.0.\($0)")! }
    private static let map = MemoryVipMap(Dictionary(uniqueKeysWithValues: vips.map { ($0, node) } + [(IPv4Address("10.9.1.1")!, IPv4Address("10.0.2.99")!)]))

    private var backend: FakeBackend!
    private var cm: ConnectionManagerService!

    override func setUp() {
        backend = FakeBackend(nodeIP: Self.node)
        var logger = Logger(label: "test.cm")
        logger.logLevel = .error
        cm = ConnectionManagerService(nodeIP: Self.node, map: Self.map, logger: logger)
    }

    /// One pod's session with one event channel.
    private final class Pod {
        let driver: SessionDriver
        let channel: CMChannelHandle
        let events: SeqPacketSocket

        init(_ test: ConnectionManagerServiceTests, vip: IPv4Address, id: UInt64) throws {
            driver = SessionDriver(backend: test.backend, vip: vip, id: id, map: ConnectionManagerServiceTests.map, connectionManager: test.cm)
            let reply = driver.raw(Message(CMCreateChannelRequest()))
            guard let handle = reply.message.reply(to: CMCreateChannelRequest.self), let fd = reply.descriptors.first else {
                throw HarnessFailure("cmCreateChannel refused: \(reply.message)")
            }
            channel = handle
            events = try SeqPacketSocket(adopting: fd, path: "cm channel")
        }

        func call(_ request: CMRequest, file: StaticString = #filePath, line: UInt = #line) -> CMReply {
            guard let reply = driver.ok(Message(request), file: file, line: line).reply(to: CMRequest.self) else { return CMReply() }
            return reply
        }

        func refused(_ request: CMRequest, file: StaticString = #filePath, line: UInt = #line) -> ErrorReply {
            driver.refused(Message(request), file: file, line: line)
        }

        func newID(_ space: CMPortSpace = .tcp) -> CMIDHandle { call(.createID(channel: channel, portSpace: space)).id ?? CMIDHandle(rawValue: 0) }

        /// The next event, within a generous bound.
        func event(file: StaticString = #filePath, line: UInt = #line) throws -> CMEvent {
            guard let datagram = try events.receive(timeoutMilliseconds: 10_000) else { throw HarnessFailure("no event within 10 s") }
            return try CMEvent.decode(datagram.bytes)
        }

        /// A QP of this session (PD, CQ, RC or UD QP) attached to `id`.
        func attachedQP(to id: CMIDHandle, type: QPType = .rc) -> UInt32 {
            let pd = driver.allocPD()
            let cq = driver.createCQ()
            let (qp, number) = driver.createQP(pd, cq, type: type)
            _ = call(.attachQP(id, qp: qp))
            return number
        }

        /// Listens on `port` of any address.
        func listen(port: UInt16) -> CMIDHandle {
            let id = newID()
            _ = call(.bind(id, address: IPv4Address(0, 0, 0, 0), port: port))
            _ = call(.listen(id, backlog: 4))
            return id
        }

        /// Resolves `vip` and `port` and connects with `data`; returns the id once the request went out.
        func connect(to vip: IPv4Address, port: UInt16, data: [UInt8]) throws -> CMIDHandle {
            let id = newID()
            _ = call(.resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: vip, port: port, timeoutMilliseconds: 2000))
            XCTAssertEqual(try event().type, .addressResolved)
            _ = call(.resolveRoute(id, timeoutMilliseconds: 2000))
            XCTAssertEqual(try event().type, .routeResolved)
            let qpn = attachedQP(to: id)
            _ = call(.connect(CMConnectionParameters(id: id, qpNum: qpn, responderResources: 1, initiatorDepth: 1, privateData: data)))
            return id
        }
    }

    func testTwoPodsListenOnOnePortAndEachConnectReachesThePodItWasAddressedTo() throws {
        let serverA = try Pod(self, vip: Self.vips[0], id: 1), serverB = try Pod(self, vip: Self.vips[1], id: 2)
        let clientC = try Pod(self, vip: Self.vips[2], id: 3), clientD = try Pod(self, vip: Self.vips[3], id: 4)
        let listenA = serverA.listen(port: 7471), listenB = serverB.listen(port: 7471)
        let toA = try clientC.connect(to: Self.vips[0], port: 7471, data: Array("for a".utf8))
        let toB = try clientD.connect(to: Self.vips[1], port: 7471, data: Array("for b".utf8))

        for (server, listen, client, data) in [(serverA, listenA, Self.vips[2], "for a"), (serverB, listenB, Self.vips[3], "for b")] {
            let request = try server.event()
            XCTAssertEqual(request.type, .connectRequest)
            XCTAssertEqual(request.listenID, listen)
            XCTAssertEqual(request.remoteAddress, client, "the peer address is the client's vip, never a node IP")
            XCTAssertEqual(request.localPort, 7471)
            XCTAssertEqual(request.privateData, Array(data.utf8), "the application's private data, without the router's header")
            let qpn = server.attachedQP(to: request.id)
            _ = server.call(.accept(CMConnectionParameters(id: request.id, qpNum: qpn, responderResources: 1, initiatorDepth: 1,
                                                           privateData: Array("welcome".utf8))))
        }
        for (client, id, server) in [(clientC, toA, Self.vips[0]), (clientD, toB, Self.vips[1])] {
            let response = try client.event()
            XCTAssertEqual(response.type, .connectResponse)
            XCTAssertEqual(response.remoteAddress, server)
            XCTAssertEqual(response.privateData, Array("welcome".utf8))
            XCTAssertNotEqual(response.remoteQPN, 0)
            _ = client.call(.establish(id))
        }
        XCTAssertEqual(try serverA.event().type, .established)
        XCTAssertEqual(try serverB.event().type, .established)
    }

    /// A UD connect (SIDR) in process; then `ibv_init_ah_from_wc`'s question "who sent this?" is answered with the
    /// sender's vip for the GRH the device writes (zeros on the fake device, the node's GID on a real one), and
    /// refused with a reason for a receiver that is not the session's QP, an unknown sender or a GID that is no node's.
    func testAUDSenderIsResolvedToItsVipAndEveryOtherQuestionIsRefusedWithAReason() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1), client = try Pod(self, vip: Self.vips[2], id: 3)
        let listen = server.newID(.udp)
        _ = server.call(.bind(listen, address: IPv4Address(0, 0, 0, 0), port: 7174))
        _ = server.call(.listen(listen, backlog: 4))
        let id = client.newID(.udp)
        _ = client.call(.resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: Self.vips[0], port: 7174, timeoutMilliseconds: 2000))
        XCTAssertEqual(try client.event().type, .addressResolved)
        _ = client.call(.resolveRoute(id, timeoutMilliseconds: 2000))
        XCTAssertEqual(try client.event().type, .routeResolved)
        let clientQPN = client.attachedQP(to: id, type: .ud)
        _ = client.call(.connect(CMConnectionParameters(id: id, qpNum: clientQPN, privateData: Array(repeating: 3, count: CMPrivateData.connectUD))))
        let request = try server.event()
        XCTAssertEqual(request.type, .connectRequest)
        XCTAssertEqual(request.remoteAddress, Self.vips[2])
        XCTAssertEqual(request.remoteQPN, clientQPN)
        let serverQPN = server.attachedQP(to: request.id, type: .ud)
        _ = server.call(.accept(CMConnectionParameters(id: request.id, qpNum: serverQPN)))
        let established = try client.event()
        XCTAssertEqual(established.type, .established)
        XCTAssertEqual(established.remoteQPN, serverQPN)
        XCTAssertEqual(established.qkey, ConnectionManagerService.datagramQKey)

        for gid in [GID.zero, GID(ipv4Mapped: Self.node)] {
            XCTAssertEqual(server.call(.resolveSender(gid: gid, sourceQPN: clientQPN, receiverQPN: serverQPN)).address, Self.vips[2], "\(gid)")
            XCTAssertEqual(client.call(.resolveSender(gid: gid, sourceQPN: serverQPN, receiverQPN: clientQPN)).address, Self.vips[0], "\(gid)")
        }
        let notMine = server.refused(.resolveSender(gid: .zero, sourceQPN: clientQPN, receiverQPN: clientQPN))
        XCTAssertEqual(notMine.errno, Errno.invalidArgument)
        XCTAssertTrue(notMine.reason.contains("not one of this session's QPs"), notMine.reason)
        let unknown = server.refused(.resolveSender(gid: .zero, sourceQPN: 0xAB_CDEF, receiverQPN: serverQPN))
        XCTAssertEqual(unknown.errno, Errno.noEntry)
        XCTAssertTrue(unknown.reason.contains("\(0xAB_CDEF)"), unknown.reason)
        let otherNode = server.refused(.resolveSender(gid: GID(ipv4Mapped: IPv4Address("10.0.2.99")!), sourceQPN: clientQPN, receiverQPN: serverQPN))
        XCTAssertEqual(otherNode.errno, Errno.noEntry, "no UD connect taught this router a sender of node 10.0.2.99")
        XCTAssertTrue(otherNode.reason.contains("10.0.2.99"), otherNode.reason)
        let linkLocal = GID(bytes: [0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [1])!
        XCTAssertEqual(server.refused(.resolveSender(gid: linkLocal, sourceQPN: clientQPN, receiverQPN: serverQPN)).errno, Errno.invalidArgument)
    }

    func testAConnectToAPortNobodyListensOnIsRejectedOnceTheListenerGraceIsOver() throws {
        let client = try Pod(self, vip: Self.vips[2], id: 3)
        let started = Date()
        _ = try client.connect(to: Self.vips[0], port: 9999, data: [])
        let event = try client.event()
        XCTAssertEqual(event.type, .rejected)
        XCTAssertEqual(event.status, ConnectionManagerService.rejectInvalidService)
        XCTAssertTrue(event.reason.contains("nothing listens on 10.9.0.1 port 9999"), event.reason)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), Double(ConnectionManagerService.defaultListenerGraceMilliseconds) / 1000,
                                    "refused only after waiting for a listener")
        XCTAssertEqual(cm.counts.listeners, 0)
    }

    /// perftest -R's client connects as soon as its peer says it will listen, and through a shim and router that
    /// listen takes round trips: a connect that comes first waits for the listener instead of being rejected.
    func testAConnectMadeBeforeItsListenerExistsReachesTheListenerOnceItListens() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1), client = try Pod(self, vip: Self.vips[2], id: 3)
        let id = try client.connect(to: Self.vips[0], port: 7480, data: Array("early".utf8))
        let listen = server.listen(port: 7480)
        let request = try server.event()
        XCTAssertEqual(request.type, .connectRequest)
        XCTAssertEqual(request.listenID, listen)
        XCTAssertEqual(request.remoteAddress, Self.vips[2])
        XCTAssertEqual(request.privateData, Array("early".utf8))
        let qpn = server.attachedQP(to: request.id)
        _ = server.call(.accept(CMConnectionParameters(id: request.id, qpNum: qpn, responderResources: 1, initiatorDepth: 1)))
        XCTAssertEqual(try client.event().type, .connectResponse)
        _ = client.call(.establish(id))
        XCTAssertEqual(try server.event().type, .established)
        // The grace ends later and finds nothing waiting: the connection stays up.
        assertNoEvent(on: client, "the client got an event after its grace ended")
    }

    func testAWaitingConnectThatIsDestroyedIsForgottenAndItsGraceEndsQuietly() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1), client = try Pod(self, vip: Self.vips[2], id: 3)
        let id = try client.connect(to: Self.vips[0], port: 7481, data: [])
        _ = client.call(.destroyID(id))
        _ = server.listen(port: 7481)
        assertNoEvent(on: server, "a destroyed connect reached the listener")
        assertNoEvent(on: client, "a destroyed connect was rejected")
    }

    /// Waits past the listener grace for an event on `pod`'s channel; none may come.
    private func assertNoEvent(on pod: Pod, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        let bound = Int32(ConnectionManagerService.defaultListenerGraceMilliseconds + 300)
        XCTAssertThrowsError(try pod.events.receive(timeoutMilliseconds: bound), message, file: file, line: line) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ETIMEDOUT, "\(message): \(error)", file: file, line: line)
        }
    }

    func testAnUnknownVipFailsResolveAtOnceWithAnAddressErrorNamingIt() throws {
        let client = try Pod(self, vip: Self.vips[0], id: 1)
        let id = client.newID()
        _ = client.call(.resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: IPv4Address("10.7.7.7")!, port: 1,
                                        timeoutMilliseconds: 2000))
        let event = try client.event()
        XCTAssertEqual(event.type, .addressError)
        XCTAssertEqual(event.status, -Errno.hostUnreachable)
        XCTAssertTrue(event.reason.contains("10.7.7.7"), event.reason)
        XCTAssertEqual(client.refused(.resolveRoute(id, timeoutMilliseconds: 1)).errno, Errno.invalidArgument)
    }

    func testAVipOnAnotherNodeIsUnreachableForTheInProcessManager() throws {
        let client = try Pod(self, vip: Self.vips[0], id: 1)
        _ = try client.connect(to: IPv4Address("10.9.1.1")!, port: 7471, data: [])
        let event = try client.event()
        XCTAssertEqual(event.type, .unreachable)
        XCTAssertTrue(event.reason.contains("10.0.2.99"), event.reason)
    }

    func testAddressesArePodsOwnAndAPortHasOneListenerPerVip() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1)
        let id = server.newID()
        XCTAssertEqual(server.refused(.bind(id, address: Self.vips[1], port: 7000)).errno, Errno.addressNotAvailable)
        _ = server.listen(port: 7000)
        let second = server.newID()
        XCTAssertEqual(server.refused(.bind(second, address: Self.vips[0], port: 7000)).errno, Errno.addressInUse)
    }

    func testPrivateDataBeyondTheBudgetIsRefused() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1)
        _ = server.listen(port: 7001)
        let client = try Pod(self, vip: Self.vips[1], id: 2)
        let id = client.newID()
        _ = client.call(.resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: Self.vips[0], port: 7001, timeoutMilliseconds: 1))
        _ = try client.event()
        _ = client.call(.resolveRoute(id, timeoutMilliseconds: 1))
        _ = try client.event()
        let qpn = client.attachedQP(to: id)
        let tooMuch = CMConnectionParameters(id: id, qpNum: qpn, privateData: Array(repeating: 1, count: CMPrivateData.connectRC + 1))
        let refusal = client.refused(.connect(tooMuch))
        XCTAssertEqual(refusal.errno, Errno.invalidArgument)
        XCTAssertTrue(refusal.reason.contains("at most \(CMPrivateData.connectRC)"), refusal.reason)
        let foreign = CMConnectionParameters(id: id, qpNum: 0x77_7777)
        XCTAssertEqual(client.refused(.connect(foreign)).errno, Errno.invalidArgument, "a QP number that is not the session's")
    }

    func testAClosedSessionLeavesNothingAndItsPeerSeesDisconnected() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1)
        var client: Pod? = try Pod(self, vip: Self.vips[1], id: 2)
        _ = server.listen(port: 7002)
        let id = try client!.connect(to: Self.vips[0], port: 7002, data: [])
        let request = try server.event()
        _ = server.call(.accept(CMConnectionParameters(id: request.id, qpNum: server.attachedQP(to: request.id))))
        XCTAssertEqual(try client!.event().type, .connectResponse)
        _ = client!.call(.establish(id))
        XCTAssertEqual(try server.event().type, .established)

        client!.driver.session.close()
        client = nil
        XCTAssertEqual(try server.event().type, .disconnected)
        XCTAssertEqual(cm.counts.channels, 1, "only the server's channel is left")
        server.driver.session.close()
        XCTAssertEqual(cm.counts.ids, 0)
        XCTAssertEqual(cm.counts.listeners, 0)
        XCTAssertEqual(cm.counts.channels, 0)
        XCTAssertEqual(backend.liveObjectCount, 0, "the sessions' QPs, CQs and PDs are gone too")
    }

    func testAClientKilledMidConnectIsRejectedAtTheListenerAndAServerKilledMidConnectRejectsTheClient() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1)
        _ = server.listen(port: 7003)
        var client: Pod? = try Pod(self, vip: Self.vips[1], id: 2)
        _ = try client!.connect(to: Self.vips[0], port: 7003, data: [])
        let request = try server.event()
        client!.driver.session.close()
        client = nil
        XCTAssertEqual(try server.event().type, .disconnected, "the pending request's peer went away")
        XCTAssertEqual(server.refused(.accept(CMConnectionParameters(id: request.id, qpNum: 1))).errno, Errno.invalidArgument)

        let other = try Pod(self, vip: Self.vips[2], id: 3)
        _ = try other.connect(to: Self.vips[0], port: 7003, data: [])
        _ = try server.event()
        server.driver.session.close()
        let rejected = try other.event()
        XCTAssertEqual(rejected.type, .rejected)
        other.driver.session.close()
        XCTAssertEqual(cm.counts.ids, 0)
        XCTAssertEqual(cm.counts.listeners, 0)
    }

    /// Random, often nonsensical, calls from four sessions over each other's ids, ports and channels: none may trap the
    /// router, events keep flowing, and closing every session leaves no id, listener or channel behind.
    func testRandomCallsNeverTrapAndClosingEverySessionLeavesNothing() throws {
        let pods = try (0..<4).map { try Pod(self, vip: Self.vips[$0], id: UInt64($0 + 1)) }
        var random = SplitMix64(seed: 0xC0FFEE)
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        let ports: [UInt16] = [0, 1, 7471, 7472, 65535]
        let addresses = Self.vips + [IPv4Address(0, 0, 0, 0), IPv4Address("10.7.7.7")!, IPv4Address("10.9.1.1")!]
        for _ in 0..<20_000 {
            let pod = pick(pods)
            let id = CMIDHandle(rawValue: UInt32(1 + random.next() % 24))
            let data = Array(repeating: UInt8(7), count: Int(random.next() % UInt64(CMPrivateData.maxLength + 1)))
            let parameters = CMConnectionParameters(id: id, qpNum: UInt32(random.next() % 64), responderResources: UInt8(truncatingIfNeeded: random.next()),
                                                    initiatorDepth: UInt8(truncatingIfNeeded: random.next()), privateData: data)
            let request: CMRequest = switch random.next() % 14 {
            case 0: .createID(channel: CMChannelHandle(rawValue: UInt32(1 + random.next() % 3)), portSpace: pick(CMPortSpace.allCases))
            case 1: .destroyID(id)
            case 2: .bind(id, address: pick(addresses), port: pick(ports))
            case 3: .resolveAddress(id, source: pick(addresses), destination: pick(addresses), port: pick(ports), timeoutMilliseconds: 1)
            case 4: .resolveRoute(id, timeoutMilliseconds: 1)
            case 5: .listen(id, backlog: Int32(random.next() % 3))
            case 6: .connect(parameters)
            case 7: .accept(parameters)
            case 8: .reject(parameters)
            case 9: .disconnect(id)
            case 10: .attachQP(id, qp: QPHandle(rawValue: UInt32(1 + random.next() % 8)))
            case 11: .establish(id)
            case 12: .migrate(id, channel: CMChannelHandle(rawValue: UInt32(1 + random.next() % 3)))
            default: .destroyChannel(CMChannelHandle(rawValue: UInt32(2 + random.next() % 3)))
            }
            _ = pod.driver.raw(Message(request))
            // Drain what arrived, so no channel fills up (the router would drop events, not stall).
            while case let datagram?? = try? pod.events.receive(timeoutMilliseconds: 0) {
                XCTAssertNoThrow(try CMEvent.decode(datagram.bytes))
            }
        }
        for pod in pods { pod.driver.session.close() }
        XCTAssertEqual(cm.counts.ids, 0)
        XCTAssertEqual(cm.counts.listeners, 0)
        XCTAssertEqual(cm.counts.channels, 0)
    }

    /// Handles are per session: every call naming an id that only another session holds is refused with EBADF, and
    /// that other session's listener goes on working.
    func testCallsNamingAnotherSessionsIDsAreRefusedWithEBADFAndLeaveThemAlone() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1), intruder = try Pod(self, vip: Self.vips[1], id: 2)
        let listen = server.listen(port: 7490)
        let foreign = CMIDHandle(rawValue: listen.rawValue)
        XCTAssertNotEqual(foreign, CMIDHandle(rawValue: intruder.channel.rawValue), "the id exists only in the server")
        let parameters = CMConnectionParameters(id: foreign, qpNum: 1)
        let calls: [CMRequest] = [
            .destroyID(foreign), .bind(foreign, address: IPv4Address(0, 0, 0, 0), port: 7491),
            .resolveAddress(foreign, source: IPv4Address(0, 0, 0, 0), destination: Self.vips[0], port: 7490,
                            timeoutMilliseconds: 1),
            .resolveRoute(foreign, timeoutMilliseconds: 1), .listen(foreign, backlog: 1), .connect(parameters),
            .accept(parameters), .reject(parameters), .disconnect(foreign), .establish(foreign),
            .migrate(foreign, channel: intruder.channel),
        ]
        for call in calls {
            XCTAssertEqual(intruder.refused(call).errno, Errno.badHandle, "\(call)")
        }
        let client = try Pod(self, vip: Self.vips[2], id: 3)
        _ = try client.connect(to: Self.vips[0], port: 7490, data: [])
        let request = try server.event()
        XCTAssertEqual(request.type, .connectRequest)
        XCTAssertEqual(request.listenID, listen)
    }

    /// A call that arrives after its session was closed (the client went away while its thread still had a call
    /// in hand) finds no id and answers EBADF; nothing of the closed session comes back.
    func testACallAfterItsSessionWasClosedIsRefusedWithEBADF() throws {
        let server = try Pod(self, vip: Self.vips[0], id: 1)
        let listen = server.listen(port: 7492)
        cm.close(session: 1)
        for request: CMRequest in [.listen(listen, backlog: 1), .destroyID(listen), .disconnect(listen),
                                   .createID(channel: server.channel, portSpace: .tcp)] {
            XCTAssertThrowsError(try cm.call(request, session: 1, vip: Self.vips[0], ownsQP: { _ in true })) { error in
                XCTAssertEqual((error as? ErrorReply)?.errno, Errno.badHandle, "\(request): \(error)")
            }
        }
        XCTAssertThrowsError(try cm.attach(qpNum: 1, to: listen, session: 1)) { error in
            XCTAssertEqual((error as? ErrorReply)?.errno, Errno.badHandle, "\(error)")
        }
        XCTAssertEqual(cm.counts.ids, 0)
        XCTAssertEqual(cm.counts.listeners, 0)
        XCTAssertEqual(cm.counts.channels, 0)
    }

    /// One thread keeps connecting to a listener while another keeps closing the listener's session and listening
    /// again: every call either works or answers an errno, the router never traps, and nothing is left at the end.
    func testConnectsRacingTheListenersSessionClosingAnswerErrnosAndLeaveNothing() throws {
        let port: UInt16 = 7493
        let allowed: Set<Int32> = [Errno.badHandle, Errno.invalidArgument, Errno.addressInUse]
        let unexpected = Mutex<[String]>([])
        let cm: ConnectionManagerService = cm, vips = Self.vips
        @Sendable func attempt(_ request: CMRequest, session: UInt64, vip: IPv4Address) -> CMReply? {
            do {
                return try cm.call(request, session: session, vip: vip, ownsQP: { _ in true })
            } catch let error as ErrorReply where allowed.contains(error.errno) {
                return nil
            } catch {
                unexpected.withLock { $0.append("\(request): \(error)") }
                return nil
            }
        }
        let (clientChannel, clientEvents) = try cm.createChannel(session: 2, vip: Self.vips[1])
        defer { clientEvents.close() }
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            for _ in 0..<300 {
                if worker == 0 {
                    guard let id = attempt(.createID(channel: clientChannel, portSpace: .tcp), session: 2,
                                           vip: vips[1])?.id else { continue }
                    _ = attempt(.resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: vips[0],
                                                port: port, timeoutMilliseconds: 1), session: 2, vip: vips[1])
                    _ = attempt(.resolveRoute(id, timeoutMilliseconds: 1), session: 2, vip: vips[1])
                    _ = attempt(.connect(CMConnectionParameters(id: id, qpNum: 1)), session: 2, vip: vips[1])
                    _ = attempt(.destroyID(id), session: 2, vip: vips[1])
                    while case .some(.some) = try? clientEvents.receive(timeoutMilliseconds: 0) {}
                } else {
                    guard let (channel, events) = try? cm.createChannel(session: 1, vip: vips[0]) else { continue }
                    if let id = attempt(.createID(channel: channel, portSpace: .tcp), session: 1, vip: vips[0])?.id {
                        _ = attempt(.bind(id, address: IPv4Address(0, 0, 0, 0), port: port), session: 1, vip: vips[0])
                        _ = attempt(.listen(id, backlog: 2), session: 1, vip: vips[0])
                    }
                    cm.close(session: 1)
                    events.close()
                }
            }
        }
        XCTAssertEqual(unexpected.withLock { $0 }, [])
        cm.close(session: 2)
        XCTAssertEqual(cm.counts.ids, 0)
        XCTAssertEqual(cm.counts.listeners, 0)
        XCTAssertEqual(cm.counts.channels, 0)
    }
}
