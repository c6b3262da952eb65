import FFProtocol
import Testing

private func checkRejectsUnknownRawValues<E: RawRepresentable & CaseIterable>(_: E.Type) -> Int
where E.RawValue: FixedWidthInteger & UnsignedInteger {
    let known = Set(E.allCases.map { UInt64($0.rawValue) })
    var rejected = 0
    let candidates: [UInt64] = Array(0...300) + [UInt64(E.RawValue.max)]
    for raw in candidates where raw <= UInt64(E.RawValue.max) {
        var w = WireWriter()
        w.write(E.RawValue(raw))
        var r = WireReader(w.bytes)
        let error = wireError { _ = try r.enumeration(E.self, "field") }
        if known.contains(raw) {
            #expect(error == nil, "\(E.self) rejected its own value \(raw)")
        } else {
            #expect(error == WireError(.valueOutOfRange(raw), field: "field", offset: 0), "\(E.self) accepted \(raw)")
            rejected += 1
        }
    }
    return rejected
}

@Suite struct EnumTests {
    @Test func everyEnumRejectsUnknownRawValues() {
        #expect(checkRejectsUnknownRawValues(QPType.self) > 0)
        #expect(checkRejectsUnknownRawValues(QPState.self) > 0)
        #expect(checkRejectsUnknownRawValues(MTU.self) > 0)
        #expect(checkRejectsUnknownRawValues(PortState.self) > 0)
        #expect(checkRejectsUnknownRawValues(LinkLayer.self) > 0)
        #expect(checkRejectsUnknownRawValues(AtomicCapability.self) > 0)
        #expect(checkRejectsUnknownRawValues(SendOpcode.self) > 0)
        #expect(checkRejectsUnknownRawValues(WCStatus.self) > 0)
        #expect(checkRejectsUnknownRawValues(WCOpcode.self) > 0)
        #expect(checkRejectsUnknownRawValues(MessageKind.self) > 0)
    }

    @Test func rawValuesEqualLibibverbsConstants() {
        // Values from rdma-core's <infiniband/verbs.h>.
        #expect(QPType.rc.rawValue == 2 && QPType.uc.rawValue == 3 && QPType.ud.rawValue == 4)
        #expect(QPState.readyToSend.rawValue == 3 && QPState.error.rawValue == 6)
        #expect(MTU.mtu256.rawValue == 1 && MTU.mtu4096.rawValue == 5)
        #expect(PortState.active.rawValue == 4)
        #expect(SendOpcode.send.rawValue == 2 && SendOpcode.atomicFetchAndAdd.rawValue == 6)
        #expect(WCOpcode.receive.rawValue == 128 && WCOpcode.receiveRDMAWithImmediate.rawValue == 129)
        #expect(WCStatus.workRequestFlushed.rawValue == 5 && WCStatus.general.rawValue == 21)
        #expect(AccessFlags.remoteAtomic.rawValue == 8 && AccessFlags.relaxedOrdering.rawValue == 1 << 20)
        #expect(SendFlags.inline.rawValue == 8)
        #expect(QPAttributeMask.destQPN.rawValue == 1 << 20 && QPAttributeMask.sqPSN.rawValue == 1 << 16)
    }

    @Test func unknownEnumValuesInsideMessagesAreRejectedWithTheirField() throws {
        let samples = try Fixtures.encodedSamples()
        func bytes(of kind: MessageKind) -> [UInt8] { samples.first { $0.0.kind == kind }!.1 }
        let body = WireHeader.size
        let cases: [(MessageKind, Int, UInt32, String)] = [
            (CreateQPRequest.kind, 16, 1, "createQP.type"),              // IBV_QPT_RC - 1 is not a QP type we know
            (CreateQPRequest.kind, 16, 5, "createQP.type"),              // IBV_QPT_RAW_PACKET (unsupported)
            (ModifyQPRequest.kind, 8, 8, "qpAttr.state"),
            (ModifyQPRequest.kind, 12, 0, "qpAttr.pathMTU"),
            (ModifyQPRequest.kind, 12, 6, "qpAttr.pathMTU"),
            (PostSendRequest.kind, 8 + 8, 7, "sendWR.opcode"),           // IBV_WR_LOCAL_INV
            (PollCQRequest.replyKind, 4 + 8, 24, "wc.status"),
            (PollCQRequest.replyKind, 4 + 12, 5, "wc.opcode"),           // IBV_WC_BIND_MW
            (QueryPortRequest.replyKind, 0, 6, "port.state"),
            (QueryDeviceRequest.replyKind, 2 + Array(Fixtures.device.firmwareVersion.utf8).count + 48, 3, "device.atomicCap"),
        ]
        for (kind, offset, value, field) in cases {
            var patched = bytes(of: kind)
            Fixtures.put32(value, at: body + offset, in: &patched)
            let error = wireError { _ = try Frame.decode(patched) }
            #expect(error == WireError(.valueOutOfRange(UInt64(value)), field: field, offset: body + offset), "\(kind) \(field)=\(value): \(String(describing: error))")
        }
    }

    @Test func unsupportedFlagBitsAreRejectedOnEncodeAndDecode() throws {
        let mwBind = AccessFlags(rawValue: 1 << 4)
        let reg = RegMRRequest(pd: PDHandle(rawValue: 1), access: [.localWrite, mwBind], address: 0x1000, length: 1, memfdOffset: 0)
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(reg)).encode() }?.field == "regMR.access")
        var bytes = try Frame(requestID: 1, message: Message(RegMRRequest(pd: PDHandle(rawValue: 1), access: [.localWrite], address: 0x1000, length: 1, memfdOffset: 0))).encode()
        bytes[WireHeader.size + 4] |= 1 << 4
        #expect(wireError { _ = try Frame.decode(bytes) }?.reason == .valueOutOfRange(0x11))

        let altPath = QPAttributeMask(rawValue: 1 << 14)
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(QueryQPRequest(qp: QPHandle(rawValue: 1), mask: altPath))).encode() }?.field == "queryQP.mask")
        let ipChecksum = SendFlags(rawValue: 1 << 4)
        let wr = SendWorkRequest(wrID: 1, opcode: .send, flags: ipChecksum)
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(PostSendRequest(qp: QPHandle(rawValue: 1), requests: [wr]))).encode() }?.field == "sendWR.flags")
        let unknownCapability = Capabilities(rawValue: 1 << 9)
        let reply = HelloReply(version: 1, capabilities: unknownCapability, sessionID: 1, vip: Fixtures.vip, gid: .zero)
        #expect(wireError { _ = try Frame(requestID: 1, message: Message.reply(to: Hello.self, reply)).encode() }?.field == "helloReply.capabilities")
    }
}

@Suite struct LimitTests {
    private func encodeError(_ m: Message) -> WireError? { wireError { _ = try Frame(requestID: 1, message: m).encode() } }
    private let qp = QPHandle(rawValue: 1)
    private var sge: ScatterGatherEntry { Fixtures.sges[0] }

    @Test func oversizedCountsAreRejectedOnEncode() {
        let wrs = (0...WireLimits.maxWRsPerPost).map { SendWorkRequest(wrID: UInt64($0), opcode: .send) }
        #expect(encodeError(Message(PostSendRequest(qp: qp, requests: wrs)))?.reason == .countTooLarge(count: 33, max: 32))
        #expect(encodeError(Message(PostSendRequest(qp: qp, requests: [])))?.reason == .valueOutOfRange(0))
        let manySGE = SendWorkRequest(wrID: 1, opcode: .send, sgList: Array(repeating: sge, count: WireLimits.maxSGEPerWR + 1))
        #expect(encodeError(Message(PostSendRequest(qp: qp, requests: [manySGE])))?.reason == .countTooLarge(count: 33, max: 32))
        let bigInline = SendWorkRequest(wrID: 1, opcode: .send, flags: [.inline], inlineData: Array(repeating: 7, count: WireLimits.maxInlineData + 1))
        #expect(encodeError(Message(PostSendRequest(qp: qp, requests: [bigInline])))?.reason == .countTooLarge(count: 513, max: 512))
        let recv = ReceiveWorkRequest(wrID: 1, sgList: Array(repeating: sge, count: 33))
        #expect(encodeError(Message(PostRecvRequest(target: qp, requests: [recv])))?.reason == .countTooLarge(count: 33, max: 32))
        #expect(encodeError(Message(PostRecvRequest(target: SRQHandle(rawValue: 1), requests: Array(repeating: ReceiveWorkRequest(wrID: 1, sgList: []), count: 33))))?.reason == .countTooLarge(count: 33, max: 32))
        #expect(encodeError(Message(PollCQRequest(cq: CQHandle(rawValue: 1), maxEntries: 257)))?.reason == .countTooLarge(count: 257, max: 256))
        #expect(encodeError(Message(PollCQRequest(cq: CQHandle(rawValue: 1), maxEntries: 0)))?.reason == .valueOutOfRange(0))
        let wcs = Array(repeating: Fixtures.completions[0], count: 257)
        #expect(encodeError(Message.reply(to: PollCQRequest.self, PollCQReply(completions: wcs)))?.reason == .countTooLarge(count: 257, max: 256))
        #expect(encodeError(Message(Hello(minVersion: 1, maxVersion: 1, clientName: String(repeating: "n", count: 65))))?.reason == .stringTooLong(length: 65, max: 64))
        #expect(encodeError(.error(ErrorReply(errno: 1, reason: String(repeating: "r", count: 513))))?.reason == .stringTooLong(length: 513, max: 512))
        var device = Fixtures.device
        device.firmwareVersion = String(repeating: "f", count: 64)
        #expect(encodeError(Message.reply(to: QueryDeviceRequest.self, device))?.reason == .stringTooLong(length: 64, max: 63))
        let bigCap = QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 33, maxRecvSGE: 1, maxInlineData: 0)
        #expect(encodeError(Message(CreateQPRequest(pd: PDHandle(rawValue: 1), sendCQ: CQHandle(rawValue: 1), recvCQ: CQHandle(rawValue: 1), type: .rc, signalAll: false, capabilities: bigCap)))?.field == "cap.maxSendSGE")
    }

    @Test func largestLegalMessagesFitInOneDatagram() throws {
        let fullSend = SendWorkRequest(wrID: 1, opcode: .send, sgList: Array(repeating: sge, count: WireLimits.maxSGEPerWR))
        let bytes = try Frame(requestID: 1, message: Message(PostSendRequest(qp: qp, requests: Array(repeating: fullSend, count: WireLimits.maxWRsPerPost)))).encode()
        #expect(bytes.count == WireHeader.size + 8 + 32 * (64 + 32 * 16))
        #expect(bytes.count <= WireLimits.maxMessageSize)
        #expect(try Frame.decode(bytes).kind == PostSendRequest.kind)
        let fullInline = SendWorkRequest(wrID: 1, opcode: .send, flags: [.inline], inlineData: Array(repeating: 1, count: WireLimits.maxInlineData))
        let inlineBytes = try Frame(requestID: 1, message: Message(PostSendRequest(qp: qp, requests: Array(repeating: fullInline, count: WireLimits.maxWRsPerPost)))).encode()
        #expect(try Frame.decode(inlineBytes).kind == PostSendRequest.kind)
        let poll = try Frame(requestID: 1, message: Message.reply(to: PollCQRequest.self, PollCQReply(completions: Array(repeating: Fixtures.completions[0], count: WireLimits.maxWCsPerPoll)))).encode()
        #expect(try Frame.decode(poll).kind == PollCQRequest.replyKind)
    }

    @Test func oversizedCountsAreRejectedOnDecodeBeforeReadingElements() throws {
        let body = WireHeader.size
        func check(_ m: Message, countAt offset: Int, width: Int, value: UInt32, expect reason: WireError.Reason) throws {
            var bytes = try Frame(requestID: 1, message: m).encode()
            if width == 2 { Fixtures.put16(UInt16(value), at: body + offset, in: &bytes) } else { Fixtures.put32(value, at: body + offset, in: &bytes) }
            let error = wireError { _ = try Frame.decode(bytes) }
            #expect(error?.reason == reason, "\(m.kind): \(String(describing: error))")
            #expect(error?.offset == body + offset)
        }
        let one = SendWorkRequest(wrID: 1, opcode: .send, sgList: [sge])
        try check(Message(PostSendRequest(qp: qp, requests: [one])), countAt: 4, width: 4, value: 33, expect: .countTooLarge(count: 33, max: 32))
        try check(Message(PostSendRequest(qp: qp, requests: [one])), countAt: 4, width: 4, value: 0xFFFF_FFFF, expect: .countTooLarge(count: 0xFFFF_FFFF, max: 32))
        try check(Message(PostSendRequest(qp: qp, requests: [one])), countAt: 4, width: 4, value: 0, expect: .valueOutOfRange(0))
        try check(Message(PostSendRequest(qp: qp, requests: [one])), countAt: 8 + 60, width: 2, value: 33, expect: .countTooLarge(count: 33, max: 32))
        try check(Message(PostSendRequest(qp: qp, requests: [one])), countAt: 8 + 62, width: 2, value: 1, expect: .countTooLarge(count: 1, max: 0))
        try check(Message(PostRecvRequest(target: qp, requests: [ReceiveWorkRequest(wrID: 1, sgList: [sge])])), countAt: 8 + 8, width: 2, value: 0xFFFF, expect: .countTooLarge(count: 0xFFFF, max: 32))
        try check(Message(PollCQRequest(cq: CQHandle(rawValue: 1), maxEntries: 1)), countAt: 4, width: 4, value: 257, expect: .countTooLarge(count: 257, max: 256))
        try check(Message.reply(to: PollCQRequest.self, PollCQReply(completions: [])), countAt: 0, width: 4, value: 257, expect: .countTooLarge(count: 257, max: 256))
        try check(Message(Hello(minVersion: 1, maxVersion: 1, clientName: "x")), countAt: 12, width: 2, value: 65, expect: .stringTooLong(length: 65, max: 64))
        try check(.error(ErrorReply(errno: 1, reason: "x")), countAt: 4, width: 2, value: 0xFFFF, expect: .stringTooLong(length: 0xFFFF, max: 512))
    }
}
