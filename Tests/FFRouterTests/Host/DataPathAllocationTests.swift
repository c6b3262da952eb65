import CAllocationCounter
import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Glibc
import XCTest

/// The data path's hot loop allocates nothing: the test binary links CAllocationCounter, a counting front for glibc's
/// malloc, and counts what the data-path thread allocates while a client posts through the rings (sends with SGEs and
/// inline, receives, RDMA WRITEs, hostile slots) and the poller mirrors their completions. An array, a boxed value or a
/// class instance per request would count at least once per slot.
final class DataPathAllocationTests: XCTestCase {
    func testCountingMallocSeesThisThreadsAllocations() {
        // Without this, a linker that did not let the counting malloc take glibc's place would make the test below pass
        // with nothing counted.
        ff_allocations_count_thread(ff_allocations_this_thread())
        let array = Array(repeating: UInt64(7), count: Int.random(in: 100...200))
        let counted = ff_allocations_counted()
        ff_allocations_count_thread(0)
        XCTAssertEqual(array.count >= 100, true)
        XCTAssertGreaterThanOrEqual(counted, 1, "the counting malloc is not the process's malloc")
    }

    func testSteadyStatePostsAndCompletionsAllocateNothingOnTheDataPathThread() throws {
        // The thread spins between slots (no sleep in the window): what is counted is the per-slot path alone, even on a
        // loaded machine where the test thread is descheduled for milliseconds.
        let p = try RingPair(tuning: DataPathTuning(spinNanoseconds: 60_000_000_000, yieldNanoseconds: 60_000_000_000))
        defer { p.close() }
        var poller: UInt = 0
        try eventuallyBlocking("the data-path thread to run") {
            poller = p.dataPath.threads.first ?? 0
            return poller != 0
        }
        let warmUp = 100, measured = 400
        var slots = 0
        for i in 0..<(warmUp + measured) {
            if i == warmUp {
                slots = 0
                ff_allocations_count_thread(poller)
            }
            slots += try exchange(p, round: i)
        }
        let counted = ff_allocations_counted()
        ff_allocations_count_thread(0)
        print("data-path thread: \(counted) heap allocations for \(slots) slots")
        XCTAssertGreaterThan(slots, 5 * measured)
        // Nothing is expected; a handful is tolerated (a runtime cache filled late), one per slot is not.
        XCTAssertLessThanOrEqual(counted, 8, "the data-path thread allocated \(counted) times for \(slots) slots")
    }

    /// One round of the client's traffic: a receive on B and a SEND with two SGEs from A, an inline SEND into a second
    /// receive, a signaled RDMA WRITE, and a slot that does not decode; waits for all their completions. Returns the
    /// slots posted.
    private func exchange(_ p: RingPair, round: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let id = UInt64(round) << 8
        p.postReceiveB(wrID: id | 1, offset: 1024, length: 64)
        p.postReceiveB(wrID: id | 2, offset: 2048, length: 64)
        post(&p.sendA, opcode: .send, id: id | 3, sges: [(p.pair.memA.address, 8), (p.pair.memA.address + 64, 8)], p)
        postInline(p, id: id | 4, bytes: 16)
        post(&p.sendA, opcode: .rdmaWrite, id: id | 5, sges: [(p.pair.memA.address, 8)], p, remote: p.pair.memB.address + 4096)
        // A hostile slot: an opcode verbs does not have (an error completion, no allocation either).
        let slot = try XCTUnwrap(p.sendA.reserve(), file: file, line: line)
        RingSlots.writeSend(slot, wrID: id | 6, opcode: 99, flags: SendFlags.signaled.rawValue, immData: 0, rkey: 0, remoteAddress: 0, compareAdd: 0,
                            swap: 0, addressHandle: 0, remoteQPN: 0, remoteQKey: 0, sgeCount: 0, inlineLength: 0)
        p.sendA.advance()
        RingPair.publish(&p.sendA, p.qpA, doorbell: p.doorbellA)
        // The refused slot's completion may come before the others (the router queues its own error completions first).
        let a = take(4, from: &p.completionsA, file: file, line: line).sorted { $0.wrID < $1.wrID }
        let b = take(2, from: &p.completionsB, file: file, line: line)
        XCTAssertEqual(a.map(\.wrID), [id | 3, id | 4, id | 5, id | 6], file: file, line: line)
        XCTAssertEqual(a.map(\.status), [0, 0, 0, WCStatus.localQPOperationError.rawValue], file: file, line: line)
        XCTAssertEqual(b.map(\.byteLength), [16, 16], file: file, line: line)
        return 6
    }

    /// Takes `count` completions, yielding the CPU between looks (a round trip takes microseconds; RingPair.take's
    /// 5 ms naps would make this test take seconds), for at most 20 s.
    private func take(_ count: Int, from consumer: inout RingConsumer, file: StaticString, line: UInt) -> [RingSlots.RawCompletion] {
        var got: [RingSlots.RawCompletion] = []
        let deadline = Poll.nowMilliseconds() + 20_000
        while got.count < count, Poll.nowMilliseconds() < deadline {
            let n = consumer.available()
            for i in 0..<n { got.append(RingSlots.readCompletion(consumer.slot(i))) }
            consumer.release(n)
            if n == 0 { sched_yield() }
        }
        XCTAssertEqual(got.count, count, "completions within 20 s", file: file, line: line)
        return got
    }

    private func post(_ producer: inout RingProducer, opcode: SendOpcode, id: UInt64, sges: [(UInt64, UInt32)], _ p: RingPair, remote: UInt64 = 0) {
        let slot = producer.reserve()!
        RingSlots.writeSend(slot, wrID: id, opcode: opcode.rawValue, flags: SendFlags.signaled.rawValue, immData: 0,
                            rkey: remote == 0 ? 0 : p.pair.mrB.rkey, remoteAddress: remote, compareAdd: 0, swap: 0, addressHandle: 0,
                            remoteQPN: 0, remoteQKey: 0, sgeCount: UInt16(sges.count), inlineLength: 0)
        for (i, sge) in sges.enumerated() {
            RingSlots.writeSGE(slot, fixed: 64, index: i, address: sge.0, length: sge.1, lkey: p.pair.mrA.lkey)
        }
        producer.advance()
        RingPair.publish(&producer, p.qpA, doorbell: p.doorbellA)
    }

    private func postInline(_ p: RingPair, id: UInt64, bytes: Int) {
        let slot = p.sendA.reserve()!
        RingSlots.writeSend(slot, wrID: id, opcode: SendOpcode.send.rawValue, flags: SendFlags([.signaled, .inline]).rawValue, immData: 0, rkey: 0,
                            remoteAddress: 0, compareAdd: 0, swap: 0, addressHandle: 0, remoteQPN: 0, remoteQKey: 0, sgeCount: 0,
                            inlineLength: UInt16(bytes))
        RingSlots.inlinePayload(slot).initializeMemory(as: UInt8.self, repeating: 0x5A, count: bytes)
        p.sendA.advance()
        RingPair.publish(&p.sendA, p.qpA, doorbell: p.doorbellA)
    }
}
