import FFProtocol
@testable import FFRouter
import FFSystem
import XCTest

/// The router's handler table: one handler per request type, refusals for everything else.
final class RequestTableTests: XCTestCase {
    private final class Context {}
    /// Whether a reply's release ran.
    private final class Released: @unchecked Sendable { var value = false }

    func testTheSessionHasAHandlerForEveryRequestOfTheProtocolButTheHandshake() {
        let requests = Set(MessageRegistry.requests.map { $0.kind }).subtracting([MessageKind.hello])
        XCTAssertEqual(Session.handlers.kinds, requests, "a request type in MessageRegistry has no handler, or the reverse")
    }

    func testARegisteredRequestIsAnsweredWithItsOwnReplyKind() throws {
        var table = RequestTable<Context>()
        table.on(AllocPDRequest.self) { _, _, _ in PDHandle(rawValue: 7) }
        let reply = try table.run(Context(), Message(AllocPDRequest()), descriptors: [])
        XCTAssertEqual(reply.message, Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: 7)))
        XCTAssertEqual(reply.message.kind, AllocPDRequest.replyKind)
    }

    func testARequestWithoutAHandlerIsRefusedAsNotSupported() {
        var table = RequestTable<Context>()
        table.on(AllocPDRequest.self) { _, _, _ in PDHandle(rawValue: 7) }
        XCTAssertThrowsError(try table.run(Context(), Message(QueryDeviceRequest()), descriptors: [])) { error in
            XCTAssertEqual((error as? ErrorReply)?.errno, Errno.notSupported)
            XCTAssertEqual((error as? ErrorReply)?.reason, "queryDevice is not served by this router")
        }
    }

    func testAReplySentAsARequestIsAProtocolError() {
        var table = RequestTable<Context>()
        table.on(AllocPDRequest.self) { _, _, _ in PDHandle(rawValue: 7) }
        let reply = Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: 1))
        XCTAssertThrowsError(try table.run(Context(), reply, descriptors: [])) { error in
            XCTAssertEqual((error as? ErrorReply)?.errno, Errno.protocolError)
            XCTAssertEqual((error as? ErrorReply)?.reason, "allocPDReply is a reply, not a request")
        }
    }

    func testAHandlerThatHandsOverADescriptorSendsItAndReleasesItAfterwards() throws {
        var table = RequestTable<Context>()
        let released = Released()
        table.on(CreateCompChannelRequest.self, answer: { _, _, _ in
            Answer(body: CompChannelHandle(rawValue: 3), descriptors: [9], afterSend: { released.value = true })
        })
        let reply = try table.run(Context(), Message(CreateCompChannelRequest()), descriptors: [])
        XCTAssertEqual(reply.descriptors, [9])
        XCTAssertEqual(reply.message.descriptorCount, 1)
        reply.afterSend?()
        XCTAssertTrue(released.value)
    }
}
