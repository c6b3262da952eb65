import Foundation
import XCTest

/// fork(2) through the shim (Programs/forkcheck.c): the child's calls on the inherited context fail with
/// EPERM without touching the parent's router connection, its writes to registered buffers stay its own,
/// it can open its own device, and the parent carries on afterwards.
final class ForkTests: XCTestCase {
    func testChildCannotUseTheParentsSessionAndTheParentCarriesOnInBothModes() throws {
        let router = try FakeRouterFixture()
        let program = try compileProgram("forkcheck", into: router.directory)
        for mode in ShimMode.allCases {
            let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: mode), directory: router.directory)
            XCTAssertEqual(result.status, 0, "\(mode): \(result.output) \(result.errors)")
            XCTAssertEqual(result.output, """
                ok child: wrote its copy of a registered buffer
                ok child: the parent's context answers EPERM
                ok child: its own device works
                ok parent: its registered buffer is its own
                ok parent: its session carries on

                """, "\(mode)")
        }
    }
}
