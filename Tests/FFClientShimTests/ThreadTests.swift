import Foundation
import XCTest

/// Verbs from several threads of one program (Programs/threads.c): concurrent calls all succeed, and a
/// thread blocked in ibv_get_cq_event holds up none of them and wakes on its completion.
final class ThreadTests: XCTestCase {
    func testConcurrentCallsAndABlockedCompletionWaiterInBothModes() throws {
        let router = try FakeRouterFixture()
        let program = try compileProgram("threads", into: router.directory, libraries: ["-pthread", "-libverbs"])
        for mode in ShimMode.allCases {
            let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: mode), directory: router.directory)
            XCTAssertEqual(result.status, 0, "\(mode): \(result.output) \(result.errors)")
            XCTAssertEqual(result.output, "ok workers done while one thread slept in ibv_get_cq_event\nok threads\n", "\(mode)")
        }
    }
}
