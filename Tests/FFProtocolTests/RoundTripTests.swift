import FFProtocol
import Testing

@Suite struct RoundTripTests {
    @Test func samplesCoverEveryMessageKind() {
        let covered = Set(Fixtures.samples.map(\.kind))
        #expect(covered == Set(MessageKind.allCases))
        #expect(Fixtures.samples.count == MessageKind.allCases.count)
    }

    @Test func everyMessageKindSurvivesEncodeThenDecode() throws {
        for (message, bytes) in try Fixtures.encodedSamples() {
            let frame = try Frame.decode(bytes)
            #expect(frame.message == message, "\(message.kind)")
            #expect(frame.kind == message.kind)
            #expect(frame.version == ProtocolVersion.current)
            #expect(try frame.encode() == bytes, "re-encoding \(message.kind) is not byte-identical")
        }
    }

    @Test func requestIDIsCarriedVerbatimForMatchingReplies() throws {
        let bytes = try Frame(requestID: .max, message: Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: 2))).encode()
        #expect(try Frame.decode(bytes).requestID == .max)
        #expect(try WireHeader.decode(bytes).requestID == .max)
    }

    @Test func headerIsLittleEndianWithDocumentedOffsets() throws {
        let bytes = try Frame(requestID: 0x0102_0304_0506_0708, message: Message(DeregMRRequest(mr: MRHandle(rawValue: 0xA1B2_C3D4)))).encode()
        #expect(bytes.count == 28)
        #expect(Array(bytes[0..<4]) == Array("FFRP".utf8))
        #expect(Array(bytes[4..<6]) == [1, 0])           // version
        #expect(Array(bytes[6..<8]) == [0x13, 0x00])     // kind deregMR
        #expect(Array(bytes[8..<12]) == [0, 0, 0, 0])    // flags, fdCount, reserved
        #expect(Array(bytes[12..<16]) == [4, 0, 0, 0])   // body length
        #expect(Array(bytes[16..<24]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[24..<28]) == [0xD4, 0xC3, 0xB2, 0xA1])
    }

    @Test func fixedSizeBodiesMatchTheDocumentedSizes() throws {
        let expected: [MessageKind: Int] = [
            Hello.replyKind: 48, QueryDeviceRequest.replyKind: 116 + 2 + Array(Fixtures.device.firmwareVersion.utf8).count,
            QueryPortRequest.kind: 4, QueryPortRequest.replyKind: 56, QueryGIDRequest.kind: 8, QueryGIDRequest.replyKind: 16, RegMRRequest.kind: 32, RegMRRequest.replyKind: 12,
            RegMRSegmentsRequest.kind: 32 + 24 * 3, RegMRSegmentsRequest.replyKind: 12,
            CreateCQRequest.kind: 12, CreateCQRequest.replyKind: 8, ReqNotifyCQRequest.kind: 8, CreateQPRequest.kind: 44, CreateQPRequest.replyKind: 28, ModifyQPRequest.kind: 80,
            QueryQPRequest.kind: 8, QueryQPRequest.replyKind: 96, CreateSRQRequest.kind: 16, CreateSRQRequest.replyKind: 12, ModifySRQRequest.kind: 16, CreateAHRequest.kind: 36,
            PostSendRequest.replyKind: 8, PollCQRequest.kind: 8, AllocPDRequest.kind: 0, DeallocPDRequest.kind: 4, DestroyQPRequest.replyKind: 0,
            PollCQRequest.replyKind: 4 + 48 * Fixtures.completions.count,
            PostRecvRequest<QPHandle>.kind: 8 + 2 * 16 + 2 * 16,
        ]
        for (message, bytes) in try Fixtures.encodedSamples() {
            guard let size = expected[message.kind] else { continue }
            #expect(bytes.count - WireHeader.size == size, "\(message.kind)")
        }
    }

    @Test func onlyMemoryRegistrationsTheChannelRepliesAndMapRingReplyCarryDescriptors() throws {
        for kind in MessageKind.allCases {
            let expected: ClosedRange<UInt8> = switch kind {
            case RegMRRequest.kind, CreateCompChannelRequest.replyKind, CMCreateChannelRequest.replyKind, MapRingRequest.replyKind: 1...1
            case RegMRSegmentsRequest.kind: 1...64
            default: 0...0
            }
            #expect(kind.descriptorCounts == expected, "\(kind)")
        }
        for (message, bytes) in try Fixtures.encodedSamples() {
            #expect(bytes[10] == message.descriptorCount)
        }
        #expect(Message(Fixtures.segmentsSample).descriptorCount == 2)
    }

    @Test func everyRequestHasAReplyKindAndRepliesHaveNone() {
        for kind in MessageKind.allCases where kind.isRequest {
            #expect(kind.replyKind != nil, "\(kind) has no reply kind")
        }
        for kind in MessageKind.allCases where !kind.isRequest {
            #expect(kind.replyKind == nil)
        }
    }

    @Test func completionEventRecordRoundTripsAndRejectsGarbage() throws {
        let bytes = try CompletionEvent(cq: CQHandle(rawValue: 0x0102_0304)).encode()
        #expect(bytes == [4, 3, 2, 1, 0, 0, 0, 0])
        #expect(try CompletionEvent.decode(bytes) == CompletionEvent(cq: CQHandle(rawValue: 0x0102_0304)))
        #expect(wireError { _ = try CompletionEvent.decode(Array(bytes.prefix(7))) }?.reason == .truncated)
        #expect(wireError { _ = try CompletionEvent.decode(bytes + [0]) }?.reason == .trailingBytes(count: 1))
        #expect(wireError { _ = try CompletionEvent.decode([0, 0, 0, 0, 0, 0, 0, 0]) }?.reason == .valueOutOfRange(0))
        #expect(wireError { _ = try CompletionEvent.decode([1, 0, 0, 0, 0, 0, 1, 0]) }?.reason == .nonZeroReserved)
    }

    @Test func gidMadeFromVipIsIPv4MappedAndPrintsLikeIPv6() {
        let vip = IPv4Address("10.244.1.17")
        #expect(vip == Fixtures.vip)
        let gid = GID(ipv4Mapped: Fixtures.vip)
        #expect(gid.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 244, 1, 17])
        #expect(gid.ipv4Mapped == Fixtures.vip)
        #expect(gid.description == "::ffff:10.244.1.17")
        #expect(GID.zero.ipv4Mapped == nil)
        #expect(GID(bytes: [0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [1])!.description == "fe80:0:0:0:0:0:0:1")
        #expect(GID(bytes: [1, 2, 3]) == nil)
        for bad in ["10.0.0", "10.0.0.256", "a.b.c.d", "1..2.3", "10.0.0.1.2", "+1.0.0.1"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }
}
