#if canImport(Glibc)
import Glibc
#endif

/// The calling thread's scheduling class.
public enum ThreadScheduling {
    /// Puts the calling thread in SCHED_FIFO at `priority` (1...99), so that its wake-ups preempt ordinary threads at
    /// once instead of waiting for a time slice. Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO that allows `priority`);
    /// without it the call fails with EPERM and the thread stays as it was.
    public static func makeCurrentThreadRealtime(priority: Int32) throws(SystemError) {
        var parameters = sched_param()
        parameters.sched_priority = priority
        let rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters)
        guard rc == 0 else {
            throw SystemError(operation: "pthread_setschedparam", errno: rc, detail: "SCHED_FIFO priority \(priority)")
        }
    }
}
