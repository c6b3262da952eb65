import Foundation
import XCTest

/// Waits, checking every 20 ms for at most `seconds`, until `condition` holds; fails the test if it never does.
func eventually(_ what: String, seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) async {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else { return XCTFail("timed out after \(seconds) s waiting for \(what)", file: file, line: line) }
        try? await Task.sleep(for: .milliseconds(20))
    }
}
