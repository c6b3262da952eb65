import FFProtocol
import FFSystem

/// The session thread's side of a session granted the fast path: it makes each CQ, QP and SRQ's rings when the object
/// is created, hands them to the session's poller, answers map_ring, and takes objects back from the poller before
/// the session destroys them (docs/router.md "Data path"). Used by the session thread only.
final class SessionDataPath {
    let shared: DataPathSession
    let poller: DataPathPoller
    private let pool: DataPath
    private var cqs: [UInt32: RingCQ] = [:]
    private var qps: [UInt32: RingQP] = [:]
    private var srqs: [UInt32: RingSRQ] = [:]
    private var closed = false
    /// Ring memfds created and not yet taken by the client: router descriptors, bounded by `--max-descriptors`.
    private var unmapped = 0
    private let maxUnmapped: Int

    /// Joins a poller of `pool` for session `id`, which may hold `maxUnmapped` ring memfds the client has not mapped.
    init(pool: DataPath, session id: UInt64, maxUnmapped: Int) throws {
        self.pool = pool
        self.maxUnmapped = maxUnmapped
        shared = try DataPathSession(id: id)
        poller = try pool.join(shared)
    }

    /// The completion channel every CQ of this session reports to: the poller's, so that a completion wakes it.
    var channel: any BackendCompletionChannel { poller.channel }

    /// Refuses a new ring mapping while the client leaves too many unmapped (each holds a router descriptor).
    private func reserveDescriptor() throws {
        guard unmapped < maxUnmapped else {
            throw ErrorReply(errno: Errno.tooManyDescriptors,
                             reason: "\(unmapped) ring mappings not yet mapped by the client hold router descriptors (ffrouter --max-descriptors)")
        }
        unmapped += 1
    }

    private func release(_ mapping: RingMapping) { if !mapping.mapped { unmapped -= 1 } }

    /// Rings for a new CQ, handed to the poller.
    func addCQ(_ handle: CQHandle, cq: any BackendCQ, forwarder: CompletionForwarder?) throws {
        try reserveDescriptor()
        let ring: RingCQ
        do { ring = try RingCQ(handle: handle, cq: cq, forwarder: forwarder) } catch { unmapped -= 1; throw error }
        cqs[handle.rawValue] = ring
        poller.send(.addCQ(shared, ring))
    }

    /// Rings for a new QP (its CQs were created by this session, so they have rings).
    func addQP(_ handle: QPHandle, qp: any BackendQP, sendCQ: UInt32, receiveCQ: UInt32, srq: UInt32?) throws {
        guard let send = cqs[sendCQ], let receive = cqs[receiveCQ] else {
            throw ErrorReply(errno: Errno.badHandle, reason: "the QP's CQs have no rings")
        }
        try reserveDescriptor()
        let ring: RingQP
        do { ring = try RingQP(handle: handle, qp: qp, sendCQ: send, receiveCQ: receive, hasSRQ: srq != nil) } catch { unmapped -= 1; throw error }
        if let srq, let shared = srqs[srq], shared.errorCQ == nil { shared.errorCQ = receive }
        qps[handle.rawValue] = ring
        poller.send(.addQP(shared, ring))
    }

    /// A ring for a new SRQ.
    func addSRQ(_ handle: SRQHandle, srq: any BackendSRQ) throws {
        try reserveDescriptor()
        let ring: RingSRQ
        do { ring = try RingSRQ(handle: handle, srq: srq) } catch { unmapped -= 1; throw error }
        srqs[handle.rawValue] = ring
        poller.send(.addSRQ(shared, ring))
    }

    /// Takes the CQ back from the poller (it stops touching it before this returns).
    func removeCQ(_ handle: UInt32) {
        guard let ring = cqs.removeValue(forKey: handle) else { return }
        release(ring.mapping)
        poller.perform { .removeCQ(shared, ring, $0) }
    }

    /// Takes the QP back from the poller.
    func removeQP(_ handle: UInt32) {
        guard let ring = qps.removeValue(forKey: handle) else { return }
        release(ring.mapping)
        poller.perform { .removeQP(shared, ring, $0) }
    }

    /// Takes the SRQ back from the poller.
    func removeSRQ(_ handle: UInt32) {
        guard let ring = srqs.removeValue(forKey: handle) else { return }
        release(ring.mapping)
        poller.perform { .removeSRQ(shared, ring, $0) }
    }

    /// Has the poller post everything already in the QP's rings, so a control call that follows sees them posted.
    func flushQP(_ handle: UInt32) {
        guard let ring = qps[handle] else { return }
        poller.perform { .flushQP(shared, ring, $0) }
    }

    /// Arms the client's event for the CQ: raised by the poller after the next completion it puts in the ring.
    func requestNotification(_ handle: UInt32, solicitedOnly: Bool) {
        cqs[handle]?.notify.store(solicitedOnly ? 2 : 1, ordering: .releasing)
    }

    /// Keeps the poller's AH table current.
    func setAH(_ handle: UInt32, _ ah: (any BackendAH)?) {
        let entry = ah.map { DataPathSession.AH(ah: $0) }
        shared.ahs.withLock { $0[handle] = entry }
    }

    /// map_ring: the object's memfd (or the doorbell), once.
    func map(_ request: MapRingRequest) throws -> Answer<MapRingReply> {
        let mapping: RingMapping
        switch request.target {
        case .doorbell:
            return Answer(body: MapRingReply(size: 0), descriptors: [try shared.takeDoorbell()])
        case .cq:
            guard let ring = cqs[request.handle] else { throw Self.badHandle("CQ", request.handle) }
            mapping = ring.mapping
        case .qp:
            guard let ring = qps[request.handle] else { throw Self.badHandle("QP", request.handle) }
            mapping = ring.mapping
        case .srq:
            guard let ring = srqs[request.handle] else { throw Self.badHandle("SRQ", request.handle) }
            mapping = ring.mapping
        }
        let descriptor = try mapping.takeDescriptor()
        unmapped -= 1
        // Once sent, the router needs only its mapping: the client holds the memfd.
        return Answer(body: MapRingReply(size: UInt64(mapping.memory.bytes.count)), descriptors: [descriptor.rawValue],
                      afterSend: { descriptor.close() })
    }

    /// Leaves the poller: afterwards it touches none of this session's objects, and the session may destroy them.
    func close() {
        guard !closed else { return }
        closed = true
        pool.leave(shared, from: poller)
        cqs.removeAll()
        qps.removeAll()
        srqs.removeAll()
    }

    deinit { close() }

    private static func badHandle(_ kind: String, _ value: UInt32) -> ErrorReply {
        ErrorReply(errno: Errno.badHandle, reason: "no \(kind) \(value) in this session")
    }
}
