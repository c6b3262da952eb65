import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Glibc
import Logging
import XCTest

/// The client's view of one object's rings, mapped from the memfd map_ring returned (what libffclient does).
final class ClientRings {
    let memory: SharedMemory
    let rings: [RingDescriptor]

    init(_ driver: SessionDriver, _ target: RingTarget, _ handle: UInt32, file: StaticString = #filePath, line: UInt = #line) throws {
        let reply = driver.raw(Message(MapRingRequest(target: target, handle: handle)))
        guard let r = reply.message.reply(to: MapRingRequest.self), let fd = reply.descriptors.first else {
            throw HarnessFailure("map_ring \(target) \(handle): \(reply.message)")
        }
        memory = try SharedMemory(mapping: OwnedDescriptor(taking: fd), offset: 0, length: Int(r.size))
        rings = try XCTUnwrap(RingMapLayout.readControl(memory.bytes.baseAddress!, size: memory.bytes.count), file: file, line: line)
    }

    func ring(_ i: Int) -> RingMemory { RingMemory(base: memory.bytes.baseAddress!, rings[i]) }
    var sleeping: Bool { memory.bytes.load(fromByteOffset: RingLayout.sleepingOffset, as: UInt32.self) != 0 }
}

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A connected pair whose QPs and CQs are served by the data path, with their rings mapped as a client would.
final class RingPair {
    let backend = FakeBackend()
    let dataPath: DataPath
    let pair: PodPair
    let cqA: ClientRings, cqB: ClientRings, qpA: ClientRings, qpB: ClientRings
    var sendA: RingProducer, receiveB: RingProducer
    var completionsA: RingConsumer, completionsB: RingConsumer
    let doorbellA: Int32, doorbellB: Int32

    init(channelOnB: Bool = false, tuning: DataPathTuning = DataPathTuning()) throws {
        var logger = Logger(label: "test.datapath")
        logger.logLevel = .error
        dataPath = DataPath(backend: backend, tuning: tuning, logger: logger)
        pair = try PodPair(backend: backend, channelOnB: channelOnB, dataPath: dataPath)
        cqA = try ClientRings(pair.a, .cq, pair.cqA.rawValue)
        cqB = try ClientRings(pair.b, .cq, pair.cqB.rawValue)
        qpA = try ClientRings(pair.a, .qp, pair.qpA.rawValue)
        qpB = try ClientRings(pair.b, .qp, pair.qpB.rawValue)
        sendA = RingProducer(qpA.ring(0))
        receiveB = RingProducer(qpB.ring(1))
        completionsA = RingConsumer(cqA.ring(0))
        completionsB = RingConsumer(cqB.ring(0))
        doorbellA = try Self.doorbell(pair.a)
        doorbellB = try Self.doorbell(pair.b)
    }

    static func doorbell(_ driver: SessionDriver) throws -> Int32 {
        let reply = driver.raw(Message(MapRingRequest(target: .doorbell, handle: 0)))
        guard reply.message.reply(to: MapRingRequest.self) != nil, let fd = reply.descriptors.first else { throw HarnessFailure("doorbell: \(reply.message)") }
        return fd
    }

    /// Publishes what was written and rings the doorbell if the router sleeps, as the shim does.
    static func publish(_ producer: inout RingProducer, _ rings: ClientRings, doorbell: Int32) {
        producer.publish()
        if RingSleepFlag(base: rings.memory.bytes.baseAddress!).needsDoorbell() {
            var one: UInt64 = 1
            _ = write(doorbell, &one, 8)
        }
    }

    func postReceiveB(wrID: UInt64, offset: Int, length: UInt32) {
        let slot = receiveB.reserve()!
        RingSlots.writeReceive(slot, wrID: wrID, sgeCount: 1)
        RingSlots.writeSGE(slot, fixed: 16, index: 0, address: pair.memB.address + UInt64(offset), length: length, lkey: pair.mrB.lkey)
        receiveB.advance()
        Self.publish(&receiveB, qpB, doorbell: doorbellB)
    }

    func postSendA(wrID: UInt64, offset: Int, length: UInt32, opcode: SendOpcode = .send, flags: SendFlags = .signaled) {
        let slot = sendA.reserve()!
        RingSlots.writeSend(slot, wrID: wrID, opcode: opcode.rawValue, flags: flags.rawValue, immData: 0, rkey: 0, remoteAddress: 0,
                            compareAdd: 0, swap: 0, addressHandle: 0, remoteQPN: 0, remoteQKey: 0, sgeCount: 1, inlineLength: 0)
        RingSlots.writeSGE(slot, fixed: 64, index: 0, address: pair.memA.address + UInt64(offset), length: length, lkey: pair.mrA.lkey)
        sendA.advance()
        Self.publish(&sendA, qpA, doorbell: doorbellA)
    }

    /// Waits for `count` completions in `consumer`'s ring and takes them.
    static func take(_ count: Int, from consumer: inout RingConsumer, seconds: Double = 20,
                     file: StaticString = #filePath, line: UInt = #line) -> [RingSlots.RawCompletion] {
        var got: [RingSlots.RawCompletion] = []
        do {
            try eventuallyBlocking("\(count) completions", timeout: .seconds(seconds), file: file, line: line) {
                let n = consumer.available()
                for i in 0..<n { got.append(RingSlots.readCompletion(consumer.slot(i))) }
                consumer.release(n)
                return got.count >= count
            }
        } catch {
            XCTFail("only \(got.count) of \(count) completions arrived in \(seconds) s", file: file, line: line)
        }
        return got
    }

    func close() {
        pair.a.session.close()
        pair.b.session.close()
        close(doorbellA)
        close(doorbellB)
    }

    private func close(_ fd: Int32) { _ = Glibc.close(fd) }
}

/// The router's side of the shared-memory fast path on the in-memory backend: rings drained into the QPs, completions
/// mirrored into the client's rings, hostile slots and indices, the hand-off on destroy and session end, and sleep.
final class DataPathTests: XCTestCase {
    func testSendAndReceiveThroughRingsCompleteInBothClientsRings() throws {
        let p = try RingPair()
        defer { p.close() }
        p.pair.memA.bytes.copyBytes(from: Array("through the rings".utf8))
        p.postReceiveB(wrID: 70, offset: 1024, length: 64)
        p.postSendA(wrID: 71, offset: 0, length: 17)
        let a = RingPair.take(1, from: &p.completionsA)
        let b = RingPair.take(1, from: &p.completionsB)
        XCTAssertEqual(a.first?.wrID, 71)
        XCTAssertEqual(a.first?.status, WCStatus.success.rawValue)
        XCTAssertEqual(b.first?.wrID, 70)
        XCTAssertEqual(b.first?.byteLength, 17)
        XCTAssertEqual(b.first?.opcode, WCOpcode.receive.rawValue)
        XCTAssertEqual(Array(p.pair.memB.bytes[1024..<1041]), Array("through the rings".utf8))
        XCTAssertGreaterThanOrEqual(p.pair.a.session.fast?.shared.posts.load(ordering: .relaxed) ?? 0, 1)
    }

    func testManyPostsWrapTheRingsAndAllComplete() throws {
        let p = try RingPair()
        defer { p.close() }
        // 32-deep QPs: 300 round trips wrap every ring many times.
        for i in 0..<300 {
            p.postReceiveB(wrID: UInt64(i), offset: 2048, length: 8)
            p.postSendA(wrID: UInt64(i), offset: 0, length: 8)
            let a = RingPair.take(1, from: &p.completionsA), b = RingPair.take(1, from: &p.completionsB)
            XCTAssertEqual(a.first?.wrID, UInt64(i))
            XCTAssertEqual(b.first?.wrID, UInt64(i))
            guard a.count == 1, b.count == 1 else { return }
        }
    }

    func testHostileSlotCompletesInErrorForThatSessionOnly() throws {
        let p = try RingPair()
        defer { p.close() }
        // An opcode verbs does not have, then an SGE count beyond the slot: each is one error completion in A's ring.
        for (id, opcode, sges) in [(UInt64(900), UInt32(99), UInt16(1)), (901, SendOpcode.send.rawValue, 200)] {
            let slot = p.sendA.reserve()!
            RingSlots.writeSend(slot, wrID: id, opcode: opcode, flags: 2, immData: 0, rkey: 0, remoteAddress: 0, compareAdd: 0, swap: 0,
                                addressHandle: 0, remoteQPN: 0, remoteQKey: 0, sgeCount: sges, inlineLength: 0)
            p.sendA.advance()
        }
        RingPair.publish(&p.sendA, p.qpA, doorbell: p.doorbellA)
        let errors = RingPair.take(2, from: &p.completionsA)
        XCTAssertEqual(errors.map(\.wrID), [900, 901])
        XCTAssertEqual(errors.map(\.status), [WCStatus.localQPOperationError.rawValue, WCStatus.localQPOperationError.rawValue])
        XCTAssertEqual(p.pair.a.session.fast?.shared.refused.load(ordering: .relaxed), 2)
        XCTAssertEqual(p.pair.b.session.fast?.shared.refused.load(ordering: .relaxed), 0)
        // B saw nothing, and a well-formed send still goes through afterwards.
        XCTAssertEqual(p.completionsB.available(), 0)
        p.postReceiveB(wrID: 1, offset: 0, length: 8)
        p.postSendA(wrID: 2, offset: 0, length: 8)
        XCTAssertEqual(RingPair.take(1, from: &p.completionsB).first?.status, WCStatus.success.rawValue)
    }

    func testRandomSlotsNeverStopTheRouterOrReachAnotherSession() throws {
        let p = try RingPair()
        defer { p.close() }
        var rng = SystemRandomNumberGenerator()
        let sendSlot = p.qpA.ring(0).slotSize, receiveSlot = p.qpA.ring(1).slotSize
        var receiveA = RingProducer(p.qpA.ring(1))
        // 2000 slots of random bytes (with a valid-looking opcode now and then), into A's send and receive rings.
        var sent = 0
        while sent < 2000 {
            for (ring, size) in [(0, sendSlot), (1, receiveSlot)] {
                var producer = ring == 0 ? p.sendA : receiveA
                guard let slot = producer.reserve() else { continue }
                for i in stride(from: 0, to: size, by: 8) { slot.storeBytes(of: rng.next() as UInt64, toByteOffset: i, as: UInt64.self) }
                if Bool.random(using: &rng) { slot.storeBytes(of: UInt32.random(in: 0...6, using: &rng), toByteOffset: 8, as: UInt32.self) }
                producer.advance()
                RingPair.publish(&producer, p.qpA, doorbell: p.doorbellA)
                if ring == 0 { p.sendA = producer } else { receiveA = producer }
                sent += 1
            }
            // Take whatever completed, so the CQ ring never holds the router back.
            let n = p.completionsA.available()
            p.completionsA.release(n)
        }
        // The data-path thread took every slot (each posted or completed in error), and B saw none of it.
        let shared = try XCTUnwrap(p.pair.a.session.fast?.shared)
        try eventuallyBlocking("the poller to go through every slot") {
            p.completionsA.release(p.completionsA.available())
            return shared.posts.load(ordering: .relaxed) == UInt64(sent)
        }
        XCTAssertGreaterThan(shared.refused.load(ordering: .relaxed), 0)
        XCTAssertEqual(p.pair.b.session.fast?.shared.refused.load(ordering: .relaxed), 0)
        XCTAssertEqual(p.completionsB.available(), 0)
        XCTAssertEqual(p.backend.liveObjects["qp"], 2)
    }

    func testHostileIndicesAreIgnoredAndTheSessionGoesOn() throws {
        let p = try RingPair()
        defer { p.close() }
        try eventuallyBlocking("the poller to sleep") { p.qpA.sleeping }
        // A tail far beyond the ring, and a completion-ring head that claims more room than exists.
        (p.qpA.ring(0).header + RingLayout.tailOffset).storeBytes(of: UInt64(1) << 50, as: UInt64.self)
        (p.cqB.ring(0).header + RingLayout.headOffset).storeBytes(of: UInt64.max, as: UInt64.self)
        var one: UInt64 = 1
        _ = write(p.doorbellA, &one, 8)
        let shared = try XCTUnwrap(p.pair.a.session.fast?.shared)
        try eventuallyBlocking("the poller to wake on the doorbell") { shared.doorbells.load(ordering: .relaxed) >= 1 }
        try eventuallyBlocking("the poller to go over the hostile rings and sleep again") { p.qpA.sleeping }
        XCTAssertEqual(shared.posts.load(ordering: .relaxed), 0, "nothing was taken from a ring with a bogus tail")
        // Sane indices again: the session is served as before.
        (p.cqB.ring(0).header + RingLayout.headOffset).storeBytes(of: 0, as: UInt64.self)
        (p.qpA.ring(0).header + RingLayout.tailOffset).storeBytes(of: 0, as: UInt64.self)
        p.postReceiveB(wrID: 5, offset: 0, length: 8)
        p.postSendA(wrID: 6, offset: 0, length: 8)
        XCTAssertEqual(RingPair.take(1, from: &p.completionsB).first?.wrID, 5)
        XCTAssertEqual(p.backend.liveObjects["qp"], 2)
    }

    func testDestroyWhilePostingAndSessionEndLeaveNothingBehind() throws {
        let p = try RingPair()
        // Fill A's send ring with unsignaled sends to a peer that posted no receives, then destroy the QP at once.
        for i in 0..<32 {
            let slot = p.sendA.reserve()!
            RingSlots.writeSend(slot, wrID: UInt64(i), opcode: SendOpcode.rdmaWrite.rawValue, flags: 0, immData: 0, rkey: p.pair.mrB.rkey,
                                remoteAddress: p.pair.memB.address, compareAdd: 0, swap: 0, addressHandle: 0, remoteQPN: 0, remoteQKey: 0,
                                sgeCount: 1, inlineLength: 0)
            RingSlots.writeSGE(slot, fixed: 64, index: 0, address: p.pair.memA.address, length: 8, lkey: p.pair.mrA.lkey)
            p.sendA.advance()
        }
        RingPair.publish(&p.sendA, p.qpA, doorbell: p.doorbellA)
        p.pair.a.ok(Message(DestroyQPRequest(qp: p.pair.qpA)))
        XCTAssertEqual(p.backend.liveObjects["qp"], 1)
        // B's session ends with its rings full of receives (as a client killed with -9 leaves them).
        for i in 0..<32 {
            let slot = p.receiveB.reserve()!
            RingSlots.writeReceive(slot, wrID: UInt64(i), sgeCount: 0)
            p.receiveB.advance()
        }
        RingPair.publish(&p.receiveB, p.qpB, doorbell: p.doorbellB)
        p.close()
        XCTAssertEqual(p.dataPath.runningThreads, 0, "the data-path thread is told to end with its last session")
        // Everything of both sessions is gone at once; the poller's own completion channel goes with its thread.
        XCTAssertEqual(p.backend.liveObjects.filter { $0.key != "comp_channel" }, [:])
        try eventuallyBlocking("the data-path thread's channel to go") { p.backend.liveObjectCount == 0 }
    }

    func testIdlePollerSleepsAndADoorbellWakesIt() throws {
        let p = try RingPair()
        defer { p.close() }
        try eventuallyBlocking("the poller to say it sleeps") { p.qpA.sleeping }
        let wakeups = p.pair.a.session.fast?.shared.doorbells.load(ordering: .relaxed) ?? 0
        p.postReceiveB(wrID: 1, offset: 0, length: 8)
        p.postSendA(wrID: 2, offset: 0, length: 8)
        XCTAssertEqual(RingPair.take(1, from: &p.completionsA).first?.wrID, 2)
        let rung = (p.pair.a.session.fast?.shared.doorbells.load(ordering: .relaxed) ?? 0) + (p.pair.b.session.fast?.shared.doorbells.load(ordering: .relaxed) ?? 0)
        XCTAssertGreaterThan(rung, wakeups, "a post to a sleeping router rings its doorbell")
        try eventuallyBlocking("the poller to sleep again") { p.qpA.sleeping }
    }

    func testEventIsDeliveredOnlyAfterItsCompletionIsInTheRing() throws {
        let p = try RingPair(channelOnB: true)
        defer { p.close() }
        let channel = try XCTUnwrap(p.pair.channelDescriptor)
        p.pair.b.ok(Message(ReqNotifyCQRequest(cq: p.pair.cqB, solicitedOnly: false)))
        p.postReceiveB(wrID: 33, offset: 0, length: 8)
        p.postSendA(wrID: 34, offset: 0, length: 8)
        var descriptor = [pollfd(fd: channel, events: Int16(POLLIN), revents: 0)]
        XCTAssertEqual(try Poll.wait(&descriptor, timeoutMilliseconds: 20_000), 1, "no completion event")
        // The completion the event announces is already visible.
        XCTAssertGreaterThanOrEqual(p.completionsB.available(), 1)
        var record = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(read(channel, &record, 8), 8)
        XCTAssertEqual(UInt32(record[0]) | UInt32(record[1]) << 8 | UInt32(record[2]) << 16 | UInt32(record[3]) << 24, p.pair.cqB.rawValue)
    }

    func testUnmappedRingsCountAgainstTheSessionsDescriptors() throws {
        let backend = FakeBackend()
        var logger = Logger(label: "test.datapath")
        logger.logLevel = .error
        let dataPath = DataPath(backend: backend, tuning: DataPathTuning(), logger: logger)
        var limits = SessionLimits()
        limits.descriptors = 3
        let driver = SessionDriver(backend: backend, limits: limits, dataPath: dataPath)
        defer { driver.session.close() }
        let cqs = (0..<3).map { _ in driver.createCQ() }
        XCTAssertEqual(driver.refused(Message(CreateCQRequest(cqe: 8))).errno, Errno.tooManyDescriptors)
        // Mapping one gives its descriptor to the client: room for one more.
        _ = try ClientRings(driver, .cq, cqs[0].rawValue)
        XCTAssertNotEqual(driver.createCQ().rawValue, 0)
        XCTAssertEqual(driver.refused(Message(CreateCQRequest(cqe: 8))).errno, Errno.tooManyDescriptors)
        // So does destroying an unmapped one.
        driver.ok(Message(DestroyCQRequest(cq: cqs[1])))
        XCTAssertNotEqual(driver.createCQ().rawValue, 0)
    }

    func testSocketDataPathIsRefusedInARingSessionAndMapRingWithoutTheGrant() throws {
        let p = try RingPair()
        defer { p.close() }
        XCTAssertEqual(p.pair.a.refused(Message(PollCQRequest(cq: p.pair.cqA, maxEntries: 1))).errno, Errno.invalidArgument)
        XCTAssertEqual(p.pair.a.refused(Message(MapRingRequest(target: .qp, handle: p.pair.qpA.rawValue))).errno, Errno.invalidArgument,
                       "each object's rings are handed out once")
        let plain = SessionDriver(backend: p.backend, vip: SessionDriver.vipA, id: 9)
        XCTAssertEqual(plain.refused(Message(MapRingRequest(target: .doorbell, handle: 0))).errno, Errno.protocolError)
        plain.session.close()
    }
}
