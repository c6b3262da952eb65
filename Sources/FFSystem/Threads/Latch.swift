#if canImport(Glibc)
import Glibc
#endif

/// A one-shot gate: closed until `open()`, then open for good. A thread can wait for it with a deadline
/// (blocking only itself) and a task can await it without holding a thread of the cooperative pool: how a
/// router waits for its session threads to finish.
public final class Latch: @unchecked Sendable {
    // @unchecked: `mutex` and `condition` are only used through pthread calls, `waiters`/`isOpen` only
    // under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// A closed latch.
    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Opens the latch, releasing every waiter; later calls do nothing.
    public func open() {
        pthread_mutex_lock(mutex)
        let resumed = isOpen ? [] : waiters
        isOpen = true
        waiters = []
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for waiter in resumed { waiter.resume() }
    }

    /// Whether it is open now.
    public var opened: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return isOpen
    }

    /// Blocks the calling thread until the latch opens or `deadline` (a `Poll.nowMilliseconds()` value)
    /// passes; true if it opened. Never call it from the cooperative pool.
    public func wait(until deadline: Int64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1000), tv_nsec: Int(deadline % 1000) * 1_000_000)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !isOpen {
            if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT { return isOpen }
        }
        return true
    }

    /// Suspends the task until the latch opens.
    public func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            pthread_mutex_lock(mutex)
            if isOpen {
                pthread_mutex_unlock(mutex)
                continuation.resume()
            } else {
                waiters.append(continuation)
                pthread_mutex_unlock(mutex)
            }
        }
    }
}
