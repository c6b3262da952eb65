import FFClient
import FFProtocol
import FFSystem
import FreeFlowTestSupport
import Foundation
import XCTest

/// UC queue pairs and shared receive queues through the routers.
final class RouterQueueKindsLabTests: XCTestCase {
    func testUCWriteAndASendIntoAnSRQCrossNodes() throws {
        let lab = try TwoNodeLab()
        let a = try RouterConnection(path: lab.socket("node1", "a"), name: "lab-a")
        let b = try RouterConnection(path: lab.socket("node2", "b"), name: "lab-b")
        let caps = QPCapabilities(maxSendWR: 4, maxRecvWR: 4, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)

        let memoryA = try SharedMemory(name: "a", size: 8192), memoryB = try SharedMemory(name: "b", size: 8192)
        let pdA = try a.allocatePD(), pdB = try b.allocatePD()
        let mrA = try a.registerMemory(pd: pdA, memory: memoryA, access: [.localWrite])
        let mrB = try b.registerMemory(pd: pdB, memory: memoryB, access: [.localWrite, .remoteWrite])
        let cqA = try a.createCQ(entries: 16).cq, cqB = try b.createCQ(entries: 16).cq
        let srq = try b.createSRQ(CreateSRQRequest(pd: pdB, maxWR: 8, maxSGE: 1))
        let qpA = try a.createQP(CreateQPRequest(pd: pdA, sendCQ: cqA, recvCQ: cqA, type: .uc, signalAll: true, capabilities: caps))
        let qpB = try b.createQP(CreateQPRequest(pd: pdB, sendCQ: cqB, recvCQ: cqB, srq: srq.srq, type: .uc, signalAll: true, capabilities: caps))
        XCTAssertThrowsError(try b.destroySRQ(srq.srq)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.busy) }

        // UC: INIT with access flags, RTR with path (no READ depth or RNR timer), RTS with the SQ PSN only.
        for (connection, qp, vip, qpn) in [(a, qpA.qp, TwoNodeLab.vipB, qpB.qpNum), (b, qpB.qp, TwoNodeLab.vipA, qpA.qpNum)] {
            var attributes = QPAttributes()
            attributes.state = .initialized
            attributes.port = 1
            attributes.accessFlags = [.localWrite, .remoteWrite]
            try connection.modifyQP(qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: attributes)
            attributes = QPAttributes()
            attributes.state = .readyToReceive
            attributes.pathMTU = .mtu1024
            attributes.destQPN = qpn
            attributes.rqPSN = 7
            attributes.addressVector = AHAttributes(globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: vip)), port: 1)
            try connection.modifyQP(qp, mask: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN], attributes: attributes)
            attributes = QPAttributes()
            attributes.state = .readyToSend
            attributes.sqPSN = 7
            try connection.modifyQP(qp, mask: [.state, .sqPSN], attributes: attributes)
        }
        XCTAssertEqual(try a.queryQP(qpA.qp).attributes.state, .readyToSend)

        func poll(_ c: RouterConnection, _ cq: CQHandle) throws -> WorkCompletion? {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if let wc = try c.pollCQ(cq).first { return wc }
                usleep(1000)
            }
            return nil
        }

        memoryA.bytes.copyBytes(from: Array("uc write".utf8))
        try a.postSend(qpA.qp, [SendWorkRequest(wrID: 1, opcode: .rdmaWrite, remoteAddress: memoryB.address + 1024, rkey: mrB.rkey,
                                                sgList: [ScatterGatherEntry(address: memoryA.address, length: 8, lkey: mrA.lkey)])])
        XCTAssertEqual(try poll(a, cqA)?.status, .success)
        try eventuallyBlocking("the UC write's bytes in B's memory", timeout: .seconds(20), every: .milliseconds(1)) {
            String(decoding: memoryB.bytes[1024..<1032], as: UTF8.self) == "uc write"
        }

        try b.postSRQReceive(srq.srq, [ReceiveWorkRequest(wrID: 33, sgList: [ScatterGatherEntry(address: memoryB.address, length: 64, lkey: mrB.lkey)])])
        memoryA.bytes.copyBytes(from: Array("to the srq".utf8))
        try a.postSend(qpA.qp, [SendWorkRequest(wrID: 2, opcode: .send, sgList: [ScatterGatherEntry(address: memoryA.address, length: 10, lkey: mrA.lkey)])])
        XCTAssertEqual(try poll(a, cqA)?.status, .success)
        let received = try XCTUnwrap(poll(b, cqB))
        XCTAssertEqual(received.wrID, 33)
        XCTAssertEqual(String(decoding: memoryB.bytes[0..<10], as: UTF8.self), "to the srq")

        try b.destroyQP(qpB.qp)
        try b.destroySRQ(srq.srq)
    }
}
