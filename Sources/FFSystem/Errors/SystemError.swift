#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which one, on what, and the errno it reported.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call, e.g. `sendmsg`.
    public var operation: String
    /// errno.
    public var errno: Int32
    /// What it was called on, e.g. the socket path.
    public var detail: String?

    /// Creates an error for `operation` failing with `errno`.
    public init(operation: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    /// The error of the call that just failed, from the thread's errno.
    static func last(_ operation: String, _ detail: String? = nil) -> SystemError {
        SystemError(operation: operation, errno: Glibc.errno, detail: detail)
    }

    /// "connect failed: No such file or directory (errno 2): /run/freeflow/pod.sock".
    public var description: String {
        var text = "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        if let detail { text += ": \(detail)" }
        return text
    }
}

/// Runs a system call until it is not interrupted by a signal (EINTR).
@inline(__always)
func retryingEINTR<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let rc = body()
        if rc >= 0 || Glibc.errno != EINTR { return rc }
    }
}
