import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFRouterAPI
import FFSystem
import Synchronization
import XCTest

/// What only the fake can show of the per-session limits: a refused registration never reached the device (its
/// `onRegisterMemory` hook). Each limit's errno, reason and effect on another session are `RouterScenarios`.
final class SessionLimitTests: XCTestCase {
    private func limited(_ configure: (inout SessionLimits) -> Void) -> (FakeBackend, SessionDriver, SessionDriver) {
        var limits = SessionLimits()
        configure(&limits)
        let backend = FakeBackend()
        return (backend, SessionDriver(backend: backend, vip: SessionDriver.vipA, id: 1, limits: limits),
                SessionDriver(backend: backend, vip: SessionDriver.vipB, id: 2))
    }

    func testARefusedRegistrationNeverReachesTheDevice() throws {
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

}
