import FFClient
import FFProtocol
import FFSystem
import Foundation
import XCTest

/// Completion channels and UD datagrams through the routers.
final class RouterEventsLabTests: XCTestCase {
    var lab: TwoNodeLab!

    override func setUpWithError() throws {
        lab = try TwoNodeLab()
    }

    override func tearDown() {
        lab = nil
    }

    /// Reads one record from a completion channel descriptor, waiting at most `seconds`.
    private func readEvent(_ fd: OwnedDescriptor, seconds: Int32 = 20) throws -> CompletionEvent? {
        var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, seconds * 1000) == 1 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = read(fd.rawValue, &bytes, bytes.count)
        XCTAssertEqual(n, CompletionEvent.size, "one record per event")
        return try CompletionEvent.decode(Array(bytes.prefix(max(0, n))))
    }

    func testAnArmedCQsEventReachesTheClientsChannelDescriptor() throws {
        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        let b = try RouterConnection(path: lab.socket("node2", "b"), name: "lab-b")
        let (channel, descriptor) = try b.createCompletionChannel()
        // B's endpoint, with its receive CQ on the channel.
        let memory = try SharedMemory(name: "lab-b", size: 8192)
        let pd = try b.allocatePD()
        let mr = try b.registerMemory(pd: pd, memory: memory, access: [.localWrite, .remoteWrite])
        let cq = try b.createCQ(entries: 16, channel: channel).cq
        let qp = try b.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                               capabilities: QPCapabilities(maxSendWR: 4, maxRecvWR: 4, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)))
        let endpointB = ClientEndpointView(connection: b, qp: qp.qp)
        try a.connect(toVIP: TwoNodeLab.vipB, qpn: qp.qpNum)
        try endpointB.connect(toVIP: TwoNodeLab.vipA, qpn: a.qp.qpNum)

        XCTAssertThrowsError(try b.destroyCompletionChannel(channel)) {
            XCTAssertEqual(($0 as? ClientError)?.errno, Errno.busy, "a channel with a CQ on it is busy")
        }
        try b.requestNotification(cq)
        try b.postReceive(qp.qp, [ReceiveWorkRequest(wrID: 9, sgList: [ScatterGatherEntry(address: memory.address, length: 64, lkey: mr.lkey)])])
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 1, opcode: .send, flags: [.signaled, .inline], inlineData: Array("wake".utf8))])
        let event = try XCTUnwrap(readEvent(descriptor), "no completion event within 20 s")
        XCTAssertEqual(event.cq, cq)
        XCTAssertEqual(try b.pollCQ(cq).first?.wrID, 9)
        XCTAssertEqual(String(decoding: memory.bytes[0..<4], as: UTF8.self), "wake")
    }

    func testUDDatagramsTravelBetweenNodesThroughAnAddressHandleToAVirtualGID() throws {
        func udEndpoint(_ connection: RouterConnection) throws -> (SharedMemory, RegMRReply, PDHandle, CQHandle, CreateQPReply) {
            let memory = try SharedMemory(name: "ud", size: 8192)
            let pd = try connection.allocatePD()
            let mr = try connection.registerMemory(pd: pd, memory: memory, access: [.localWrite])
            let cq = try connection.createCQ(entries: 16).cq
            let qp = try connection.createQP(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .ud, signalAll: true,
                                                            capabilities: QPCapabilities(maxSendWR: 4, maxRecvWR: 4, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)))
            var attributes = QPAttributes()
            attributes.state = .initialized
            attributes.port = 1
            attributes.qkey = 0x1111
            try connection.modifyQP(qp.qp, mask: [.state, .pkeyIndex, .port, .qkey], attributes: attributes)
            attributes = QPAttributes()
            attributes.state = .readyToReceive
            try connection.modifyQP(qp.qp, mask: [.state], attributes: attributes)
            attributes.state = .readyToSend
            try connection.modifyQP(qp.qp, mask: [.state, .sqPSN], attributes: attributes)
            return (memory, mr, pd, cq, qp)
        }
        let a = try RouterConnection(path: lab.socket("node1", "a"), name: "lab-a")
        let b = try RouterConnection(path: lab.socket("node2", "b"), name: "lab-b")
        let (memoryA, mrA, pdA, cqA, qpA) = try udEndpoint(a)
        let (memoryB, mrB, _, cqB, qpB) = try udEndpoint(b)
        try b.postReceive(qpB.qp, [ReceiveWorkRequest(wrID: 5, sgList: [ScatterGatherEntry(address: memoryB.address, length: 40 + 64, lkey: mrB.lkey)])])
        let ah = try a.createAH(pd: pdA, attributes: AHAttributes(globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: TwoNodeLab.vipB)), port: 1))
        let message = Array("datagram".utf8)
        memoryA.bytes.copyBytes(from: message)
        try a.postSend(qpA.qp, [SendWorkRequest(wrID: 1, opcode: .send, addressHandle: ah, remoteQPN: qpB.qpNum, remoteQKey: 0x1111,
                                                sgList: [ScatterGatherEntry(address: memoryA.address, length: UInt32(message.count), lkey: mrA.lkey)])])
        let deadline = Date().addingTimeInterval(20)
        var received: [WorkCompletion] = []
        while received.isEmpty, Date() < deadline {
            received = try b.pollCQ(cqB)
            usleep(1000)
        }
        XCTAssertEqual(try a.pollCQ(cqA).first?.status, .success)
        let wc = try XCTUnwrap(received.first, "no datagram within 20 s")
        XCTAssertEqual(wc.status, .success)
        XCTAssertEqual(wc.sourceQP, qpA.qpNum)
        XCTAssertEqual(Array(memoryB.bytes[40..<(40 + message.count)]), message)
        XCTAssertThrowsError(try a.deallocatePD(pdA)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.busy, "the AH and QP still use the PD") }
    }
}

/// The connect steps of `ClientEndpoint` for a QP made by hand.
struct ClientEndpointView {
    let connection: RouterConnection
    let qp: QPHandle

    func connect(toVIP vip: IPv4Address, qpn: UInt32) throws {
        try ClientEndpoint.connect(connection, qp: qp, toVIP: vip, qpn: qpn)
    }
}
