import Foundation
import XCTest

/// ibv_reg_mr on ordinary memory (Programs/memcheck.c): the shim moves the pages into a memfd in place,
/// and every transfer between two QPs through the fake router lands in the program's own memory.
final class MemoryRegistrationTests: XCTestCase {
    private var router: FakeRouterFixture!

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    func testOrdinaryBuffersCarryEveryOperationByteForByteInBothModes() throws {
        let program = try compileProgram("memcheck", into: router.directory)
        for mode in ShimMode.allCases {
            let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: mode), directory: router.directory)
            XCTAssertEqual(result.status, 0, "\(mode): \(result.output)\n\(result.errors)")
            verifyMemcheck(result, hugePages: HugePages.free > 0, "\(mode)")
        }
    }

    func testUnmovableMappingsAreRefusedWithAReason() throws {
        let program = try compileProgram("memcheck", into: router.directory)
        let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: .preload), directory: router.directory)
        for kind in ["partial overlap", "shared file mapping", "private file mapping", "shared anonymous mapping"] {
            XCTAssertTrue(result.output.contains("ok \(kind) refused\n"), "\(kind): \(result.output)")
        }
        XCTAssertTrue(result.errors.contains("it partly overlaps an earlier registration"), result.errors)
        XCTAssertTrue(result.errors.contains("a file-backed mapping (its pages belong to the file)"), result.errors)
        XCTAssertTrue(result.errors.contains("a shared mapping"), result.errors)
    }
}
