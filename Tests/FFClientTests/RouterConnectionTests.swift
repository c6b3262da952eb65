import FFClient
import FFProtocol
import FFSystem
import Foundation
import XCTest

/// The client against a scripted router on a real socket: what it sends, and what it does with each answer.
final class RouterConnectionTests: XCTestCase {
    private var path = ""
    private var listener: SeqPacketSocket!

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "ffclient-\(getpid())-\(UUID().uuidString.prefix(6)).sock"
        listener = try SeqPacketSocket.listen(path: path)
    }

    override func tearDown() {
        listener.close()
        unlink(path)
    }

    /// Runs a scripted router on a thread: accepts one client and hands its connection to `script`.
    @discardableResult
    private func scriptedRouter(_ script: @escaping @Sendable (SeqPacketSocket) -> Void) -> Thread {
        let listener = self.listener!
        let thread = Thread {
            var connection: SeqPacketSocket?
            for _ in 0..<500 where connection == nil {
                connection = try? listener.accept()
                if connection == nil { usleep(10_000) }
            }
            guard let connection else { return }
            script(connection)
        }
        thread.start()
        return thread
    }

    /// Runs a fake router on a thread: accepts one client and answers each request with `answer`.
    private func fakeRouter(_ answer: @escaping @Sendable (Frame) -> Frame?) -> Thread {
        scriptedRouter { connection in
            while let datagram = try? connection.receive(timeoutMilliseconds: 5000),
                  let frame = try? Frame.decode(datagram.bytes),
                  let reply = answer(frame), let bytes = try? reply.encode() {
                try? connection.send(bytes)
            }
            connection.close()
        }
    }

    private static let vip = IPv4Address("10.9.0.1")!

    private static func welcome(_ frame: Frame) -> Frame? {
        guard let hello = frame.message.request(Hello.self) else { return nil }
        return Frame(requestID: frame.requestID, message: ProtocolVersion.answer(hello, sessionID: 7, vip: vip))
    }

    func testHelloReplyGivesTheSessionItsVirtualIdentity() throws {
        _ = fakeRouter { Self.welcome($0) }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertEqual(connection.session.sessionID, 7)
        XCTAssertEqual(connection.session.vip, Self.vip)
        XCTAssertEqual(connection.session.gid, GID(ipv4Mapped: Self.vip))
    }

    func testARefusedHelloSurfacesTheRoutersReasonAndErrno() {
        _ = fakeRouter { frame in
            Frame(requestID: frame.requestID, message: .error(VersionMismatch(client: 1...1, router: 2...3).errorReply))
        }
        XCTAssertThrowsError(try RouterConnection(path: path, name: "unit")) { error in
            XCTAssertEqual((error as? ClientError)?.errno, Errno.protocolNotSupported)
            XCTAssertTrue("\(error)".contains("2..3"), "\(error)")
        }
    }

    func testAnErrorReplyBecomesTheVerbsErrnoAndReason() throws {
        _ = fakeRouter { frame in
            if frame.message.request(Hello.self) != nil { return Self.welcome(frame) }
            return Frame(requestID: frame.requestID, message: .error(ErrorReply(errno: Errno.badHandle, reason: "no QP 4 in this session")))
        }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertThrowsError(try connection.destroyQP(QPHandle(rawValue: 4))) { error in
            XCTAssertEqual(error as? ClientError, .router(ErrorReply(errno: Errno.badHandle, reason: "no QP 4 in this session")))
        }
    }

    func testAReplyToAnotherRequestIsAProtocolViolation() throws {
        _ = fakeRouter { frame in
            if frame.message.request(Hello.self) != nil { return Self.welcome(frame) }
            return Frame(requestID: frame.requestID + 100, message: Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: 1)))
        }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertThrowsError(try connection.allocatePD()) { error in
            guard case .protocolViolation(let what)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertTrue(what.contains("expected"), what)
        }
    }

    func testALateReplyAfterATimeoutIsDroppedAndTheNextCallGetsItsOwnAnswer() throws {
        scriptedRouter { connection in
            // The first allocPD is answered only once the next request shows the client gave up on it:
            // then the late reply goes out first, right before the answer to the new request.
            var held: Frame?
            var answeredLate = false
            while let datagram = try? connection.receive(timeoutMilliseconds: 5000), let frame = try? Frame.decode(datagram.bytes) {
                if frame.message.request(Hello.self) != nil {
                    try? connection.send(try! Self.welcome(frame)!.encode())
                    continue
                }
                if held == nil && !answeredLate {
                    held = frame
                    continue
                }
                if let late = held {
                    try? connection.send(try! Frame(requestID: late.requestID, message: Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: UInt32(late.requestID)))).encode())
                    held = nil
                    answeredLate = true
                }
                try? connection.send(try! Frame(requestID: frame.requestID, message: Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: UInt32(frame.requestID)))).encode())
            }
            connection.close()
        }
        let connection = try RouterConnection(path: path, name: "unit", timeoutMilliseconds: 300)
        XCTAssertThrowsError(try connection.allocatePD()) { error in
            guard case .transport(let cause)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertEqual(cause.errno, ETIMEDOUT)
        }
        // Request 2's call reads the late reply to request 1 first, drops it, and takes its own.
        XCTAssertEqual(try connection.allocatePD().rawValue, 2)
        XCTAssertEqual(try connection.allocatePD().rawValue, 3, "the session stays usable")
        connection.close()
    }

    func testUndecodableBytesInsteadOfAReplyAreAProtocolViolation() throws {
        scriptedRouter { connection in
            while let datagram = try? connection.receive(timeoutMilliseconds: 5000), let frame = try? Frame.decode(datagram.bytes) {
                if frame.message.request(Hello.self) != nil {
                    try? connection.send(try! Self.welcome(frame)!.encode())
                } else {
                    try? connection.send([0xde, 0xad, 0xbe, 0xef])
                }
            }
            connection.close()
        }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertThrowsError(try connection.allocatePD()) { error in
            guard case .protocolViolation(let what)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertTrue(what.contains("undecodable"), what)
        }
    }

    func testAReplyOfTheWrongKindIsAProtocolViolation() throws {
        _ = fakeRouter { frame in
            if frame.message.request(Hello.self) != nil { return Self.welcome(frame) }
            return Frame(requestID: frame.requestID, message: Message.reply(to: DeallocPDRequest.self, EmptyBody()))
        }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertThrowsError(try connection.allocatePD()) { error in
            XCTAssertEqual((error as? ClientError)?.errno, Errno.protocolError)
        }
    }

    func testARouterThatHangsUpIsATransportError() throws {
        _ = fakeRouter { frame in
            if frame.message.request(Hello.self) != nil { return Self.welcome(frame) }
            return nil
        }
        let connection = try RouterConnection(path: path, name: "unit")
        XCTAssertThrowsError(try connection.allocatePD()) { error in
            guard case .transport? = error as? ClientError else { return XCTFail("\(error)") }
        }
    }

    func testRegisteringMemorySendsTheMemfdAndTheProcessAddress() throws {
        let seen = LockedBox<(RegMRRequest, Int)?>(nil)
        scriptedRouter { connection in
            while let datagram = try? connection.receive(timeoutMilliseconds: 5000), let frame = try? Frame.decode(datagram.bytes) {
                let reply: Frame
                if frame.message.request(Hello.self) != nil {
                    reply = Self.welcome(frame)!
                } else if let r = frame.message.request(RegMRRequest.self) {
                    seen.set((r, datagram.descriptors.count))
                    reply = Frame(requestID: frame.requestID,
                                  message: Message.reply(to: RegMRRequest.self, RegMRReply(mr: MRHandle(rawValue: 2), lkey: 5, rkey: 6)))
                } else {
                    return
                }
                try? connection.send(try! reply.encode())
            }
        }
        let connection = try RouterConnection(path: path, name: "unit")
        let memory = try SharedMemory(name: "unit", size: 8192)
        let reply = try connection.registerMemory(pd: PDHandle(rawValue: 1), memory: memory, offset: 4096, length: 100, access: [.localWrite])
        XCTAssertEqual(reply.rkey, 6)
        let (request, descriptors) = try XCTUnwrap(seen.get())
        XCTAssertEqual(descriptors, 1, "the memfd travels with the request")
        XCTAssertEqual(request.address, memory.address + 4096)
        XCTAssertEqual(request.memfdOffset, 4096)
        XCTAssertEqual(request.length, 100)
    }
}

/// A value shared with the fake router's thread.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ newValue: T) { lock.withLock { value = newValue } }
    func get() -> T { lock.withLock { value } }
}
