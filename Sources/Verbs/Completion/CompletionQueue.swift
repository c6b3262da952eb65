import CVerbs
import FFSystem
#if canImport(Glibc)
import Glibc
#endif

/// A completion channel (`ibv_create_comp_channel(3)`): a file descriptor that becomes readable when an
/// armed CQ gets a completion. Destroyed when the last reference goes; keeps its context alive.
public final class CompletionChannel: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_comp_channel>
    /// The context the channel belongs to.
    public let context: Context

    init(raw: UnsafeMutablePointer<ibv_comp_channel>, context: Context) {
        self.raw = raw
        self.context = context
    }

    deinit { ibv_destroy_comp_channel(raw) }

    /// The event file descriptor; the router passes it to clients with SCM_RIGHTS.
    public var fileDescriptor: Int32 { raw.pointee.fd }

    /// `ibv_get_cq_event(3)`, blocking unless the fd was made non-blocking; the event is acknowledged
    /// at once (ibv_ack_cq_events) so that destroying the CQ never waits for it. Returns the CQ's id.
    public func getEvent() throws(VerbsError) -> CompletionQueue.ID {
        var cq: UnsafeMutablePointer<ibv_cq>?
        var context: UnsafeMutableRawPointer?
        try Call.returnsMinusOne("ibv_get_cq_event") { ibv_get_cq_event(raw, &cq, &context) }
        guard let cq else { throw VerbsError(operation: "ibv_get_cq_event", errno: EIO, detail: "no CQ in event") }
        ibv_ack_cq_events(cq, 1)
        return CompletionQueue.ID(cq)
    }

    /// Makes the descriptor non-blocking, for a thread that polls `fileDescriptor` itself and then calls
    /// `takePendingEvents`.
    public func makeNonBlocking() throws(VerbsError) {
        do {
            try Readiness.setNonBlocking(fileDescriptor)
        } catch {
            throw VerbsError(operation: "fcntl(O_NONBLOCK)", errno: error.errno, detail: "completion channel")
        }
    }

    /// Takes (and acknowledges) every event pending now on a non-blocking channel (`makeNonBlocking`), without
    /// waiting, calling `each` with the CQ of every event; returns how many it took.
    public func takePendingEvents(_ each: (CompletionQueue.ID) -> Void) throws(VerbsError) -> Int {
        var taken = 0
        while let id = try ChannelEvents.pending({ () throws(VerbsError) in try getEvent() }) {
            each(id)
            taken += 1
        }
        return taken
    }

    /// Waits, without blocking a thread, for the next CQ event and returns the id of its CQ.
    public func nextEvent() async throws -> CompletionQueue.ID {
        try await ChannelEvents.next(fd: fileDescriptor, what: "completion channel") { () throws(VerbsError) in
            try getEvent()
        }
    }
}

/// A completion queue (`ibv_create_cq(3)`); destroyed when the last reference goes. Keeps its context
/// and its completion channel alive.
public final class CompletionQueue: @unchecked Sendable {
    /// Identifies a CQ in completion channel events: the address of its `ibv_cq`.
    public struct ID: RawRepresentable, Hashable, Sendable {
        /// The address of the CQ's `struct ibv_cq`.
        public let rawValue: UInt
        /// Wraps an address.
        public init(rawValue: UInt) { self.rawValue = rawValue }
        init(_ cq: UnsafeMutablePointer<ibv_cq>) { rawValue = UInt(bitPattern: cq) }
    }

    let raw: UnsafeMutablePointer<ibv_cq>
    /// The context the CQ belongs to.
    public let context: Context
    /// The channel it reports to, if any.
    public let channel: CompletionChannel?

    init(context: Context, entries: Int, channel: CompletionChannel?, vector: Int) throws(VerbsError) {
        // ibv_create_cq takes C ints: a count or vector that does not fit is the EINVAL the device would give.
        guard let cqe = Int32(exactly: entries), let compVector = Int32(exactly: vector) else {
            throw VerbsError(operation: "ibv_create_cq", errno: EINVAL,
                             detail: "\(entries) entries, vector \(vector) do not fit a C int")
        }
        self.raw = try Call.returnsPointer("ibv_create_cq", detail: "\(entries) entries") {
            ibv_create_cq(context.raw, cqe, nil, channel?.raw, compVector)
        }
        self.context = context
        self.channel = channel
    }

    deinit { ibv_destroy_cq(raw) }

    /// This CQ's id, as completion channel events report it.
    public var id: ID { ID(raw) }
    /// The number of entries the device actually gave (at least what was asked).
    public var capacity: Int { Int(raw.pointee.cqe) }

    /// `ibv_req_notify_cq(3)`: arm the CQ so that its next (solicited) completion raises a channel event.
    public func requestNotification(solicitedOnly: Bool = false) throws(VerbsError) {
        try Call.returnsErrno("ibv_req_notify_cq") { ibv_req_notify_cq(raw, solicitedOnly ? 1 : 0) }
    }

    /// `ibv_poll_cq(3)` for one completion, without allocating; nil when the CQ is empty.
    public func pollOne() throws(VerbsError) -> WorkCompletion? {
        var wc = ibv_wc()
        let n = try Call.returnsCountOrNegative("ibv_poll_cq") { ibv_poll_cq(raw, 1, &wc) }
        return n == 0 ? nil : WorkCompletion(wc)
    }

    /// `ibv_poll_cq(3)` for up to `max` completions.
    public func poll(max: Int = 16) throws(VerbsError) -> [WorkCompletion] {
        guard max > 0, let count = Int32(exactly: max) else {
            throw VerbsError(operation: "ibv_poll_cq", errno: EINVAL, detail: "poll for \(max) completions")
        }
        var wcs = [ibv_wc](repeating: ibv_wc(), count: max)
        let n = try Call.returnsCountOrNegative("ibv_poll_cq") { ibv_poll_cq(raw, count, &wcs) }
        return wcs.prefix(n).map(WorkCompletion.init)
    }
}
