import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Glibc
import XCTest

/// The router's session logic on the in-memory backend: ownership, translation, the QP state machine, data that
/// really moves between two pods' memory, and teardown that leaves no object behind.
final class SessionFakeBackendTests: XCTestCase {
    func testTwoPodsExchangeSendWriteReadAndAtomicsThroughTheirOwnMemory() throws {
        let backend = FakeBackend()
        let pair = try PodPair(backend: backend)
        let (a, b, memA, memB, mrA, mrB) = (pair.a, pair.b, pair.memA, pair.memB, pair.mrA, pair.mrB)
        let (cqA, cqB, qpA, qpB) = (pair.cqA, pair.cqB, pair.qpA, pair.qpB)

        // SEND with immediate: B posts a receive at offset 1024 of its memory, A sends 5 bytes from offset 0.
        memA.bytes.copyBytes(from: Array("hello".utf8))
        b.ok(Message(PostRecvRequest(target: qpB, requests: [ReceiveWorkRequest(wrID: 7, sgList: [ScatterGatherEntry(address: memB.address + 1024, length: 64, lkey: mrB.lkey)])])))
        let send = SendWorkRequest(wrID: 1, opcode: .sendWithImmediate, immData: UInt32(0xABCD).bigEndian,
                                   sgList: [ScatterGatherEntry(address: memA.address, length: 5, lkey: mrA.lkey)])
        guard let posted = a.ok(Message(PostSendRequest(qp: qpA, requests: [send]))).reply(to: PostSendRequest.self) else { return XCTFail() }
        XCTAssertEqual(posted.errno, 0)
        XCTAssertEqual(a.poll(cqA).map(\.status), [.success])
        let received = b.poll(cqB)
        XCTAssertEqual(received.first?.wrID, 7)
        XCTAssertEqual(received.first?.byteLength, 5)
        XCTAssertEqual(received.first?.immData, UInt32(0xABCD).bigEndian)
        XCTAssertEqual(Array(memB.bytes[1024..<1029]), Array("hello".utf8))

        // RDMA WRITE into B at B's own address and rkey.
        memA.bytes.copyBytes(from: Array("written".utf8))
        let write = SendWorkRequest(wrID: 2, opcode: .rdmaWrite, remoteAddress: memB.address + 2048, rkey: mrB.rkey,
                                    sgList: [ScatterGatherEntry(address: memA.address, length: 7, lkey: mrA.lkey)])
        a.ok(Message(PostSendRequest(qp: qpA, requests: [write])))
        XCTAssertEqual(a.poll(cqA).map(\.opcode), [.rdmaWrite])
        XCTAssertEqual(Array(memB.bytes[2048..<2055]), Array("written".utf8))

        // RDMA READ back from B into A at offset 4096.
        let read = SendWorkRequest(wrID: 3, opcode: .rdmaRead, remoteAddress: memB.address + 1024, rkey: mrB.rkey,
                                   sgList: [ScatterGatherEntry(address: memA.address + 4096, length: 5, lkey: mrA.lkey)])
        a.ok(Message(PostSendRequest(qp: qpA, requests: [read])))
        XCTAssertEqual(a.poll(cqA).map(\.status), [.success])
        XCTAssertEqual(Array(memA.bytes[4096..<4101]), Array("hello".utf8))

        // Fetch-and-add then compare-and-swap on B's word at 4096; the old values land in A at 6144.
        memB.bytes.storeBytes(of: UInt64(40), toByteOffset: 4096, as: UInt64.self)
        let faa = SendWorkRequest(wrID: 4, opcode: .atomicFetchAndAdd, remoteAddress: memB.address + 4096, rkey: mrB.rkey, compareAdd: 2,
                                  sgList: [ScatterGatherEntry(address: memA.address + 6144, length: 8, lkey: mrA.lkey)])
        a.ok(Message(PostSendRequest(qp: qpA, requests: [faa])))
        XCTAssertEqual(memA.bytes.load(fromByteOffset: 6144, as: UInt64.self), 40)
        let cas = SendWorkRequest(wrID: 5, opcode: .atomicCompareAndSwap, remoteAddress: memB.address + 4096, rkey: mrB.rkey, compareAdd: 42, swap: 7,
                                  sgList: [ScatterGatherEntry(address: memA.address + 6144, length: 8, lkey: mrA.lkey)])
        a.ok(Message(PostSendRequest(qp: qpA, requests: [cas])))
        XCTAssertEqual(a.poll(cqA).map(\.opcode), [.fetchAndAdd, .compareAndSwap])
        XCTAssertEqual(memB.bytes.load(fromByteOffset: 4096, as: UInt64.self), 7)

        // An inline send needs no lkey.
        b.ok(Message(PostRecvRequest(target: qpB, requests: [ReceiveWorkRequest(wrID: 8, sgList: [ScatterGatherEntry(address: memB.address, length: 64, lkey: mrB.lkey)])])))
        a.ok(Message(PostSendRequest(qp: qpA, requests: [SendWorkRequest(wrID: 6, opcode: .send, flags: [.signaled, .inline], inlineData: Array("inline".utf8))])))
        XCTAssertEqual(b.poll(cqB).first?.byteLength, 6)
        XCTAssertEqual(Array(memB.bytes[0..<6]), Array("inline".utf8))

        XCTAssertGreaterThan(backend.liveObjectCount, 0)
        a.session.close()
        b.session.close()
        XCTAssertEqual(backend.liveObjects, [:], "a closed session leaves nothing behind")
    }

    func testAPodCannotUseAnotherPodsKeysOrHandles() throws {
        let pair = try PodPair(backend: FakeBackend())
        let (a, memB, mrB) = (pair.a, pair.memB, pair.mrB)
        // B's handles mean nothing in A's session.
        XCTAssertEqual(a.refused(Message(DeregMRRequest(mr: MRHandle(rawValue: 99)))).errno, Errno.badHandle)
        XCTAssertEqual(a.refused(Message(DeallocPDRequest(pd: PDHandle(rawValue: 42)))).errno, Errno.badHandle)
        // B's lkey used by A's QP is a local protection error: the MR is in another PD.
        let (cqA, qpA) = (pair.cqA, pair.qpA)
        let steal = SendWorkRequest(wrID: 1, opcode: .rdmaWrite, remoteAddress: memB.address, rkey: mrB.rkey,
                                    sgList: [ScatterGatherEntry(address: memB.address, length: 8, lkey: mrB.lkey)])
        a.ok(Message(PostSendRequest(qp: qpA, requests: [steal])))
        XCTAssertEqual(a.poll(cqA).map(\.status), [.localProtectionError])
    }

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

    func testAnUnknownVipIsHostUnreachableAndATransitionWithoutItsAttributesIsInvalid() {
        let a = SessionDriver(backend: FakeBackend())
        let pd = a.allocPD(), cq = a.createCQ()
        let (qp, _) = a.createQP(pd, cq)
        var attributes = FFProtocol.QPAttributes()
        attributes.state = .readyToReceive
        XCTAssertEqual(a.refused(Message(ModifyQPRequest(qp: qp, mask: [.state], attributes: attributes))).errno, Errno.invalidArgument,
                       "RESET→RTR is not a transition")
        attributes.state = .initialized
        attributes.port = 1
        a.ok(Message(ModifyQPRequest(qp: qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: attributes)))
        attributes.state = .readyToReceive
        attributes.addressVector = AHAttributes(globalRoute: FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: IPv4Address("10.99.0.1")!)), port: 1)
        let error = a.refused(Message(ModifyQPRequest(qp: qp, mask: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN, .maxDestReadAtomic, .minRNRTimer],
                                                        attributes: attributes)))
        XCTAssertEqual(error.errno, Errno.hostUnreachable)
        XCTAssertTrue(error.reason.contains("10.99.0.1"), error.reason)
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

    func testTranslationBeforeTheFirstMapListSaysTryAgainNotUnknownHost() {
        let map = MemoryVipMap([SessionDriver.vipB: IPv4Address("10.0.2.16")!], ready: false)
        let a = SessionDriver(backend: FakeBackend(), map: map)
        let pd = a.allocPD()
        let ah = CreateAHRequest(pd: pd, attributes: AHAttributes(globalRoute: FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: SessionDriver.vipB)), port: 1))
        let early = a.refused(Message(ah))
        XCTAssertEqual(early.errno, Errno.tryAgain)
        XCTAssertTrue(early.reason.contains("not loaded yet"), early.reason)
        map.isReady = true
        a.ok(Message(ah))
    }
}
