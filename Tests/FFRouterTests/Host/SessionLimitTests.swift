import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFRouterAPI
import FFSystem
import Synchronization
import XCTest

/// Each per-session limit is hit and refused with the errno verbs would give and a reason naming the flag, before
/// anything is created or pinned; another session on the same backend is unaffected.
final class SessionLimitTests: XCTestCase {
    private func limited(_ configure: (inout SessionLimits) -> Void) -> (FakeBackend, SessionDriver, SessionDriver) {
        var limits = SessionLimits()
        configure(&limits)
        let backend = FakeBackend()
        return (backend, SessionDriver(backend: backend, vip: SessionDriver.vipA, id: 1, limits: limits),
                SessionDriver(backend: backend, vip: SessionDriver.vipB, id: 2))
    }

    func testObjectCountsPerKindAreLimited() {
        let (_, tight, other) = limited { $0.pds = 2; $0.cqs = 1; $0.qps = 1; $0.ahs = 1; $0.srqs = 1 }
        _ = tight.allocPD()
        let pd = tight.allocPD()
        let error = tight.refused(Message(AllocPDRequest()))
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-pds"), error.reason)
        let cq = tight.createCQ()
        XCTAssertEqual(tight.refused(Message(CreateCQRequest(cqe: 4))).errno, Errno.outOfMemory)
        _ = tight.createQP(pd, cq)
        let qpRequest = CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                        capabilities: QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0))
        XCTAssertEqual(tight.refused(Message(qpRequest)).errno, Errno.outOfMemory)
        tight.ok(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1)))
        XCTAssertEqual(tight.refused(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1))).errno, Errno.outOfMemory)
        let ah = CreateAHRequest(pd: pd, attributes: AHAttributes(globalRoute: FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: SessionDriver.vipB)), port: 1))
        tight.ok(Message(ah))
        XCTAssertEqual(tight.refused(Message(ah)).errno, Errno.outOfMemory)
        // The other session is not limited by this one.
        for _ in 0..<5 { _ = other.allocPD() }
        XCTAssertEqual(other.session.objects.counts.pd, 5)
    }

    func testDescriptorsHeldAreLimitedWithEMFILE() {
        let (_, tight, other) = limited { $0.descriptors = 2 }
        tight.ok(Message(CreateCompChannelRequest()))
        let error = tight.refused(Message(CreateCompChannelRequest()))
        XCTAssertEqual(error.errno, Errno.tooManyDescriptors)
        XCTAssertTrue(error.reason.contains("--max-descriptors"), error.reason)
        other.ok(Message(CreateCompChannelRequest()))
        other.ok(Message(CreateCompChannelRequest()))
    }

    func testPinnedBytesAreCheckedBeforePinning() throws {
        let (backend, tight, other) = limited { $0.pinnedBytes = 8192; $0.mrs = 3 }
        let registrations = Mutex(0)
        backend.onRegisterMemory = { _ in registrations.withLock { $0 += 1 } }
        let memory = try SharedMemory(name: "pinned", size: 4 * 4096)
        let pd = tight.allocPD()
        _ = tight.registerMemory(pd, memory, offset: 0, length: 4096)
        _ = tight.registerMemory(pd, memory, offset: 4096, length: 100)
        let error = tight.refused(Message(RegMRRequest(pd: pd, access: [.localWrite], address: memory.address + 8192, length: 10, memfdOffset: 8192)),
                                  descriptors: [memory.descriptor.rawValue])
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-pinned-bytes"), error.reason)
        XCTAssertEqual(registrations.withLock { $0 }, 2, "the refused registration never reached the device")
        let otherPD = other.allocPD()
        _ = other.registerMemory(otherPD, memory)
        XCTAssertEqual(registrations.withLock { $0 }, 3)
    }

    func testQueueDepthAndCQEntriesAreBudgeted() {
        let (_, tight, _) = limited { $0.workRequests = 64; $0.cqEntries = 100 }
        let pd = tight.allocPD()
        let cq = tight.createCQ(64)
        XCTAssertEqual(tight.refused(Message(CreateCQRequest(cqe: 64))).errno, Errno.outOfMemory, "64 + 64 CQ entries pass 100")
        let (qp, _) = tight.createQP(pd, cq, depth: 32)
        let error = tight.refused(Message(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                                            capabilities: QPCapabilities(maxSendWR: 1, maxRecvWR: 0, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0))))
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-work-requests"), error.reason)
        // Destroying the QP gives its depth back.
        tight.ok(Message(DestroyQPRequest(qp: qp)))
        _ = tight.createQP(pd, cq, depth: 32)
    }
}
