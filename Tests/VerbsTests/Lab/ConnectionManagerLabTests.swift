import Foundation
import Verbs
import XCTest

/// An rdma_cm server and client in one process connect over rxe0 and exchange one message.
final class ConnectionManagerLabTests: XCTestCase {
    /// Waits (bounded) for the next event on `channel` and checks its kind.
    private func expect(_ kind: ConnectionEvent.Kind, on channel: EventChannel, seconds: Double = 20) async throws -> ConnectionEvent {
        let event = try await withThrowingTaskGroup(of: ConnectionEvent?.self) { group in
            group.addTask { try await channel.nextEvent() }
            group.addTask { try await Task.sleep(for: .seconds(seconds)); return nil }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        let got = try XCTUnwrap(event, "no rdma_cm event within \(seconds) s, expected \(kind)")
        XCTAssertEqual(got.kind, kind, "status \(got.status)")
        return got
    }

    func testClientAndServerConnectAndExchangeAMessage() async throws {
        let lab = try Lab.open()
        let serverChannel = try EventChannel()
        let listener = try serverChannel.createID()
        try listener.bind(ipv4: lab.ip1, port: 0)
        try listener.listen()
        let port = listener.localPort
        XCTAssertNotEqual(port, 0)

        let clientChannel = try EventChannel()
        let client = try clientChannel.createID()
        try client.resolveAddress(source: lab.ip2, destination: lab.ip1, port: port)
        _ = try await expect(.addressResolved, on: clientChannel)
        try client.resolveRoute()
        _ = try await expect(.routeResolved, on: clientChannel)

        let clientContext = try XCTUnwrap(client.context)
        let clientPD = try clientContext.allocateProtectionDomain()
        let clientCQ = try clientContext.createCompletionQueue(entries: 8)
        let clientQP = try client.createQueuePair(pd: clientPD, QueuePairConfiguration(type: .rc, sendCQ: clientCQ, receiveCQ: clientCQ))
        try client.connect(ConnectionParameters(privateData: Array("hi".utf8)))

        let request = try await expect(.connectRequest, on: serverChannel)
        XCTAssertEqual(Array(request.privateData.prefix(2)), Array("hi".utf8))
        let server = try XCTUnwrap(request.newConnection)
        let serverContext = try XCTUnwrap(server.context)
        let serverPD = try serverContext.allocateProtectionDomain()
        let serverCQ = try serverContext.createCompletionQueue(entries: 8)
        let serverQP = try server.createQueuePair(pd: serverPD, QueuePairConfiguration(type: .rc, sendCQ: serverCQ, receiveCQ: serverCQ))
        let serverBuffer = AlignedBuffer(count: 4096)
        let serverMR = try serverPD.registerMemory(serverBuffer, access: .localWrite)
        try serverQP.postReceive(ReceiveWorkRequest(id: 1, scatterGather: [serverMR.sge(count: 64)]))
        try server.accept()

        _ = try await expect(.established, on: clientChannel)
        _ = try await expect(.established, on: serverChannel)

        let clientBuffer = AlignedBuffer(count: 4096)
        let clientMR = try clientPD.registerMemory(clientBuffer, access: .localWrite)
        let message = Array("over rdma_cm".utf8)
        clientBuffer.bytes.copyBytes(from: message)
        try clientQP.postSend(SendWorkRequest(id: 2, operation: .send, scatterGather: [clientMR.sge(count: message.count)]))
        XCTAssertEqual(try waitForCompletions(clientCQ).first?.status, .success)
        let wc = try XCTUnwrap(waitForCompletions(serverCQ).first)
        XCTAssertEqual(wc.status, .success)
        XCTAssertEqual(Array(serverBuffer.bytes[0..<message.count]), message)

        try client.disconnect()
        // The passive side sees the DREQ as DISCONNECTED and answers it with its own rdma_disconnect (the DREP);
        // only then does the active side get DISCONNECTED (rdma_disconnect(3), as rping does).
        _ = try await expect(.disconnected, on: serverChannel)
        try server.disconnect()
        _ = try await expect(.disconnected, on: clientChannel)
    }

    func testConnectingToAPortNobodyListensOnIsRejectedOrUnreachable() async throws {
        let lab = try Lab.open()
        let channel = try EventChannel()
        let client = try channel.createID()
        try client.resolveAddress(source: lab.ip2, destination: lab.ip1, port: 1)
        _ = try await expect(.addressResolved, on: channel)
        try client.resolveRoute()
        _ = try await expect(.routeResolved, on: channel)
        let context = try XCTUnwrap(client.context)
        let pd = try context.allocateProtectionDomain()
        let cq = try context.createCompletionQueue(entries: 4)
        _ = try client.createQueuePair(pd: pd, QueuePairConfiguration(type: .rc, sendCQ: cq, receiveCQ: cq))
        try client.connect()
        let event = try await channel.nextEvent()
        XCTAssertTrue([ConnectionEvent.Kind.rejected, ConnectionEvent.Kind(rawValue: 7)].contains(event.kind),
                      "expected REJECTED or UNREACHABLE, got \(event.kind)")
    }
}
