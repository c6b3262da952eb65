import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Glibc
import XCTest

/// What only the in-memory backend shows of the router's session logic: rxe's inline grants and completion-channel
/// events. Ownership, teardown, limits, translation and data between two pods are `RouterScenarios`, run on this
/// backend and on rxe0 alike.
final class SessionFakeBackendTests: XCTestCase {
    /// As rxe (rxe_init_sq): a send WQE has room for max(16 × send SGEs, inline bytes), reported as both limits, so a
    /// QP asking for no inline data may still send 16 bytes per SGE inline (rdma_xclient does); the UD QP's Q_Key
    /// the client set is what query_qp reports.
    func testTheFakeDeviceGrantsInlineDataAsRxeDoesAndQueryQPReportsTheQKey() {
        let a = SessionDriver(backend: FakeBackend())
        let pd = a.allocPD(), cq = a.createCQ()
        for (requested, sge, inline) in [((1, 0), 1, 16), ((2, 100), 6, 100), ((4, 0), 4, 64)] as [((UInt32, UInt32), UInt32, UInt32)] {
            let caps = QPCapabilities(maxSendWR: 4, maxRecvWR: 4, maxSendSGE: requested.0, maxRecvSGE: 1, maxInlineData: requested.1)
            guard let reply = (a.ok(Message(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .ud, signalAll: false,
                                                                                  capabilities: caps)))).reply(to: CreateQPRequest.self) else { continue }
            XCTAssertEqual(reply.capabilities.maxSendSGE, sge, "\(requested)")
            XCTAssertEqual(reply.capabilities.maxInlineData, inline, "\(requested)")
            var attributes = FFProtocol.QPAttributes()
            attributes.state = .initialized
            attributes.port = 1
            attributes.qkey = 0x0123_4567
            a.ok(Message(ModifyQPRequest(qp: reply.qp, mask: [.state, .pkeyIndex, .port, .qkey], attributes: attributes)))
            guard let query = a.ok(Message(QueryQPRequest(qp: reply.qp, mask: [.state, .qkey]))).reply(to: QueryQPRequest.self) else { continue }
            XCTAssertEqual(query.attributes.qkey, 0x0123_4567)
        }
    }

    func testCompletionChannelEventsReachTheClientsDescriptorAfterReqNotify() throws {
        let backend = FakeBackend()
        let pair = try PodPair(backend: backend, channelOnB: true)
        guard let fd = pair.channelDescriptor else { return XCTFail("no completion channel descriptor") }
        defer { close(fd) }
        let (a, b, memA, memB, mrA, mrB) = (pair.a, pair.b, pair.memA, pair.memB, pair.mrA, pair.mrB)
        let (cqA, cqB, qpA, qpB) = (pair.cqA, pair.cqB, pair.qpA, pair.qpB)
        b.ok(Message(ReqNotifyCQRequest(cq: cqB, solicitedOnly: false)))
        b.ok(Message(PostRecvRequest(target: qpB, requests: [ReceiveWorkRequest(wrID: 1, sgList: [ScatterGatherEntry(address: memB.address, length: 64, lkey: mrB.lkey)])])))
        a.ok(Message(PostSendRequest(qp: qpA, requests: [SendWorkRequest(wrID: 1, opcode: .send, sgList: [ScatterGatherEntry(address: memA.address, length: 4, lkey: mrA.lkey)])])))
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pfd, 1, 10_000), 1, "the event arrives on the client's descriptor")
        var record = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &record, 16)
        XCTAssertEqual(try CompletionEvent.decode(Array(record.prefix(max(0, n)))).cq, cqB)
        // A CQ without a channel cannot be armed (docs/protocol.md: EINVAL).
        XCTAssertEqual(a.refused(Message(ReqNotifyCQRequest(cq: cqA, solicitedOnly: false))).errno, Errno.invalidArgument)
        b.session.close()
        a.session.close()
        // The channel goes once its forwarding task has ended.
        try eventuallyBlocking("every object destroyed") { backend.liveObjects.isEmpty }
    }
}
