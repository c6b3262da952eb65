import FFProtocol
import Testing

@Suite struct ConnectionManagerTests {
    private static let id = CMIDHandle(rawValue: 4)
    private static let vip = IPv4Address(10, 9, 0, 2)

    static let requests: [CMRequest] = [
        .createID(channel: CMChannelHandle(rawValue: 1), portSpace: .tcp),
        .destroyID(id),
        .bind(id, address: IPv4Address(0, 0, 0, 0), port: 7471),
        .resolveAddress(id, source: IPv4Address(0, 0, 0, 0), destination: vip, port: 7471, timeoutMilliseconds: 2000),
        .resolveRoute(id, timeoutMilliseconds: 2000),
        .listen(id, backlog: 8),
        .connect(CMConnectionParameters(id: id, qpNum: 0xFF_FFFF, privateData: Array(repeating: 7, count: CMPrivateData.connectRC))),
        .accept(CMConnectionParameters(id: id, qpNum: 12, responderResources: 4, initiatorDepth: 4, flowControl: true, srq: true,
                                       privateData: Array(repeating: 1, count: CMPrivateData.maxLength))),
        .reject(CMConnectionParameters(id: id, privateData: [1, 2, 3])),
        .disconnect(id),
        .attachQP(id, qp: QPHandle(rawValue: 3)),
        .establish(id),
        .migrate(id, channel: CMChannelHandle(rawValue: 2)),
        .destroyChannel(CMChannelHandle(rawValue: 2)),
        .resolveSender(gid: GID(ipv4Mapped: IPv4Address(10, 0, 2, 16)), sourceQPN: 0xFF_FFFF, receiverQPN: 17),
    ]

    @Test func everyOperationSurvivesEncodeThenDecode() throws {
        for request in Self.requests {
            let bytes = try Frame(requestID: 1, message: Message(request)).encode()
            #expect(try Frame.decode(bytes).message == Message(request), "\(request)")
        }
        #expect(Set(Self.requests.map(\.operation)) == Set(1...15))
    }

    @Test func unknownOperationAndOversizedPrivateDataAreRefused() throws {
        var bytes = try Frame(requestID: 1, message: Message(CMRequest.disconnect(Self.id))).encode()
        bytes[WireHeader.size] = 99
        #expect(throws: WireError.self) { try Frame.decode(bytes) }
        let tooLong = CMConnectionParameters(id: Self.id, privateData: Array(repeating: 0, count: CMPrivateData.maxLength + 1))
        #expect(throws: WireError.self) { try Frame(requestID: 1, message: Message(CMRequest.connect(tooLong))).encode() }
    }

    @Test func eventRoundTripsAndRefusesAStatusBeyondAnErrno() throws {
        var event = CMEvent(id: Self.id, type: .connectRequest, listenID: CMIDHandle(rawValue: 1), localAddress: Self.vip, localPort: 7471,
                            remoteAddress: IPv4Address(10, 9, 0, 1), remotePort: 40000)
        event.remoteQPN = 0x12
        event.remotePSN = 0xABCDEF
        event.pathMTU = 3
        event.privateData = [9, 8, 7]
        let bytes = try event.encode()
        #expect(bytes.count == 52 + 3 + 2)
        #expect(try CMEvent.decode(bytes) == event)
        var failed = CMEvent(id: Self.id, type: .addressError, status: -113, reason: "unknown vip 10.9.9.9")
        #expect(try CMEvent.decode(try failed.encode()) == failed)
        failed.status = 4096
        #expect(throws: WireError.self) { try failed.encode() }
    }

    @Test func privateDataBudgetLeavesApplicationsWhatTheDocumentSays() {
        #expect(CMPrivateData.connectRC == 44)
        #expect(CMPrivateData.connectUD == 164)
    }
}
