import FFProtocol
import FFSystem
import Glibc
import Logging
import Synchronization
import Verbs

/// One data-path thread (`ffr-dp<N>`): drains its sessions' send and receive rings into the backend's QPs and SRQs and
/// mirrors the backend's completions into the sessions' completion rings, round-robin with at most `batch` slots per
/// ring per round, so no session starves another. Adaptive: it spins while there is work, yields for a while after,
/// then sleeps in poll(2) on its wake eventfd and the sessions' doorbells, with every real CQ armed so a completion
/// wakes it too (docs/router.md "Data path").
///
/// Objects come and go only by commands (docs/router.md "How the data-path poller plugs in"): a session thread hands an
/// object over with `add`, and takes it back with `remove`, which returns once the poller has dropped it between two
/// rounds; only then does the session destroy it. The poller holds no lock while it polls.
final class DataPathPoller: @unchecked Sendable {
    // @unchecked: `sessions` and the scratch buffers belong to the poller thread; commands go through `commands`.
    enum Command: Sendable {
        case addSession(DataPathSession)
        case removeSession(DataPathSession, Latch)
        case addCQ(DataPathSession, RingCQ)
        case addQP(DataPathSession, RingQP)
        case addSRQ(DataPathSession, RingSRQ)
        case removeCQ(DataPathSession, RingCQ, Latch)
        case removeQP(DataPathSession, RingQP, Latch)
        case removeSRQ(DataPathSession, RingSRQ, Latch)
        /// Hands everything already in the object's rings to the backend, then opens the latch: how a control call
        /// (modify_qp) stays ordered after the posts the client made before it.
        case flushQP(DataPathSession, RingQP, Latch)
        case flushSRQ(DataPathSession, RingSRQ, Latch)
        case stop
    }

    let index: Int
    let channel: any BackendCompletionChannel
    private let backend: any VerbsBackend
    private let wake: WakeEvent
    private let tuning: DataPathTuning
    private let metrics: DataPathMetrics
    private let logger: Logger
    private let commands = Mutex<[Command]>([])
    private let commandCount = Atomic<Int>(0)
    private let eventTask = Mutex<Task<Void, Never>?>(nil)
    /// Opens when the thread has ended.
    let finished = Latch()
    /// `pthread_self()` of the thread once it runs (0 before): what a test counts the data path's allocations on.
    let thread = Atomic<UInt>(0)

    // The poller thread's own state. `@exclusivity(unchecked)` here and on the per-round fields of the ring objects,
    // PostBatch and the fake device: the run-time exclusivity check of a class's `var` (a thread-local access set per
    // access) was 60 % of this thread's time in the host benchmark (perf, docs/benchmarks.md); these fields are used by
    // one thread (or under the fake's lock), and the check never caught races anyway, only same-thread overlaps.
    @exclusivity(unchecked) private var sessions: [DataPathSession] = []
    @exclusivity(unchecked) private var nextSession = 0
    private let batch: PostBatch
    private var descriptors: [pollfd] = []
    /// The poller channel's descriptor when the thread polls it itself (set before the thread starts).
    private var channelDescriptor: Int32?

    init(index: Int, backend: any VerbsBackend, tuning: DataPathTuning, metrics: DataPathMetrics, logger: Logger) throws {
        self.index = index
        self.backend = backend
        self.tuning = tuning
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "datapath"] = "\(index)"
        self.logger = logger
        channel = try backend.createCompletionChannel()
        wake = try WakeEvent()
        batch = PostBatch(capacity: tuning.batch)
    }

    deinit { wake.close() }

    /// Starts the thread. The poller channel's CQ events wake it directly when the channel has a descriptor (the real
    /// device: it is in the thread's poll set, so a completion wakes the thread with no other thread in between);
    /// otherwise (the fake device) a task turns them into wake-ups.
    func start() throws {
        channelDescriptor = try channel.pollDescriptor()
        if channelDescriptor == nil {
            let wake = self.wake
            let channel = self.channel
            eventTask.withLock {
                $0 = Task.detached {
                    while !Task.isCancelled {
                        guard (try? await channel.nextEvent()) != nil else { return }
                        wake.signal()
                    }
                }
            }
        }
        do {
            try NamedThread.start(name: "ffr-dp\(index)", stackBytes: 512 * 1024) { [self] in
                if tuning.realtimePriority > 0 {
                    do {
                        try ThreadScheduling.makeCurrentThreadRealtime(priority: tuning.realtimePriority)
                    } catch {
                        logger.warning("data-path thread stays at ordinary priority", metadata: ["error": "\(error)"])
                    }
                }
                run()
                eventTask.withLock { $0?.cancel(); $0 = nil }
                finished.open()
            }
        } catch {
            eventTask.withLock { $0?.cancel(); $0 = nil }
            throw error
        }
    }

    /// Queues a command and wakes the thread.
    func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        commandCount.add(1, ordering: .releasing)
        wake.signal()
    }

    /// Sends a command carrying `latch` and waits for the poller to open it. The poller opens every latch it is given,
    /// between two rounds, and a stopped poller's thread opens the rest, so this always returns.
    func perform(_ make: (Latch) -> Command) {
        let latch = Latch()
        send(make(latch))
        var warned = false
        while !latch.wait(until: Poll.nowMilliseconds() + 5000) {
            if !warned {
                logger.warning("data-path thread slow to hand an object back")
                warned = true
            }
        }
    }

    // MARK: - The thread

    private func run() {
        thread.store(UInt(pthread_self()), ordering: .releasing)
        var lastWork = DataPathClock.now()
        // Few clock reads: where the clock is a system call (a guest without a vDSO clocksource), each read costs as
        // much as a post (docs/benchmarks.md, "Where a round trip's time goes"). A busy round reads no clock: a run of
        // busy rounds is timed as one interval, ended by the first round that finds no work or by every
        // `busyRoundsPerClockRead`th busy round, so the busy-time metric lags a busy thread by at most that many rounds.
        // Commands applied between rounds count as the next round's time.
        var start = lastWork
        var busyRounds = 0
        while true {
            if commandCount.load(ordering: .acquiring) > 0, !applyCommands() { return }
            if round() > 0 {
                busyRounds &+= 1
                if busyRounds < Self.busyRoundsPerClockRead { continue }
            }
            let end = DataPathClock.now()
            let took = end &- start
            start = end
            if busyRounds > 0 {
                busyRounds = 0
                metrics.busy(took)
                lastWork = end
                continue
            }
            metrics.idle(took)
            let quiet = end &- lastWork
            if quiet < tuning.spinNanoseconds { continue }
            if quiet < tuning.yieldNanoseconds {
                sched_yield()
                continue
            }
            guard let woke = sleep(since: end) else { return }
            lastWork = woke
            start = woke
        }
    }

    /// Busy rounds in a row after which the thread reads the clock anyway (for the busy-time metric).
    static let busyRoundsPerClockRead = 64

    /// One pass over every session, starting one further each time: receive rings first, then send rings, then CQs.
    /// Receives go first, and are looked at only after the send rings' tails were read, because a peer may post its
    /// receive, tell the sender out of band, and the sender post at once: the receive is then published before the
    /// send this round takes, and must reach its QP first (a receive still in a ring would make the send fail with
    /// RNR where verbs had queued it). That holds for sessions on the same data-path thread.
    private func round() -> Int {
        let n = sessions.count
        guard n > 0 else { return 0 }
        var sends = false
        // Index loops, here and in every per-round path: a for-in over an array goes through a generic iterator that
        // allocates in unoptimized builds, and DataPathAllocationTests holds debug builds to no allocation too.
        for i in 0..<n where !sends {
            let qps = sessions[i].qps
            for j in 0..<qps.count where qps[j].send.available() > 0 {
                sends = true
                break
            }
        }
        var work = 0
        for k in 0..<n { work &+= serveReceives(sessions[(nextSession &+ k) % n], bound: tuning.batch) }
        if sends { for k in 0..<n { work &+= serveSends(sessions[(nextSession &+ k) % n], bound: tuning.batch) } }
        for k in 0..<n { work &+= serveCompletions(sessions[(nextSession &+ k) % n], bound: tuning.batch) }
        nextSession = (nextSession &+ 1) % n
        return work
    }

    /// Sleeps until a doorbell, a CQ event or a command; returns the time it woke (`now` if it did not sleep), nil when
    /// told to stop. Before sleeping it says so in every mapping (a client rings the doorbell only then), arms the CQs,
    /// and looks at the rings once more, so nothing posted or completed before the flags were up is missed.
    private func sleep(since now: UInt64) -> UInt64? {
        setSleeping(true)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        armCQs()
        if round() > 0 || commandCount.load(ordering: .acquiring) > 0 {
            setSleeping(false)
            return now
        }
        descriptors.removeAll(keepingCapacity: true)
        descriptors.append(pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0))
        // The doorbells follow the wake descriptor and, if the thread polls it, the channel's.
        var first = 1
        if let fd = channelDescriptor {
            descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
            first = 2
        }
        for i in 0..<sessions.count { descriptors.append(pollfd(fd: sessions[i].doorbell.descriptor, events: Int16(POLLIN), revents: 0)) }
        _ = try? Poll.wait(&descriptors, timeoutMilliseconds: -1)
        let woke = DataPathClock.now()
        metrics.slept(woke &- now)
        metrics.wakeups.increment()
        if descriptors[0].revents != 0 { wake.drain() }
        if first == 2, descriptors[1].revents != 0 { takeEvents() }
        for i in 0..<sessions.count where descriptors[i + first].revents != 0 {
            let s = sessions[i]
            s.doorbell.drain()
            s.doorbells.add(1, ordering: .relaxed)
            metrics.doorbells.increment()
        }
        setSleeping(false)
        return woke
    }

    /// Arms the CQs before a sleep. Where the thread reads its channel itself (the real device), it first takes the
    /// events already pending (raised by completions it polled while awake: left there, they would end the sleep at
    /// once, and the thread would arm and poll everything twice per round trip), then arms only the CQs whose event it
    /// took or that were never armed: an armed CQ stays armed until its event is taken. Otherwise (the fake device,
    /// whose events arrive through the relay task) it arms every CQ, which costs no system call there.
    private func armCQs() {
        let tracked = channelDescriptor != nil
        if tracked { takeEvents() }
        for i in 0..<sessions.count {
            let cqs = sessions[i].cqs
            for j in 0..<cqs.count where !(tracked && cqs[j].armed) {
                cqs[j].armed = (try? cqs[j].cq.requestNotification(solicitedOnly: false)) != nil
            }
        }
    }

    /// Takes the channel's pending events; each one disarmed its CQ.
    private func takeEvents() {
        _ = try? channel.takePendingEvents { id in
            for i in 0..<sessions.count {
                let cqs = sessions[i].cqs
                for j in 0..<cqs.count where cqs[j].cq.eventID == id { cqs[j].armed = false }
            }
        }
    }

    private func setSleeping(_ asleep: Bool) {
        for i in 0..<sessions.count {
            let s = sessions[i]
            let qps = s.qps, srqs = s.srqs, cqs = s.cqs
            for j in 0..<qps.count { qps[j].mapping.sleep.set(asleep) }
            for j in 0..<srqs.count { srqs[j].mapping.sleep.set(asleep) }
            for j in 0..<cqs.count { cqs[j].mapping.sleep.set(asleep) }
        }
    }

    /// Applies queued commands; false on `stop`.
    private func applyCommands() -> Bool {
        var queued = commands.withLock { list -> [Command] in
            defer { list.removeAll(keepingCapacity: true) }
            return list
        }
        commandCount.subtract(queued.count, ordering: .relaxed)
        var keepRunning = true
        // Latches open only after the commands are dropped, so when a session thread goes on to destroy an object, this
        // thread holds no reference to it (the backend object is freed by the session, never here).
        var latches: [Latch] = []
        for command in queued {
            switch command {
            case .addSession(let s):
                sessions.append(s)
            case .removeSession(let s, let latch):
                sessions.removeAll { $0 === s }
                // The session destroys these next: no reference may stay here.
                s.cqs.removeAll()
                s.qps.removeAll()
                s.srqs.removeAll()
                latches.append(latch)
            case .addCQ(let s, let cq):
                s.cqs.append(cq)
            case .addQP(let s, let qp):
                s.qps.append(qp)
            case .addSRQ(let s, let srq):
                s.srqs.append(srq)
            case .removeCQ(let s, let cq, let latch):
                s.cqs.removeAll { $0 === cq }
                latches.append(latch)
            case .removeQP(let s, let qp, let latch):
                s.qps.removeAll { $0 === qp }
                latches.append(latch)
            case .removeSRQ(let s, let srq, let latch):
                s.srqs.removeAll { $0 === srq }
                latches.append(latch)
            case .flushQP(let s, let qp, let latch):
                for _ in 0...(qp.send.memory.capacity / tuning.batch + 1) {
                    var moved = qp.receive != nil ? drainQPReceive(qp, s, bound: tuning.batch) : 0
                    moved &+= drainSend(qp, s, bound: tuning.batch)
                    if moved == 0 { break }
                }
                latches.append(latch)
            case .flushSRQ(let s, let srq, let latch):
                for _ in 0...(srq.receive.memory.capacity / tuning.batch + 1) where drainSRQ(srq, s, bound: tuning.batch) > 0 {}
                latches.append(latch)
            case .stop:
                keepRunning = false
            }
        }
        queued.removeAll()
        for latch in latches { latch.open() }
        if !keepRunning {
            // Nothing is sent after stop (the pool stops a poller only when its last session left); drop what is left.
            for s in sessions {
                s.cqs.removeAll()
                s.qps.removeAll()
                s.srqs.removeAll()
            }
            sessions.removeAll()
        }
        return keepRunning
    }

    // MARK: - Serving one session

    private func serveReceives(_ s: DataPathSession, bound: Int) -> Int {
        var work = 0
        let qps = s.qps, srqs = s.srqs
        for i in 0..<qps.count where qps[i].receive != nil { work &+= drainQPReceive(qps[i], s, bound: bound) }
        for i in 0..<srqs.count { work &+= drainSRQ(srqs[i], s, bound: bound) }
        return work
    }

    private func serveSends(_ s: DataPathSession, bound: Int) -> Int {
        var work = 0
        let qps = s.qps
        for i in 0..<qps.count { work &+= drainSend(qps[i], s, bound: bound) }
        return work
    }

    private func serveCompletions(_ s: DataPathSession, bound: Int) -> Int {
        var work = 0
        let cqs = s.cqs
        for i in 0..<cqs.count { work &+= fill(cqs[i], s, bound: bound) }
        return work
    }

    /// Takes up to `bound` send slots and posts them as one batch. A slot that does not decode (or names an AH the
    /// session does not have) completes in error in the send CQ; so do requests the device refused, except ENOMEM
    /// (send queue full), which leaves them in the ring for the next round.
    private func drainSend(_ qp: RingQP, _ s: DataPathSession, bound: Int) -> Int {
        let cq = qp.sendCQ
        // Two-argument mins: the variadic one builds an array.
        let ready = min(min(qp.send.available(), bound), min(batch.capacity, max(0, cq.capacity - cq.pending.count)))
        guard ready > 0 else { return 0 }
        let slotSize = qp.send.memory.slotSize
        batch.reset()
        var consumed = 0
        var blocked = false
        for i in 0..<ready {
            if case .refused(let id) = batch.stageSend(qp.send.slot(i), slotSize: slotSize, ahs: { s.addressHandle($0) }) {
                let left = postSends(qp, s)
                if left > 0 {
                    consumed -= left
                    blocked = true
                    break
                }
                refuse(id, qp: qp.qp.number, opcode: .send, into: cq, s, vendorError: 0)
            }
            consumed = i + 1
        }
        if !blocked { consumed -= postSends(qp, s) }
        qp.send.release(consumed)
        s.posts.add(UInt64(consumed), ordering: .relaxed)
        metrics.posts.increment(by: Int64(consumed))
        return consumed
    }

    /// Posts the staged sends and empties the batch; returns how many the device left unposted because its send queue
    /// is full (ENOMEM: the last ones staged, for the caller to leave in the ring). Other refusals complete in error.
    private func postSends(_ qp: RingQP, _ s: DataPathSession) -> Int {
        guard batch.count > 0 else { return 0 }
        defer { batch.reset() }
        do {
            try qp.qp.postSend(batch.sends, scratch: batch.scratch)
            return 0
        } catch {
            let refusal = PostRefusal(error, staged: batch.count)
            if refusal.outOfMemory { return batch.count - refusal.failed }
            for r in batch.sends[refusal.failed...] {
                refuse(r.id, qp: qp.qp.number, opcode: .send, into: qp.sendCQ, s, vendorError: refusal.vendorError)
            }
            return 0
        }
    }

    private func drainQPReceive(_ qp: RingQP, _ s: DataPathSession, bound: Int) -> Int {
        drainReceive(&qp.receive!, s, bound: bound, errorCQ: qp.receiveCQ, qpNum: qp.qp.number) { try qp.qp.postReceive($0, scratch: $1) }
    }

    private func drainSRQ(_ srq: RingSRQ, _ s: DataPathSession, bound: Int) -> Int {
        drainReceive(&srq.receive, s, bound: bound, errorCQ: srq.errorCQ, qpNum: 0) { try srq.srq.postReceive($0, scratch: $1) }
    }

    /// Takes up to `bound` receive slots and posts them as one batch; refused ones complete in error in `errorCQ`
    /// (ENOMEM leaves them in the ring, as for sends).
    private func drainReceive(_ ring: inout RingConsumer, _ s: DataPathSession, bound: Int, errorCQ: RingCQ?, qpNum: UInt32,
                              post: (UnsafeBufferPointer<BackendReceiveWR>, WorkRequestScratch) throws -> Void) -> Int {
        let room = errorCQ.map { max(0, $0.capacity - $0.pending.count) } ?? bound
        let ready = min(min(ring.available(), bound), min(batch.capacity, room))
        guard ready > 0 else { return 0 }
        let slotSize = ring.memory.slotSize
        batch.reset()
        var consumed = 0
        var blocked = false
        for i in 0..<ready {
            if case .refused(let id) = batch.stageReceive(ring.slot(i), slotSize: slotSize) {
                let left = postReceives(s, errorCQ: errorCQ, qpNum: qpNum, post: post)
                if left > 0 {
                    consumed -= left
                    blocked = true
                    break
                }
                if let cq = errorCQ { refuse(id, qp: qpNum, opcode: .receive, into: cq, s, vendorError: 0) }
            }
            consumed = i + 1
        }
        if !blocked { consumed -= postReceives(s, errorCQ: errorCQ, qpNum: qpNum, post: post) }
        ring.release(consumed)
        s.posts.add(UInt64(consumed), ordering: .relaxed)
        metrics.posts.increment(by: Int64(consumed))
        return consumed
    }

    /// Posts the staged receives and empties the batch; returns how many the queue left unposted because it is full
    /// (ENOMEM: the last ones staged, left in the ring). Other refusals complete in error in `errorCQ`. (A method, not a
    /// local function: a local function capturing a variable costs a heap box per call in unoptimized builds.)
    private func postReceives(_ s: DataPathSession, errorCQ: RingCQ?, qpNum: UInt32,
                              post: (UnsafeBufferPointer<BackendReceiveWR>, WorkRequestScratch) throws -> Void) -> Int {
        guard batch.count > 0 else { return 0 }
        defer { batch.reset() }
        do {
            try post(batch.receives, batch.scratch)
            return 0
        } catch {
            let refusal = PostRefusal(error, staged: batch.count)
            if refusal.outOfMemory { return batch.count - refusal.failed }
            for r in batch.receives[refusal.failed...] {
                if let cq = errorCQ { refuse(r.id, qp: qpNum, opcode: .receive, into: cq, s, vendorError: refusal.vendorError) }
            }
            return 0
        }
    }

    /// Queues the error completion of a refused slot (IBV_WC_LOC_QP_OP_ERR, as verbs reports a request it could not
    /// execute), for this session's CQ only.
    private func refuse(_ id: UInt64, qp: UInt32, opcode: FFProtocol.WCOpcode, into cq: RingCQ, _ s: DataPathSession, vendorError: UInt32) {
        cq.pending.append(FFProtocol.WorkCompletion(wrID: id, status: .localQPOperationError, opcode: opcode, vendorError: vendorError, qpNum: qp))
        s.refused.add(1, ordering: .relaxed)
        metrics.refused.increment()
    }

    /// Moves refused slots' completions, then up to `bound` real completions, into the CQ's ring; publishes them, then
    /// raises the client's event if it armed the CQ.
    private func fill(_ cq: RingCQ, _ s: DataPathSession, bound: Int) -> Int {
        var produced = 0
        if !cq.pending.isEmpty {
            var moved = 0
            while moved < cq.pending.count, let slot = cq.producer.reserve() {
                RingSlots.writeCompletion(slot, cq.pending[moved])
                cq.producer.advance()
                moved += 1
            }
            cq.pending.removeFirst(moved)
            produced += moved
        }
        let room = min(cq.producer.freeSlots(), min(bound, batch.capacity))
        if room > 0, let n = try? cq.cq.poll(into: UnsafeMutableBufferPointer(rebasing: batch.completions[0..<room]), scratch: batch.scratch) {
            let polled = batch.completions
            for i in 0..<n {
                guard let slot = cq.producer.reserve() else { break }
                RingSlots.writeCompletion(slot, polled[i])
                cq.producer.advance()
            }
            produced += n
        }
        guard produced > 0 else { return 0 }
        cq.producer.publish()
        s.completions.add(UInt64(produced), ordering: .relaxed)
        metrics.completions.increment(by: Int64(produced))
        if cq.notify.exchange(0, ordering: .acquiringAndReleasing) != 0 { cq.forwarder?.forward(cq.handle) }
        return produced
    }
}

/// CLOCK_MONOTONIC in nanoseconds: a vDSO read where the clocksource allows one, a system call otherwise (the lab guest).
enum DataPathClock {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// How a device refused a batch post: the first request it did not take (`bad_wr`, clamped to the batch), whether it
/// was ENOMEM (a full queue: the rest stays in the ring), and the errno to report as the vendor error otherwise.
private struct PostRefusal {
    let failed: Int
    let outOfMemory: Bool
    let vendorError: UInt32

    init(_ error: any Error, staged: Int) {
        let verbs = error as? VerbsError
        failed = min(max(0, verbs?.failedWorkRequest ?? 0), staged)
        outOfMemory = verbs?.errno == Errno.outOfMemory
        vendorError = UInt32(clamping: verbs?.errno ?? Errno.invalidArgument)
    }
}
