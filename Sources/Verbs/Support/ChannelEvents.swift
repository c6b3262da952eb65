import FFSystem
#if canImport(Glibc)
import Glibc
#endif

/// Taking events from a verbs event descriptor (a completion channel, an rdma_cm event channel) from async
/// code: the descriptor is made non-blocking and the task waits for it to become readable between tries.
enum ChannelEvents {
    /// Waits for the next event that `take` can read from `fd`; `take` fails with EAGAIN when none is pending.
    static func next<T>(fd: Int32, what: String, _ take: () throws(VerbsError) -> T) async throws -> T {
        do {
            try Readiness.setNonBlocking(fd)
        } catch {
            throw VerbsError(operation: "fcntl(O_NONBLOCK)", errno: error.errno, detail: what)
        }
        while true {
            if let event = try pending(take) { return event }
            try await Readiness.readable(fd)
        }
    }

    /// `take` on a non-blocking descriptor: nil when no event is pending (EAGAIN).
    static func pending<T>(_ take: () throws(VerbsError) -> T) throws(VerbsError) -> T? {
        do {
            return try take()
        } catch {
            if error.errno == EAGAIN || error.errno == EWOULDBLOCK { return nil }
            throw error
        }
    }
}
