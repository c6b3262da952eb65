import Foundation

/// A condition a test waited for did not hold within its bound. It is thrown, not recorded: this module links into
/// ffdemo and ffbench-map, which have no XCTest, and a thrown error fails an XCTest or swift-testing test alike.
public struct ConditionTimedOut: Error, CustomStringConvertible {
    /// What the test waited for, in the caller's words ("the watch to see the sentinel").
    public let what: String
    /// How long it waited.
    public let timeout: Duration
    /// Where the wait is: a thrown error is reported at the test, not at the line that waited.
    public let file: StaticString
    /// The line of the wait in `file`.
    public let line: UInt

    /// "File.swift:12: timed out after 10.0 seconds waiting for …".
    public var description: String { "\(file):\(line): timed out after \(timeout) waiting for \(what)" }
}

/// Waits until `condition` holds, checking it every `interval` for at most `timeout` (and once more at the end), and
/// throws ``ConditionTimedOut`` naming `what` if it never does. An error `condition` throws ends the wait with it.
/// For synchronous tests and harnesses: it blocks the calling thread between checks. It is no overload of the async
/// ``eventually(_:timeout:every:isolation:file:line:_:)``: given a synchronous closure, Swift would pick it even in
/// async code, and block a thread of the concurrency pool there.
public func eventuallyBlocking(
    _ what: String, timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(20),
    file: StaticString = #filePath, line: UInt = #line, _ condition: () throws -> Bool
) throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        guard ContinuousClock.now < deadline else {
            throw ConditionTimedOut(what: what, timeout: timeout, file: file, line: line)
        }
        Thread.sleep(forTimeInterval: interval.seconds)
    }
}

/// Waits until `condition` holds, checking it every `interval` for at most `timeout` (and once more at the end), and
/// throws ``ConditionTimedOut`` naming `what` if it never does. An error `condition` throws ends the wait with it.
/// The checks run on the caller's actor, so `condition` may read the test's state; between them the task sleeps.
public func eventually(
    _ what: String, timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(20),
    isolation: isolated (any Actor)? = #isolation,
    file: StaticString = #filePath, line: UInt = #line, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw ConditionTimedOut(what: what, timeout: timeout, file: file, line: line)
        }
        try await Task.sleep(for: interval)
    }
}

extension Duration {
    /// The duration in seconds, for Foundation's sleeps.
    fileprivate var seconds: TimeInterval {
        TimeInterval(components.seconds) + TimeInterval(components.attoseconds) / 1e18
    }
}
