import FFProtocol
import Testing

@Suite struct NegotiationTests {
    @Test func highestCommonVersionIsChosen() {
        #expect(ProtocolVersion.negotiate(client: 1...5, router: 2...4) == .success(4))
        #expect(ProtocolVersion.negotiate(client: 3...3, router: 1...7) == .success(3))
        #expect(ProtocolVersion.negotiate(client: 1...2, router: 2...9) == .success(2))
        #expect(ProtocolVersion.negotiate(client: 1...1) == .success(1))
    }

    @Test func disjointRangesAreRefusedNamingBothRanges() throws {
        let result = ProtocolVersion.negotiate(client: 2...3, router: 1...1)
        guard case .failure(let mismatch) = result else {
            Issue.record("expected a mismatch, got \(result)")
            return
        }
        #expect(mismatch.description == "protocol version mismatch: client speaks 2..3, router speaks 1..1")
        #expect(mismatch.errorReply.errno == Errno.protocolNotSupported)
        #expect(mismatch.errorReply.reason.contains("2..3") && mismatch.errorReply.reason.contains("1..1"))
    }

    @Test func routerAnswersHelloWithIdentityDerivedFromItsOwnVip() throws {
        let hello = Hello(minVersion: 1, maxVersion: 4, capabilities: [.sharedMemoryRings, Capabilities(rawValue: 1 << 33)], clientName: "app")
        let answer = ProtocolVersion.answer(hello, sessionID: 42, vip: Fixtures.vip)
        #expect(answer == Message.reply(to: Hello.self, HelloReply(version: 1, capabilities: [], sessionID: 42, vip: Fixtures.vip, gid: GID(ipv4Mapped: Fixtures.vip))))
        let granting = ProtocolVersion.answer(hello, routerCapabilities: [.sharedMemoryRings], sessionID: 42, vip: Fixtures.vip)
        guard let reply = granting.reply(to: Hello.self) else {
            Issue.record("expected a hello reply, got \(granting)")
            return
        }
        #expect(reply.capabilities == [.sharedMemoryRings])
        #expect(try Frame.decode(try Frame(requestID: 1, message: granting).encode()).message == granting)
    }

    @Test func newerClientIsRefusedAndCanReadTheRefusal() throws {
        // A future client speaking 2..3 sends its hello in version 3; a version-1 router reads it and refuses.
        let helloBytes = try Frame(version: 3, requestID: 9, message: Message(Hello(minVersion: 2, maxVersion: 3, clientName: "future"))).encode()
        let received = try Frame.decode(helloBytes)
        guard let hello = received.message.request(Hello.self) else {
            Issue.record("expected a hello")
            return
        }
        let answer = ProtocolVersion.answer(hello, sessionID: 1, vip: Fixtures.vip)
        #expect(answer == .error(ErrorReply(errno: Errno.protocolNotSupported, reason: "protocol version mismatch: client speaks 2..3, router speaks 1..1")))
        // The refusal is written in version 1 and a version-3 decoder still reads it.
        let refusal = try Frame(version: 1, requestID: received.requestID, message: answer).encode()
        let seenByClient = try Frame.decode(refusal, supported: 2...3)
        #expect(seenByClient.requestID == 9)
        #expect(seenByClient.message == answer)
    }
}
