import Foundation
import Verbs
import XCTest

/// Registration at an iova, UD datagrams through an address handle, and a shared receive queue.
final class AddressingLabTests: XCTestCase {
    func testRemoteWriteAtAnIOVALandsInTheRegisteredBuffer() throws {
        let lab = try Lab.open()
        let pair = try ConnectedPair(lab: lab)
        let local = AlignedBuffer(count: 4096)
        let target = AlignedBuffer(count: 8192)
        let mrLocal = try pair.pd.registerMemory(local, access: .all)
        // Register bytes 256..<4352 of `target` so that peers see them at an unrelated address that keeps
        // the page offset (256), as an application's own virtual address would be exposed by the router.
        let slice = UnsafeMutableRawBufferPointer(rebasing: target.bytes[256..<4352])
        let iova: UInt64 = 0x7f12_3456_0000 + 256
        let mrTarget = try pair.pd.registerMemory(slice, iova: iova, access: .all, keepAlive: target)
        XCTAssertEqual(mrTarget.address, iova)

        let message = Array("at the iova".utf8)
        local.bytes.copyBytes(from: message)
        try pair.a.postSend(SendWorkRequest(id: 1, operation: .rdmaWrite(remoteAddress: iova + 16, rkey: mrTarget.rkey),
                                            scatterGather: [mrLocal.sge(count: message.count)]))
        let wc = try XCTUnwrap(waitForCompletions(pair.cqA).first)
        XCTAssertEqual(wc.status, .success, "\(wc.status)")
        XCTAssertEqual(Array(target.bytes[(256 + 16)..<(256 + 16 + message.count)]), message)
        XCTAssertTrue(target.bytes[0..<(256 + 16)].allSatisfy { $0 == 0 }, "nothing before the target offset changed")

        // The local address is not what peers use any more: a write there is outside the region.
        try pair.a.postSend(SendWorkRequest(id: 2, operation: .rdmaWrite(remoteAddress: UInt64(UInt(bitPattern: slice.baseAddress)), rkey: mrTarget.rkey),
                                            scatterGather: [mrLocal.sge(count: 8)]))
        XCTAssertEqual(try waitForCompletions(pair.cqA).first?.status, .remoteAccessError)
    }

    func testUDDatagramArrivesThroughAnAddressHandleAfterTheGRH() throws {
        let lab = try Lab.open()
        let pd = try lab.context.allocateProtectionDomain()
        let cqA = try lab.context.createCompletionQueue(entries: 16)
        let cqB = try lab.context.createCompletionQueue(entries: 16)
        let a = try pd.createQueuePair(QueuePairConfiguration(type: .ud, sendCQ: cqA, receiveCQ: cqA))
        let b = try pd.createQueuePair(QueuePairConfiguration(type: .ud, sendCQ: cqB, receiveCQ: cqB))
        let qkey: UInt32 = 0x1111_1111
        for qp in [a, b] {
            try qp.moveToInit(qkey: qkey)
            try qp.moveToReadyToReceive(nil)
            try qp.moveToReadyToSend(sendPSN: 0)
        }
        let sendBuffer = AlignedBuffer(count: 4096)
        let receiveBuffer = AlignedBuffer(count: 4096)
        let mrSend = try pd.registerMemory(sendBuffer, access: .localWrite)
        let mrReceive = try pd.registerMemory(receiveBuffer, access: .localWrite)
        try b.postReceive(ReceiveWorkRequest(id: 5, scatterGather: [mrReceive.sge(count: 40 + 256)]))

        let ah = try pd.createAddressHandle(lab.address(toIP: lab.ip2, fromGID: lab.gid1))
        let message = Array("a datagram".utf8)
        sendBuffer.bytes.copyBytes(from: message)
        try a.postSend(SendWorkRequest(id: 1, operation: .send, scatterGather: [mrSend.sge(count: message.count)],
                                       destination: DatagramDestination(addressHandle: ah, remoteQPN: b.number, remoteQKey: qkey)))
        XCTAssertEqual(try waitForCompletions(cqA).first?.status, .success)
        let wc = try XCTUnwrap(waitForCompletions(cqB).first)
        XCTAssertEqual(wc.status, .success, "\(wc.status)")
        XCTAssertEqual(wc.byteLength, UInt32(40 + message.count), "UD receives include the 40-byte GRH")
        XCTAssertTrue(wc.hasGlobalRouteHeader)
        XCTAssertEqual(wc.sourceQP, a.number)
        XCTAssertEqual(Array(receiveBuffer.bytes[40..<(40 + message.count)]), message)
    }

    func testSendToAQPWithASharedReceiveQueueConsumesTheSRQsReceive() throws {
        let lab = try Lab.open()
        let pd = try lab.context.allocateProtectionDomain()
        let srq = try pd.createSharedReceiveQueue(maxWorkRequests: 16)
        let pair = try ConnectedPair(lab: lab, srqForB: srq, pd: pd)
        let buffer = AlignedBuffer(count: 4096)
        let mr = try pd.registerMemory(buffer, access: .localWrite)
        try srq.postReceive([ReceiveWorkRequest(id: 77, scatterGather: [mr.sge(offset: 2048, count: 64)])])
        buffer.bytes.copyBytes(from: Array("via srq".utf8))
        try pair.a.postSend(SendWorkRequest(id: 1, operation: .send, scatterGather: [mr.sge(count: 7)]))
        XCTAssertEqual(try waitForCompletions(pair.cqA).first?.status, .success)
        let wc = try XCTUnwrap(waitForCompletions(pair.cqB).first)
        XCTAssertEqual(wc.workRequestID, 77)
        XCTAssertEqual(String(decoding: buffer.bytes[2048..<2055], as: UTF8.self), "via srq")
    }

    func testPostingReceivesOnAQPThatUsesAnSRQIsRefused() throws {
        let lab = try Lab.open()
        let pd = try lab.context.allocateProtectionDomain()
        let srq = try pd.createSharedReceiveQueue(maxWorkRequests: 4)
        let pair = try ConnectedPair(lab: lab, srqForB: srq, pd: pd)
        let buffer = AlignedBuffer(count: 4096)
        let mr = try pd.registerMemory(buffer, access: .localWrite)
        XCTAssertThrowsError(try pair.b.postReceive(ReceiveWorkRequest(id: 1, scatterGather: [mr.sge(count: 8)]))) { error in
            XCTAssertEqual((error as? VerbsError)?.operation, "ibv_post_recv")
        }
    }

    func testGIDTableHasRoCEv2EntriesForBothLabAddresses() throws {
        let lab = try Lab.open()
        let table = try lab.context.gidTable()
        XCTAssertEqual(table.first { $0.index == lab.gid1 }?.gid.ipv4Address, lab.ip1)
        XCTAssertEqual(table.first { $0.index == lab.gid2 }?.gid.ipv4Address, lab.ip2)
        XCTAssertEqual(try lab.context.queryGID(index: lab.gid1), GID(ipv4: lab.ip1))
        XCTAssertNil(try lab.context.gidIndex(ipv4: "192.0.2.1"), "an address the port does not have has no GID")
        let port = try lab.context.queryPort()
        XCTAssertEqual(port.state, .active)
        XCTAssertEqual(port.linkLayer, .ethernet)
    }
}
