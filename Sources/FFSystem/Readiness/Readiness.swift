import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Waiting for a non-blocking file descriptor to become readable from async code, without a thread per
/// descriptor: a Dispatch read source resumes the waiting task once.
public enum Readiness {
    /// Suspends until `fd` is readable (or at end of file); throws CancellationError when the task is
    /// cancelled meanwhile.
    public static func readable(_ fd: Int32) async throws {
        let waiter = Waiter(fd: fd)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                waiter.start(continuation)
                if Task.isCancelled { waiter.finish(.failure(CancellationError())) }
            }
        } onCancel: {
            waiter.finish(.failure(CancellationError()))
        }
    }

    /// Sets O_NONBLOCK on `fd`.
    public static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw SystemError.last("fcntl(O_NONBLOCK)", "fd \(fd)")
        }
    }

    fileprivate static let queue = DispatchQueue(label: "ffsystem.readiness")
}

/// One wait: a Dispatch read source that resumes a continuation exactly once (readable or cancelled).
private final class Waiter: @unchecked Sendable {
    // @unchecked: `source` is immutable after init and DispatchSource is thread-safe; the continuation
    // is only touched under `state`.
    private let source: any DispatchSourceRead
    private let state = Mutex<CheckedContinuation<Void, Error>?>(nil)

    init(fd: Int32) {
        source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: Readiness.queue)
    }

    func start(_ continuation: CheckedContinuation<Void, Error>) {
        state.withLock { $0 = continuation }
        source.setEventHandler { [self] in finish(.success(())) }
        source.activate()
    }

    func finish(_ result: Result<Void, Error>) {
        guard let continuation = state.withLock({ c in defer { c = nil }; return c }) else { return }
        source.cancel()
        continuation.resume(with: result)
    }
}
