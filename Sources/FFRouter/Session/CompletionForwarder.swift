import FFProtocol
import FFSystem
import Synchronization

/// A client's completion channel. The router owns the real channel; the client gets one end of a socket
/// pair and reads one 8-byte `CompletionEvent` (its CQ handle) per event, which this forwarder writes after
/// taking and acknowledging the real event (ibv_get_cq_event(3), ibv_ack_cq_events(3)).
final class CompletionForwarder: Sendable {
    let channel: any BackendCompletionChannel
    /// The end the client reads; sent to it once with SCM_RIGHTS, then closed here.
    let clientEnd: SeqPacketSocket
    private let routerEnd: SeqPacketSocket
    private let handles = Mutex<[UInt: CQHandle]>([:])
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(backend: any VerbsBackend) throws {
        channel = try backend.createCompletionChannel()
        (routerEnd, clientEnd) = try SeqPacketSocket.pair()
    }

    /// Starts forwarding events.
    func start() {
        // The task holds the forwarder until `stop()` cancels it. It alone closes the router's end, after its last send,
        // so the descriptor number can never be reused under a send still in flight.
        let forwarding = Task { [self] in
            defer { routerEnd.close() }
            while !Task.isCancelled {
                guard let id = try? await channel.nextEvent() else { return }
                guard let handle = handles.withLock({ $0[id] }), let record = try? CompletionEvent(cq: handle).encode() else { continue }
                // A client that stopped reading loses events rather than stalling the router.
                try? routerEnd.send(record, waitMilliseconds: 0)
            }
        }
        task.withLock { $0 = forwarding }
    }

    /// Reports `cq`'s events as `handle`.
    func attach(_ cq: any BackendCQ, as handle: CQHandle) { handles.withLock { $0[cq.eventID] = handle } }

    /// Delivers one event for `handle` now: the data path's CQs, whose events the poller raises itself once the
    /// completions are in the client's ring. Never blocks (a client that stopped reading loses the event).
    func forward(_ handle: CQHandle) {
        guard let record = try? CompletionEvent(cq: handle).encode() else { return }
        try? routerEnd.send(record, waitMilliseconds: 0)
    }

    /// Stops reporting `cq`.
    func detach(_ cq: any BackendCQ) { handles.withLock { $0[cq.eventID] = nil } }

    /// Stops forwarding; the task closes the router's end when it has ended.
    func stop() {
        task.withLock { $0?.cancel(); $0 = nil }
    }
}
