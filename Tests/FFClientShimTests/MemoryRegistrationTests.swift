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
            XCTAssertTrue(result.output.hasSuffix("ok all\n"), "\(mode): \(result.output)")
            for check in ["wr api write inline and send with imm", "wr api read and fetch and add",
                          "wr api refuses a setter without a request, abort drops the batch",
                          "cq_ex start_poll, next_poll and read_* report both completions"] {
                XCTAssertTrue(result.output.contains("ok \(check)\n"), "\(mode): \(check) missing")
            }
            for kind in ["malloc", "mmap", "aligned_alloc", "stack"] {
                for check in ["reg_mr keeps contents", "send", "write", "write with imm", "read", "compare and swap",
                              "fetch and add", "nested reg_mr", "dereg_mr keeps memory valid"] {
                    XCTAssertTrue(result.output.contains("ok \(kind) \(check)\n"), "\(mode): \(kind) \(check) missing")
                }
            }
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
