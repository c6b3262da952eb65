#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// poll(2) and the monotonic clock its deadlines are measured on.
public enum Poll {
    /// Waits up to `timeoutMilliseconds` (-1: no bound) for events on `descriptors`; returns how many have
    /// events (0: timed out). An interrupting signal counts as a timeout of zero events, so callers
    /// recompute their deadline and poll again.
    @discardableResult
    public static func wait(_ descriptors: inout [pollfd], timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        let rc = descriptors.withUnsafeMutableBufferPointer {
            poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds)
        }
        if rc < 0 {
            if Glibc.errno == EINTR { return 0 }
            throw SystemError.last("poll")
        }
        return Int(rc)
    }

    /// Milliseconds on CLOCK_MONOTONIC (never jumps with the wall clock).
    public static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The poll timeout that ends at `deadline` (a `nowMilliseconds()` value): 0 once it has passed.
    public static func timeout(until deadline: Int64) -> Int32 {
        Int32(clamping: max(0, deadline - nowMilliseconds()))
    }
}
