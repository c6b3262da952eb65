import FFProtocol
import FFSystem
import Synchronization
import Verbs

/// A sealed memfd with a control page and the rings of one object, created by the session thread and read and
/// written by the poller. The client gets the memfd once (map_ring); the router keeps only its mapping.
final class RingMapping: @unchecked Sendable {
    // @unchecked: `memory` is immutable; the rings inside follow the producer/consumer discipline.
    let memory: SharedMemory
    let rings: [RingDescriptor]
    let sleep: RingSleepFlag
    private let handedOut = Atomic<Bool>(false)

    init(name: String, rings requested: [(capacity: Int, slotSize: Int, kind: RingKind)]) throws {
        guard let plan = RingMapLayout.plan(requested) else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "no ring layout for \(requested.map { "\($0.capacity)×\($0.slotSize)" })")
        }
        memory = try SharedMemory(name: name, size: plan.size, sealed: true)
        RingMapLayout.writeControl(memory.bytes.baseAddress!, rings: plan.rings, size: memory.bytes.count)
        rings = plan.rings
        sleep = RingSleepFlag(base: memory.bytes.baseAddress!)
    }

    func ring(_ i: Int) -> RingMemory { RingMemory(base: memory.bytes.baseAddress!, rings[i]) }

    /// Whether the client took the memfd (until then the router holds its descriptor).
    var mapped: Bool { handedOut.load(ordering: .acquiring) }

    /// The memfd to send, the first time only (a second map_ring of the same object is EINVAL).
    func takeDescriptor() throws -> OwnedDescriptor {
        guard !handedOut.exchange(true, ordering: .acquiringAndReleasing) else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "the rings of this object were mapped already")
        }
        return memory.descriptor
    }
}

/// A CQ served by its ring: the poller moves the real CQ's completions (and the error completions of slots it
/// refused) into the client's completion ring and delivers the client's channel events after them.
final class RingCQ: @unchecked Sendable {
    // @unchecked: `producer` and `pending` are the poller's alone; `notify` is atomic; the rest is immutable.
    let handle: CQHandle
    let cq: any BackendCQ
    let mapping: RingMapping
    let forwarder: CompletionForwarder?
    @exclusivity(unchecked) var producer: RingProducer
    /// Error completions made by the router for refused slots, waiting for ring space (at most the ring's size).
    @exclusivity(unchecked) var pending: [FFProtocol.WorkCompletion] = []
    /// 0: not armed; 1: the next completion raises an event; 2: solicited only (treated as any: the ring does not
    /// carry the solicited bit, and a spurious event is allowed by ibv_get_cq_event(3)).
    let notify = Atomic<UInt8>(0)
    /// The poller armed the real CQ and has not taken its event since: it needs no new `ibv_req_notify_cq` before the
    /// poller sleeps (only tracked where the poller reads its channel itself).
    @exclusivity(unchecked) var armed = false

    init(handle: CQHandle, cq: any BackendCQ, forwarder: CompletionForwarder?) throws {
        self.handle = handle
        self.cq = cq
        self.forwarder = forwarder
        let capacity = RingLayout.capacity(for: Int(max(1, cq.capacity))) ?? RingLayout.maxCapacity
        mapping = try RingMapping(name: "ffrouter-cq-\(handle.rawValue)", rings: [(capacity, RingSlots.completionSlotSize, .completion)])
        producer = RingProducer(mapping.ring(0))
    }

    var capacity: Int { producer.memory.capacity }
}

/// A QP served by its rings: the poller drains the send ring (and the receive ring, without an SRQ) into the QP.
final class RingQP: @unchecked Sendable {
    // @unchecked: the consumers are the poller's alone; the rest is immutable.
    let handle: QPHandle
    let qp: any BackendQP
    let sendCQ: RingCQ
    let receiveCQ: RingCQ
    let mapping: RingMapping
    @exclusivity(unchecked) var send: RingConsumer
    @exclusivity(unchecked) var receive: RingConsumer?

    init(handle: QPHandle, qp: any BackendQP, sendCQ: RingCQ, receiveCQ: RingCQ, hasSRQ: Bool) throws {
        self.handle = handle
        self.qp = qp
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        let caps = qp.capabilities
        let sendCapacity = RingLayout.capacity(for: Int(max(1, caps.maxSendWorkRequests))) ?? RingLayout.maxCapacity
        var rings: [(capacity: Int, slotSize: Int, kind: RingKind)] = [
            (sendCapacity, RingSlots.sendSlotSize(maxSGE: Int(caps.maxSendSGE), maxInline: Int(caps.maxInlineData)), .send),
        ]
        if !hasSRQ {
            let receiveCapacity = RingLayout.capacity(for: Int(max(1, caps.maxReceiveWorkRequests))) ?? RingLayout.maxCapacity
            rings.append((receiveCapacity, RingSlots.receiveSlotSize(maxSGE: Int(caps.maxReceiveSGE)), .receive))
        }
        mapping = try RingMapping(name: "ffrouter-qp-\(handle.rawValue)", rings: rings)
        send = RingConsumer(mapping.ring(0))
        receive = hasSRQ ? nil : RingConsumer(mapping.ring(1))
    }
}

/// An SRQ served by its receive ring.
final class RingSRQ: @unchecked Sendable {
    // @unchecked: the consumer is the poller's alone; the rest is immutable.
    let handle: SRQHandle
    let srq: any BackendSRQ
    let mapping: RingMapping
    @exclusivity(unchecked) var receive: RingConsumer
    /// Where a refused receive slot's error completion goes: the receive CQ of the first QP attached to the SRQ.
    weak var errorCQ: RingCQ?

    init(handle: SRQHandle, srq: any BackendSRQ) throws {
        self.handle = handle
        self.srq = srq
        let capacity = RingLayout.capacity(for: Int(max(1, srq.maxWorkRequests))) ?? RingLayout.maxCapacity
        mapping = try RingMapping(name: "ffrouter-srq-\(handle.rawValue)",
                                  rings: [(capacity, RingSlots.receiveSlotSize(maxSGE: Int(srq.maxSGE)), .receive)])
        receive = RingConsumer(mapping.ring(0))
    }
}

/// One session's fast-path state as its poller sees it: the objects it serves and the client's doorbell. The session
/// thread creates objects and hands them over with commands; only the poller walks these lists.
final class DataPathSession: @unchecked Sendable {
    // @unchecked: the lists are the poller's alone (changed by its commands); `ahs` is behind a mutex; counters atomic.
    let id: UInt64
    /// The eventfd the client writes when it posts to a sleeping poller.
    let doorbell: WakeEvent
    @exclusivity(unchecked) var cqs: [RingCQ] = []
    @exclusivity(unchecked) var qps: [RingQP] = []
    @exclusivity(unchecked) var srqs: [RingSRQ] = []
    /// An address handle as the table holds it.
    struct AH: @unchecked Sendable {
        // @unchecked: backend AHs are immutable once created.
        let ah: any BackendAH
    }

    /// Address handles UD sends name, kept current by the session thread.
    let ahs = Mutex<[UInt32: AH]>([:])

    /// The backend AH of the session's handle, if it has one (a UD send slot names it).
    func addressHandle(_ handle: UInt32) -> (any BackendAH)? { ahs.withLock { $0[handle]?.ah } }
    /// Slots taken from this session's rings.
    let posts = Atomic<UInt64>(0)
    /// Completions written into this session's rings.
    let completions = Atomic<UInt64>(0)
    /// Slots refused (malformed, unknown AH, or the device refused the post): each became an error completion.
    let refused = Atomic<UInt64>(0)
    /// Doorbells the client rang.
    let doorbells = Atomic<UInt64>(0)
    private let doorbellHandedOut = Atomic<Bool>(false)

    init(id: UInt64) throws {
        self.id = id
        doorbell = try WakeEvent()
    }

    /// The doorbell descriptor to send, the first time only.
    func takeDoorbell() throws -> Int32 {
        guard !doorbellHandedOut.exchange(true, ordering: .acquiringAndReleasing) else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "the doorbell was mapped already")
        }
        return doorbell.descriptor
    }
}
