import CoreMetrics
import FFSystem
import Logging
import Metrics
import Synchronization

/// How the data-path threads poll (`ffrouter` flags).
public struct DataPathTuning: Sendable {
    /// Data-path threads (`--datapath-threads`); 0 turns the fast path off (no session is granted it).
    public var threads: Int
    /// Most slots taken from one ring, and completions moved into one, per round: the fairness bound.
    public var batch: Int
    /// After the last work, how long a thread spins before it starts yielding.
    public var spinNanoseconds: UInt64
    /// After the last work, how long until it sleeps (it yields the CPU between rounds meanwhile).
    public var yieldNanoseconds: UInt64

    /// SCHED_FIFO priority of the threads (`--datapath-realtime-priority`), or 0 to leave them ordinary.
    public var realtimePriority: Int32

    /// The defaults: one thread, batches of 32, spin 50 µs, sleep after 1 ms without work, ordinary scheduling.
    public init(threads: Int = 1, batch: Int = 32, spinNanoseconds: UInt64 = 50_000, yieldNanoseconds: UInt64 = 1_000_000,
                realtimePriority: Int32 = 0) {
        self.threads = threads
        self.batch = max(1, batch)
        self.spinNanoseconds = spinNanoseconds
        self.yieldNanoseconds = max(spinNanoseconds, yieldNanoseconds)
        self.realtimePriority = realtimePriority
    }
}

/// The data-path counters (`ffrouter_datapath_*`); per-session counts are in each session's `DataPathSession`.
final class DataPathMetrics: Sendable {
    let posts: Counter
    let completions: Counter
    let refused: Counter
    let doorbells: Counter
    let wakeups: Counter
    private let busyNanoseconds: Counter
    private let idleNanoseconds: Counter
    private let sleepNanoseconds: Counter

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        posts = Counter(label: "ffrouter_datapath_posts_total", factory: factory)
        completions = Counter(label: "ffrouter_datapath_completions_total", factory: factory)
        refused = Counter(label: "ffrouter_datapath_refused_slots_total", factory: factory)
        doorbells = Counter(label: "ffrouter_datapath_doorbells_total", factory: factory)
        wakeups = Counter(label: "ffrouter_datapath_wakeups_total", factory: factory)
        busyNanoseconds = Counter(label: "ffrouter_datapath_busy_nanoseconds_total", factory: factory)
        idleNanoseconds = Counter(label: "ffrouter_datapath_idle_nanoseconds_total", factory: factory)
        sleepNanoseconds = Counter(label: "ffrouter_datapath_sleep_nanoseconds_total", factory: factory)
    }

    func busy(_ ns: UInt64) { busyNanoseconds.increment(by: Int64(clamping: ns)) }
    func idle(_ ns: UInt64) { idleNanoseconds.increment(by: Int64(clamping: ns)) }
    func slept(_ ns: UInt64) { sleepNanoseconds.increment(by: Int64(clamping: ns)) }
}

/// The router's data-path threads. A session granted the fast path joins the least loaded thread and leaves it when it
/// closes; a thread starts with its first session and ends with its last, so an idle router has no data-path thread
/// and a stopped router leaves none behind.
public final class DataPath: Sendable {
    let backend: any VerbsBackend
    let tuning: DataPathTuning
    let metrics: DataPathMetrics
    let logger: Logger
    private let slots: Mutex<[(poller: DataPathPoller, sessions: Int)?]>

    /// Data-path threads for sessions on `backend`.
    public init(backend: any VerbsBackend, tuning: DataPathTuning, logger: Logger, factory: any MetricsFactory = MetricsSystem.factory) {
        self.backend = backend
        self.tuning = tuning
        self.logger = logger
        metrics = DataPathMetrics(factory: factory)
        slots = Mutex(Array(repeating: nil, count: max(1, tuning.threads)))
    }

    /// The poller a new session is served by (started if need be), with the session added to it.
    func join(_ session: DataPathSession) throws -> DataPathPoller {
        try slots.withLock { slots throws in
            var best = 0
            for i in slots.indices {
                guard let current = slots[i] else { best = i; break }
                if let b = slots[best], current.sessions < b.sessions { best = i }
            }
            let poller: DataPathPoller
            if let existing = slots[best] {
                poller = existing.poller
                slots[best] = (poller, existing.sessions + 1)
            } else {
                poller = try DataPathPoller(index: best, backend: backend, tuning: tuning, metrics: metrics, logger: logger)
                try poller.start()
                slots[best] = (poller, 1)
            }
            poller.send(.addSession(session))
            return poller
        }
    }

    /// Takes `session` off its poller, returning once the poller can no longer touch any of its objects; the poller's
    /// thread ends if it was its last session.
    func leave(_ session: DataPathSession, from poller: DataPathPoller) {
        poller.perform { .removeSession(session, $0) }
        slots.withLock { slots in
            guard let i = slots.firstIndex(where: { $0?.poller === poller }), let entry = slots[i] else { return }
            if entry.sessions <= 1 {
                slots[i] = nil
                poller.send(.stop)
            } else {
                slots[i] = (poller, entry.sessions - 1)
            }
        }
    }

    /// Threads running now.
    var runningThreads: Int { slots.withLock { $0.compactMap { $0 }.count } }

    /// `pthread_self()` of each data-path thread that runs now (0 for one still starting): what tests and benchmarks
    /// count the data path's allocations on.
    public var threads: [UInt] { slots.withLock { $0.compactMap { $0?.poller.thread.load(ordering: .acquiring) } } }
}
