import Foundation
import Verbs
import XCTest

/// Two RC QPs on the two lab GIDs exchange every operation FreeFlow forwards; each test checks the bytes.
final class RCDataPathLabTests: XCTestCase {
    var lab: Lab!
    var pair: ConnectedPair!
    var bufA: AlignedBuffer!
    var bufB: AlignedBuffer!
    var mrA: MemoryRegion!
    var mrB: MemoryRegion!

    override func setUpWithError() throws {
        lab = try Lab.open()
        pair = try ConnectedPair(lab: lab)
        bufA = AlignedBuffer(count: 8192)
        bufB = AlignedBuffer(count: 8192)
        mrA = try pair.pd.registerMemory(bufA, access: .all)
        mrB = try pair.pd.registerMemory(bufB, access: .all)
    }

    private func fill(_ buffer: AlignedBuffer, _ text: String, at offset: Int = 0) {
        let bytes = Array(text.utf8)
        buffer.bytes.baseAddress!.advanced(by: offset).copyMemory(from: bytes, byteCount: bytes.count)
    }

    private func read(_ buffer: AlignedBuffer, at offset: Int = 0, count: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buffer.bytes[offset..<offset + count]), as: UTF8.self)
    }

    func testBothQPsReachRTS() throws {
        XCTAssertEqual(try pair.a.state(), .readyToSend)
        XCTAssertEqual(try pair.b.state(), .readyToSend)
    }

    func testSendLandsInThePostedReceiveBuffer() throws {
        try pair.b.postReceive(ReceiveWorkRequest(id: 7, scatterGather: [mrB.sge(offset: 100, count: 64)]))
        fill(bufA, "hello over rxe")
        try pair.a.postSend(SendWorkRequest(id: 1, operation: .send, scatterGather: [mrA.sge(count: 14)]))
        let sent = try waitForCompletions(pair.cqA)
        XCTAssertEqual(sent.first?.status, .success)
        XCTAssertEqual(sent.first?.opcode, .send)
        let received = try XCTUnwrap(waitForCompletions(pair.cqB).first)
        XCTAssertEqual(received.status, .success, "\(received.status)")
        XCTAssertEqual(received.workRequestID, 7)
        XCTAssertEqual(received.opcode, .receive)
        XCTAssertEqual(received.byteLength, 14)
        XCTAssertNil(received.immediate)
        XCTAssertEqual(read(bufB, at: 100, count: 14), "hello over rxe")
    }

    func testSendWithImmediateDeliversPayloadAndImmediate() throws {
        try pair.b.postReceive(ReceiveWorkRequest(id: 8, scatterGather: [mrB.sge(count: 64)]))
        fill(bufA, "imm payload")
        try pair.a.postSend(SendWorkRequest(id: 2, operation: .sendWithImmediate(0xC0FFEE), scatterGather: [mrA.sge(count: 11)]))
        _ = try waitForCompletions(pair.cqA)
        let received = try XCTUnwrap(waitForCompletions(pair.cqB).first)
        XCTAssertEqual(received.status, .success)
        XCTAssertEqual(received.immediate, 0xC0FFEE)
        XCTAssertEqual(read(bufB, count: 11), "imm payload")
    }

    func testRDMAWriteChangesRemoteMemoryWithoutARemoteCompletion() throws {
        fill(bufA, "written remotely")
        try pair.a.postSend(SendWorkRequest(id: 3, operation: .rdmaWrite(remoteAddress: mrB.address + 512, rkey: mrB.rkey),
                                            scatterGather: [mrA.sge(count: 16)]))
        let wc = try XCTUnwrap(waitForCompletions(pair.cqA).first)
        XCTAssertEqual(wc.status, .success)
        XCTAssertEqual(wc.opcode, .rdmaWrite)
        XCTAssertEqual(read(bufB, at: 512, count: 16), "written remotely")
        XCTAssertNil(try pair.cqB.pollOne(), "an RDMA WRITE without immediate consumes no receive")
    }

    func testRDMAWriteWithImmediateConsumesAReceiveAndCarriesTheImmediate() throws {
        try pair.b.postReceive(ReceiveWorkRequest(id: 9, scatterGather: []))
        fill(bufA, "wimm")
        try pair.a.postSend(SendWorkRequest(id: 4, operation: .rdmaWriteWithImmediate(remoteAddress: mrB.address + 1024, rkey: mrB.rkey,
                                                                                       immediate: 42),
                                            scatterGather: [mrA.sge(count: 4)]))
        _ = try waitForCompletions(pair.cqA)
        let received = try XCTUnwrap(waitForCompletions(pair.cqB).first)
        XCTAssertEqual(received.status, .success)
        XCTAssertEqual(received.opcode, .receiveRDMAWithImmediate)
        XCTAssertEqual(received.immediate, 42)
        XCTAssertEqual(read(bufB, at: 1024, count: 4), "wimm")
    }

    func testRDMAReadFetchesRemoteBytes() throws {
        fill(bufB, "read me back", at: 2048)
        try pair.a.postSend(SendWorkRequest(id: 5, operation: .rdmaRead(remoteAddress: mrB.address + 2048, rkey: mrB.rkey),
                                            scatterGather: [mrA.sge(offset: 4096, count: 12)]))
        let wc = try XCTUnwrap(waitForCompletions(pair.cqA).first)
        XCTAssertEqual(wc.status, .success)
        XCTAssertEqual(wc.opcode, .rdmaRead)
        XCTAssertEqual(read(bufA, at: 4096, count: 12), "read me back")
    }

    func testFetchAndAddReturnsTheOldValueAndAddsRemotely() throws {
        bufB.bytes.storeBytes(of: UInt64(1000), toByteOffset: 64, as: UInt64.self)
        try pair.a.postSend(SendWorkRequest(id: 6, operation: .fetchAndAdd(remoteAddress: mrB.address + 64, rkey: mrB.rkey, add: 234),
                                            scatterGather: [mrA.sge(offset: 64, count: 8)]))
        let wc = try XCTUnwrap(waitForCompletions(pair.cqA).first)
        XCTAssertEqual(wc.status, .success)
        XCTAssertEqual(wc.opcode, .fetchAndAdd)
        XCTAssertEqual(bufA.bytes.load(fromByteOffset: 64, as: UInt64.self), 1000)
        XCTAssertEqual(bufB.bytes.load(fromByteOffset: 64, as: UInt64.self), 1234)
    }

    func testCompareAndSwapSwapsOnlyWhenTheValueMatches() throws {
        bufB.bytes.storeBytes(of: UInt64(5), toByteOffset: 128, as: UInt64.self)
        try pair.a.postSend([
            SendWorkRequest(id: 10, operation: .compareAndSwap(remoteAddress: mrB.address + 128, rkey: mrB.rkey, compare: 4, swap: 99),
                            scatterGather: [mrA.sge(offset: 128, count: 8)]),
            SendWorkRequest(id: 11, operation: .compareAndSwap(remoteAddress: mrB.address + 128, rkey: mrB.rkey, compare: 5, swap: 77),
                            scatterGather: [mrA.sge(offset: 136, count: 8)]),
        ])
        let wcs = try waitForCompletions(pair.cqA, count: 2)
        XCTAssertEqual(wcs.map(\.status), [.success, .success])
        XCTAssertEqual(bufA.bytes.load(fromByteOffset: 128, as: UInt64.self), 5)
        XCTAssertEqual(bufA.bytes.load(fromByteOffset: 136, as: UInt64.self), 5)
        XCTAssertEqual(bufB.bytes.load(fromByteOffset: 128, as: UInt64.self), 77)
    }

    func testAWriteWithAWrongRKeyCompletesWithARemoteAccessError() throws {
        try pair.a.postSend(SendWorkRequest(id: 12, operation: .rdmaWrite(remoteAddress: mrB.address, rkey: mrB.rkey &+ 0x1000),
                                            scatterGather: [mrA.sge(count: 8)]))
        let wc = try XCTUnwrap(waitForCompletions(pair.cqA).first)
        XCTAssertEqual(wc.status, .remoteAccessError, "\(wc.status)")
    }

    func testARefusedPostNamesTheFirstRefusedWorkRequest() throws {
        // The pair's QPs allow 2 SGEs per send; the second request has 3.
        let good = SendWorkRequest(id: 1, operation: .rdmaWrite(remoteAddress: mrB.address, rkey: mrB.rkey), scatterGather: [mrA.sge(count: 8)])
        let bad = SendWorkRequest(id: 2, operation: .send, scatterGather: [mrA.sge(count: 1), mrA.sge(offset: 1, count: 1), mrA.sge(offset: 2, count: 1)])
        XCTAssertThrowsError(try pair.a.postSend([good, bad])) { error in
            let verbsError = error as? VerbsError
            XCTAssertEqual(verbsError?.operation, "ibv_post_send")
            XCTAssertEqual(verbsError?.failedWorkRequest, 1, "\(error)")
        }
    }

    func testCompletionChannelReportsTheArmedCQ() async throws {
        let channel = try lab.context.createCompletionChannel()
        let cq = try lab.context.createCompletionQueue(entries: 16, channel: channel)
        let caps = QPCapabilities(maxSendWorkRequests: 4, maxReceiveWorkRequests: 4)
        let receiver = try pair.pd.createQueuePair(QueuePairConfiguration(type: .rc, sendCQ: cq, receiveCQ: cq, capabilities: caps))
        let sender = try pair.pd.createQueuePair(QueuePairConfiguration(type: .rc, sendCQ: pair.cqA, receiveCQ: pair.cqA, capabilities: caps))
        for qp in [receiver, sender] { try qp.moveToInit(access: .all) }
        try receiver.moveToReadyToReceive(RemotePath(address: lab.address(toIP: lab.ip1, fromGID: lab.gid2), destinationQPN: sender.number, receivePSN: 1))
        try sender.moveToReadyToReceive(RemotePath(address: lab.address(toIP: lab.ip2, fromGID: lab.gid1), destinationQPN: receiver.number, receivePSN: 1))
        try receiver.moveToReadyToSend(sendPSN: 1)
        try sender.moveToReadyToSend(sendPSN: 1)
        try cq.requestNotification()
        try receiver.postReceive(ReceiveWorkRequest(id: 1, scatterGather: [mrB.sge(count: 16)]))
        try sender.postSend(SendWorkRequest(id: 1, operation: .send, scatterGather: [mrA.sge(count: 16)]))
        let event = try await withThrowingTaskGroup(of: CompletionQueue.ID?.self) { group in
            group.addTask { try await channel.nextEvent() }
            group.addTask { try await Task.sleep(for: .seconds(20)); return nil }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        XCTAssertEqual(event, cq.id, "the channel must report the armed CQ within 20 s")
        XCTAssertEqual(try cq.pollOne()?.status, .success)
    }
}
