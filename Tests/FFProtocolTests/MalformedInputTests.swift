import FFProtocol
import Testing

@Suite struct MalformedInputTests {
    @Test func everyBodyTruncatedAtEveryOffsetIsReportedAsTruncated() throws {
        var checked = 0
        let encoded = try Fixtures.encodedSamples()
        for (message, bytes) in encoded {
            for cut in WireHeader.size..<bytes.count {
                var short = Array(bytes[0..<cut])
                Fixtures.refreshLength(&short)
                let error = wireError { _ = try Frame.decode(short) }
                #expect(error?.reason == .truncated, "\(message.kind) cut at \(cut): \(String(describing: error))")
                #expect(error.map { $0.offset <= cut } == true)
                checked += 1
            }
        }
        #expect(checked == encoded.reduce(0) { $0 + $1.1.count - WireHeader.size })
    }

    @Test func datagramShorterThanItsDeclaredLengthIsRejected() throws {
        for (message, bytes) in try Fixtures.encodedSamples() {
            for cut in 0..<bytes.count {
                let error = wireError { _ = try Frame.decode(Array(bytes[0..<cut])) }
                let ok: Bool
                switch error?.reason {
                case .truncated: ok = cut < WireHeader.size
                case .lengthMismatch: ok = cut >= WireHeader.size
                default: ok = false
                }
                #expect(ok, "\(message.kind) cut at \(cut): \(String(describing: error))")
            }
        }
    }

    @Test func trailingByteAfterTheBodyIsRejected() throws {
        for (message, bytes) in try Fixtures.encodedSamples() {
            var long = bytes + [0]
            Fixtures.refreshLength(&long)
            #expect(wireError { _ = try Frame.decode(long) }?.reason == .trailingBytes(count: 1), "\(message.kind)")
            #expect(wireError { _ = try Frame.decode(bytes + [0]) }?.reason
                == .lengthMismatch(declared: UInt32(bytes.count - WireHeader.size), actual: bytes.count + 1 - WireHeader.size))
        }
    }

    @Test func wrongMagicIsRejected() throws {
        var bytes = try Frame(requestID: 1, message: Message(AllocPDRequest())).encode()
        bytes[3] = UInt8(ascii: "Q")
        let error = wireError { _ = try Frame.decode(bytes) }
        #expect(error?.reason == .badMagic(0x5152_4646))
        #expect(error?.field == "header.magic")
    }

    @Test func unsupportedVersionIsRejectedExceptForHelloAndError() throws {
        for (message, bytes) in try Fixtures.encodedSamples() {
            for version: UInt16 in [0, 2, .max] {
                var patched = bytes
                Fixtures.put16(version, at: 4, in: &patched)
                let error = wireError { _ = try Frame.decode(patched) }
                if message.kind.isVersionIndependent && version != 0 {
                    #expect(error == nil, "\(message.kind) v\(version)")
                } else {
                    #expect(error?.reason == .unsupportedVersion(version), "\(message.kind) v\(version)")
                }
            }
        }
    }

    @Test func aNewerRouterAcceptsTheVersionItSpeaks() throws {
        let bytes = try Frame(version: 2, requestID: 1, message: Message(AllocPDRequest())).encode()
        #expect(wireError { _ = try Frame.decode(bytes) }?.reason == .unsupportedVersion(2))
        #expect(try Frame.decode(bytes, supported: 1...2).version == 2)
    }

    @Test func unknownAndReservedKindsAreRejected() throws {
        let known = Set(MessageKind.allCases.map(\.rawValue))
        let bytes = try Frame(requestID: 1, message: Message(AllocPDRequest())).encode()
        var rejected = 0
        for raw in UInt16.min...UInt16.max where !known.contains(raw) {
            var patched = bytes
            Fixtures.put16(raw, at: 6, in: &patched)
            #expect(wireError { _ = try Frame.decode(patched) }?.reason == .unknownKind(raw))
            rejected += 1
        }
        #expect(rejected == 65536 - MessageKind.allCases.count)
        for raw in MessageKind.reservedForSharedMemory where raw != MapRingRequest.kind.rawValue { #expect(MessageKind(rawValue: raw) == nil) }
    }

    @Test func nonZeroFlagsOrHeaderReservedByteAreRejected() throws {
        let bytes = try Frame(requestID: 1, message: Message(AllocPDRequest())).encode()
        for offset in [8, 9, 11] {
            var patched = bytes
            patched[offset] = 0x80
            #expect(wireError { _ = try Frame.decode(patched) }?.reason == .nonZeroReserved, "offset \(offset)")
        }
    }

    @Test func descriptorCountMustMatchTheKind() throws {
        for (message, bytes) in try Fixtures.encodedSamples() {
            var patched = bytes
            patched[10] = message.descriptorCount == 0 ? 1 : 0
            let counts = message.kind.descriptorCounts
            #expect(wireError { _ = try Frame.decode(patched) }?.reason
                == .wrongDescriptorCount(expected: patched[10] < counts.lowerBound ? counts.lowerBound : counts.upperBound, actual: patched[10]),
                "\(message.kind)")
        }
        // regMRSegments: within the kind's 1...64, but not the body's count; and past 64.
        let bytes = try Frame(requestID: 1, message: Message(Fixtures.segmentsSample)).encode()
        for (count, expected) in [(UInt8(1), UInt8(2)), (3, 2), (65, 64), (255, 64)] {
            var patched = bytes
            patched[10] = count
            #expect(wireError { _ = try Frame.decode(patched) }?.reason == .wrongDescriptorCount(expected: expected, actual: count), "\(count)")
        }
    }

    @Test func segmentListsAreCheckedOnDecode() throws {
        let good = Fixtures.segmentsSample
        func refused(_ change: (inout RegMRSegmentsRequest) -> Void) -> WireError? {
            var request = good
            change(&request)
            // The encoder refuses what the decoder would; patch a valid encoding to reach the decoder too.
            let encodeError = wireError { _ = try Frame(requestID: 1, message: Message(request)).encode() }
            var bytes = try! Frame(requestID: 1, message: Message(good)).encode()
            var w = WireWriter()
            for segment in request.segments {
                w.u8(segment.descriptor); w.reserved(7); w.u64(segment.memfdOffset); w.u64(segment.length)
            }
            var header = WireWriter()
            header.u32(request.pd.rawValue); header.u32(request.access.rawValue); header.u64(request.address); header.u64(request.length)
            header.u8(request.descriptorCount); header.reserved(1); header.u16(UInt16(request.segments.count)); header.reserved(4)
            bytes.replaceSubrange(WireHeader.size..., with: header.bytes + w.bytes)
            bytes[10] = min(request.descriptorCount, 64)  // past 64 the header alone is refused (above)
            Fixtures.refreshLength(&bytes)
            let decodeError = wireError { _ = try Frame.decode(bytes) }
            #expect(encodeError?.field == decodeError?.field, "encode and decode disagree: \(String(describing: encodeError)) vs \(String(describing: decodeError))")
            return decodeError
        }
        #expect(refused { $0.segments[1].length = 0 }?.field == "regMRSegments.segment.length", "an empty segment")
        #expect(refused { $0.segments[0].descriptor = 2 }?.field == "regMRSegments.segment.descriptor", "a descriptor that does not come")
        #expect(refused { $0.segments[0].descriptor = 0; $0.segments[2].descriptor = 0 }?.field == "regMRSegments.descriptorCount", "a descriptor no segment uses")
        #expect(refused { $0.length += 1 }?.field == "regMRSegments.length", "lengths adding up to less")
        #expect(refused { $0.length -= 1 }?.field == "regMRSegments.segment.length", "lengths adding up to more")
        #expect(refused { $0.segments[2].memfdOffset = UInt64.max - 8 }?.field == "regMRSegments.segment.length", "a segment wrapping 2^64")
        #expect(refused { $0.address = UInt64.max - 0x100 }?.field == "regMRSegments.length", "the buffer wrapping 2^64")
        #expect(refused {
            $0.segments = [MemorySegment(descriptor: 0, memfdOffset: 0, length: 1 << 63), MemorySegment(descriptor: 1, memfdOffset: 0, length: 1 << 63),
                           MemorySegment(descriptor: 0, memfdOffset: 0, length: 0x10)]
            $0.address = 0
            $0.length = .max
        }?.field == "regMRSegments.segment.length", "lengths whose sum wraps 2^64")
        #expect(refused { $0.segments = [] }?.field == "regMRSegments.segmentCount", "no segment")
        #expect(refused { $0.segments = Array(repeating: $0.segments[0], count: 65) }?.field == "regMRSegments.segmentCount", "65 segments")
        #expect(refused { $0.descriptorCount = 65 }?.field == "regMRSegments.descriptorCount", "65 descriptors")
    }

    @Test func oversizedDatagramIsRejectedBeforeParsing() {
        let huge = [UInt8](repeating: 0, count: WireLimits.maxMessageSize + 1)
        #expect(wireError { _ = try Frame.decode(huge) }?.reason == .messageTooLarge(size: WireLimits.maxMessageSize + 1))
    }

    @Test func reservedBodyBytesMustBeZero() throws {
        // createQP: 3 reserved bytes after signalAll at body offset 21.
        let createQP = try Frame(requestID: 1, message: Fixtures.samples.first { $0.kind == CreateQPRequest.kind }!).encode()
        var patched = createQP
        patched[WireHeader.size + 21] = 1
        let error = wireError { _ = try Frame.decode(patched) }
        #expect(error == WireError(.nonZeroReserved, field: "createQP.reserved", offset: WireHeader.size + 21))

        // An AH without GRH must carry 24 zero bytes where the GRH would be.
        let ah = Message(CreateAHRequest(pd: PDHandle(rawValue: 1), attributes: AHAttributes(globalRoute: nil, port: 1)))
        var noGRH = try Frame(requestID: 1, message: ah).encode()
        #expect(try Frame.decode(noGRH).message == ah)
        noGRH[WireHeader.size + 4 + 8 + 5] = 9
        #expect(wireError { _ = try Frame.decode(noGRH) }?.field == "ah.grh")
    }

    @Test func booleansOtherThanZeroOrOneAreRejected() throws {
        var bytes = try Frame(requestID: 1, message: Message(ReqNotifyCQRequest(cq: CQHandle(rawValue: 1), solicitedOnly: false))).encode()
        bytes[WireHeader.size + 4] = 2
        #expect(wireError { _ = try Frame.decode(bytes) }?.reason == .valueOutOfRange(2))
    }

    @Test func zeroHandleIsRejectedWhereAnObjectIsRequired() throws {
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(DestroyQPRequest(qp: QPHandle(rawValue: 0)))).encode() }?.reason == .valueOutOfRange(0))
        var bytes = try Frame(requestID: 1, message: Message(DestroyQPRequest(qp: QPHandle(rawValue: 5)))).encode()
        Fixtures.put32(0, at: WireHeader.size, in: &bytes)
        #expect(wireError { _ = try Frame.decode(bytes) } == WireError(.valueOutOfRange(0), field: "qp", offset: WireHeader.size))
    }

    @Test func invalidUTF8OrEmbeddedNulInStringsIsRejected() throws {
        let bytes = try Frame(requestID: 1, message: .error(ErrorReply(errno: 5, reason: "abc"))).encode()
        for bad: [UInt8] in [[0x61, 0x00, 0x63], [0xFF, 0x62, 0x63], [0x61, 0xC3, 0x28]] {
            var patched = bytes
            patched.replaceSubrange((bytes.count - 3)..., with: bad)
            #expect(wireError { _ = try Frame.decode(patched) }?.reason == .invalidString)
        }
        #expect(wireError { _ = try Frame(requestID: 1, message: .error(ErrorReply(errno: 5, reason: "a\u{0}b"))).encode() }?.reason == .invalidString)
    }

    @Test func semanticRangesAreCheckedOnDecode() throws {
        // regMR whose range wraps around 2^64.
        var reg = try Frame(requestID: 1, message: Message(RegMRRequest(pd: PDHandle(rawValue: 1), access: [], address: 0xFFFF_FFFF_FFFF_E000, length: 0x1000, memfdOffset: 0))).encode()
        #expect(try Frame.decode(reg).kind == RegMRRequest.kind)
        reg[WireHeader.size + 17] = 0x20  // length 0x2000 runs past 2^64
        #expect(wireError { _ = try Frame.decode(reg) }?.field == "regMR.length")
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(RegMRRequest(pd: PDHandle(rawValue: 1), access: [], address: 0, length: 0, memfdOffset: 0))).encode() }?.field == "regMR.length")

        // A 25-bit PSN, a 6-bit timeout, a 21-bit flow label.
        var attrs = QPAttributes()
        attrs.sqPSN = 0x100_0000
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(ModifyQPRequest(qp: QPHandle(rawValue: 1), mask: .sqPSN, attributes: attrs))).encode() }?.field == "qpAttr.sqPSN")
        attrs = QPAttributes()
        attrs.timeout = 32
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(ModifyQPRequest(qp: QPHandle(rawValue: 1), mask: .timeout, attributes: attrs))).encode() }?.field == "qpAttr.timeout")
        attrs = QPAttributes()
        attrs.addressVector.globalRoute = GlobalRoute(destinationGID: .zero, flowLabel: 0x10_0000)
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(ModifyQPRequest(qp: QPHandle(rawValue: 1), mask: .addressVector, attributes: attrs))).encode() }?.field == "ah.grh.flowLabel")

        // Errno 0 is not an error; a post reply naming a failed index without an errno is inconsistent.
        #expect(wireError { _ = try Frame(requestID: 1, message: .error(ErrorReply(errno: 0, reason: ""))).encode() }?.field == "error.errno")
        #expect(wireError { _ = try Frame(requestID: 1, message: Message.reply(to: PostSendRequest.self, PostReply(errno: 0, failedIndex: 1))).encode() }?.field == "postReply.failedIndex")

        // Negative verbs limits.
        var device = Fixtures.device
        device.maxCQE = -1
        #expect(wireError { _ = try Frame(requestID: 1, message: Message.reply(to: QueryDeviceRequest.self, device)).encode() }?.field == "device.maxCQE")

        // A hello whose range is empty or starts at 0.
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(Hello(minVersion: 3, maxVersion: 2, clientName: ""))).encode() }?.field == "hello.maxVersion")
        var hello = try Frame(requestID: 1, message: Message(Hello(minVersion: 1, maxVersion: 2, clientName: ""))).encode()
        hello[WireHeader.size] = 0
        #expect(wireError { _ = try Frame.decode(hello) }?.field == "hello.minVersion")
    }

    @Test func inlineFlagAndPayloadMustAgree() throws {
        let inlineWithSGE = SendWorkRequest(wrID: 1, opcode: .send, flags: [.inline], sgList: [Fixtures.sges[0]])
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(PostSendRequest(qp: QPHandle(rawValue: 1), requests: [inlineWithSGE]))).encode() }?.reason == .countTooLarge(count: 1, max: 0))
        let payloadWithoutFlag = SendWorkRequest(wrID: 1, opcode: .send, flags: [], inlineData: [1])
        #expect(wireError { _ = try Frame(requestID: 1, message: Message(PostSendRequest(qp: QPHandle(rawValue: 1), requests: [payloadWithoutFlag]))).encode() }?.reason == .countTooLarge(count: 1, max: 0))
    }

    @Test func malformedBodyStillYieldsTheRequestIDForTheErrorReply() throws {
        var bytes = try Frame(requestID: 0xABC, message: Message(DestroyCQRequest(cq: CQHandle(rawValue: 1)))).encode()
        Fixtures.put32(0, at: WireHeader.size, in: &bytes)
        let error = try #require(wireError { _ = try Frame.decode(bytes) })
        #expect(try WireHeader.decode(bytes).requestID == 0xABC)
        let reply = ErrorReply(malformed: error)
        #expect(reply.errno == Errno.protocolError)
        #expect(reply.reason == "malformed message: cq at offset 24: value 0 out of range")
        #expect(ErrorReply.fit(String(repeating: "é", count: 1000)).utf8.count == WireLimits.maxReasonLength)
    }
}
