import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Glibc
import XCTest

/// The fake device copies registered bytes with the router's own CPU, through its mapping of the client's memfd: a
/// page cut off that file would raise SIGBUS in the router. Sessions on it seal every memfd against shrinking at
/// reg_mr and refuse one that cannot be sealed, so no client can take the router down by truncating its memory.
final class FakeDeviceMemoryTests: XCTestCase {
    /// fcntl(2) F_ADD_SEALS, F_GET_SEALS and the seals, as the kernel numbers them.
    private static let addSeals: Int32 = 1033, getSeals: Int32 = 1034
    private static let sealSeal: Int32 = 0x1, sealShrink: Int32 = 0x2

    /// Posts one receive of `length` bytes at `address` in `mr` on `qp`.
    private func receive(_ on: SessionDriver, _ qp: QPHandle, id: UInt64, at address: UInt64, _ length: UInt32,
                         _ mr: RegMRReply) {
        let sge = ScatterGatherEntry(address: address, length: length, lkey: mr.lkey)
        on.ok(Message(PostRecvRequest(target: qp, requests: [ReceiveWorkRequest(wrID: id, sgList: [sge])])))
    }

    /// Posts one signaled SEND of `length` bytes at `address` in `mr` on `qp`.
    private func send(_ on: SessionDriver, _ qp: QPHandle, id: UInt64, at address: UInt64, _ length: UInt32,
                      _ mr: RegMRReply) {
        let sge = ScatterGatherEntry(address: address, length: length, lkey: mr.lkey)
        let request = SendWorkRequest(wrID: id, opcode: .send, flags: [.signaled], sgList: [sge])
        on.ok(Message(PostSendRequest(qp: qp, requests: [request])))
    }

    func testAClientCannotShrinkARegisteredMemfdAndItsTrafficGoesOn() throws {
        let backend = FakeBackend()
        let pair = try PodPair(backend: backend)
        let fd = pair.memA.descriptor.rawValue
        XCTAssertNotEqual(fcntl(fd, Self.getSeals) & Self.sealShrink, 0, "reg_mr on the fake sealed the memfd")

        XCTAssertEqual(ftruncate(fd, 0), -1, "the client's truncation of its registered memfd is refused")
        XCTAssertEqual(errno, EPERM)
        XCTAssertEqual(ftruncate(fd, off_t(pair.memA.bytes.count / 2)), -1)

        // Both directions over the memory the client tried to cut: the fake reads and writes every page of it.
        pair.memA.bytes.copyBytes(from: Array("still here".utf8))
        receive(pair.b, pair.qpB, id: 1, at: pair.memB.address, 64, pair.mrB)
        send(pair.a, pair.qpA, id: 2, at: pair.memA.address, 10, pair.mrA)
        XCTAssertEqual(pair.a.poll(pair.cqA).map(\.status), [.success])
        XCTAssertEqual(pair.b.poll(pair.cqB).map(\.byteLength), [10])
        XCTAssertEqual(Array(pair.memB.bytes[0..<10]), Array("still here".utf8))

        let last = UInt64(pair.memA.bytes.count - 8)
        pair.memB.bytes.copyBytes(from: Array("lastpage".utf8))
        receive(pair.a, pair.qpA, id: 3, at: pair.memA.address + last, 8, pair.mrA)
        send(pair.b, pair.qpB, id: 4, at: pair.memB.address, 8, pair.mrB)
        XCTAssertEqual(pair.a.poll(pair.cqA).map(\.status), [.success])
        XCTAssertEqual(Array(pair.memA.bytes[Int(last)...]), Array("lastpage".utf8), "the last page is the client's")
        pair.a.session.close()
        pair.b.session.close()
        XCTAssertEqual(backend.liveObjects, [:])
    }

    func testAMemfdThatTakesNoSealsIsRefusedWithTheReasonAndTheSessionsGoOn() throws {
        let backend = FakeBackend()
        let pair = try PodPair(backend: backend)
        // F_SEAL_SEAL without F_SEAL_SHRINK: what a memfd created without MFD_ALLOW_SEALING carries from the start.
        let unsealable = try SharedMemory(name: "unsealable", size: 8192)
        XCTAssertEqual(fcntl(unsealable.descriptor.rawValue, Self.addSeals, Self.sealSeal), 0)
        let pd = pair.a.allocPD()
        let request = RegMRRequest(pd: pd, access: [.localWrite], address: unsealable.address, length: 8192,
                                   memfdOffset: 0)
        let refusal = pair.a.refused(Message(request), descriptors: [unsealable.descriptor.rawValue])
        XCTAssertEqual(refusal.errno, Errno.invalidArgument)
        XCTAssertTrue(refusal.reason.contains("MFD_ALLOW_SEALING"), refusal.reason)
        XCTAssertEqual(backend.liveObjects["mr"], 2, "nothing registered beyond the pair's MRs")
        XCTAssertEqual(ftruncate(unsealable.descriptor.rawValue, 4096), 0, "refused memory stays resizable")

        // The same session registers sealable memory afterwards, and the other pod's traffic is untouched.
        let fresh = try SharedMemory(name: "fresh", size: 4096)
        XCTAssertNotEqual(pair.a.registerMemory(pd, fresh).lkey, 0)
        receive(pair.b, pair.qpB, id: 5, at: pair.memB.address, 64, pair.mrB)
        send(pair.a, pair.qpA, id: 6, at: pair.memA.address, 4, pair.mrA)
        XCTAssertEqual(pair.a.poll(pair.cqA).map(\.status), [.success])
        XCTAssertEqual(pair.b.poll(pair.cqB).map(\.wrID), [5])
    }
}
