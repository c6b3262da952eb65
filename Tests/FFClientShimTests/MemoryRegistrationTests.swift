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

    func testPartlyOverlappingRegistrationsShareTheirPagesAndSurviveDeregInEitherOrder() throws {
        let program = try compileProgram("memcheck", into: router.directory)
        let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: .dropIn), directory: router.directory)
        XCTAssertEqual(result.status, 0, "\(result.output)\n\(result.errors)")
        for check in ["partial overlap, first dereg first: both MRs see the same bytes", "partial overlap, first dereg first keeps memory valid",
                      "partial overlap, second dereg first: both MRs see the same bytes", "partial overlap, second dereg first keeps memory valid",
                      "spanning overlap: every part shares its pages", "spanning overlap keeps memory valid",
                      "overlap of many shares seventeen regions"] {
            XCTAssertTrue(result.output.contains("ok \(check)\n"), "\(check) missing: \(result.output)")
        }
        // Only the huge-page case (when the machine has two free huge pages) is refused for an overlap.
        let refusals = result.errors.split(separator: "\n").filter { $0.contains("overlaps") && !$0.contains("on huge pages") }
        XCTAssertEqual(refusals, [], "no overlap of ordinary memory is refused")
    }

    func testUnmovableMappingsAreRefusedWithAReason() throws {
        let program = try compileProgram("memcheck", into: router.directory)
        let result = try RunningProgram.run(program, environment: router.environment(pod: "a", mode: .preload), directory: router.directory)
        for kind in ["shared file mapping", "private file mapping", "shared anonymous mapping"] {
            XCTAssertTrue(result.output.contains("ok \(kind) refused\n"), "\(kind): \(result.output)")
        }
        XCTAssertTrue(result.errors.contains("a file-backed mapping (its pages belong to the file)"), result.errors)
        XCTAssertTrue(result.errors.contains("a shared mapping"), result.errors)
    }
}
