import Foundation
import XCTest

/// The shim's table functions give Debian's answers for every input (Programs/tablecheck.c loads both).
final class PureFunctionsTests: XCTestCase {
    func testRatesAndStringsMatchDebiansLibibverbs() throws {
        try ShimArtifacts.require(ShimArtifacts.preload)
        let directory = NSTemporaryDirectory() + "ffshim-tables-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let program = try compileProgram("tablecheck", into: directory, libraries: ["-ldl"])
        let result = try RunningProgram.run(program, [ShimArtifacts.preload, "/usr/lib/x86_64-linux-gnu/libibverbs.so.1"],
                                            directory: directory)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.output, "ok tables\n")
    }
}
