import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// Preallocated C work requests, scatter/gather entries and completions that posts and polls are built in, so that a
/// thread posting and polling in a loop (the router's data-path thread) allocates nothing: `begin()`, fill it with
/// `appendSend` or `appendReceive`, then post it once (`QueuePair.postSend(_:)`, `postReceive(_:)`,
/// `SharedReceiveQueue.postReceive(_:)`); poll into it with `CompletionQueue.poll(into:max:)`. One thread uses a
/// scratch at a time.
public final class WorkRequestScratch: @unchecked Sendable {
    // @unchecked: the buffers are used by one thread at a time (the owner's discipline); they never move.
    /// Work requests (and completions) one post (poll) can hold.
    public let capacity: Int
    /// Scatter/gather entries one post can hold, over all its requests.
    public let sgeCapacity: Int
    let sends: UnsafeMutablePointer<ibv_send_wr>
    let receives: UnsafeMutablePointer<ibv_recv_wr>
    let sges: UnsafeMutablePointer<ibv_sge>
    let completions: UnsafeMutablePointer<ibv_wc>
    /// The UD address handles of the appended sends: the provider reads them during the post, so they stay alive until
    /// it returns (and no longer: a destroyed AH is not kept by a scratch).
    private let handles: UnsafeMutablePointer<AddressHandle?>
    /// Requests appended since the last begin.
    @exclusivity(unchecked) public private(set) var count = 0
    @exclusivity(unchecked) private var sgeCount = 0

    /// Room for `capacity` requests with `sgeCapacity` SGEs in all, and `capacity` completions.
    public init(capacity: Int, sgeCapacity: Int) {
        self.capacity = max(1, capacity)
        self.sgeCapacity = max(1, sgeCapacity)
        sends = .allocate(capacity: self.capacity)
        sends.initialize(repeating: ibv_send_wr(), count: self.capacity)
        receives = .allocate(capacity: self.capacity)
        receives.initialize(repeating: ibv_recv_wr(), count: self.capacity)
        sges = .allocate(capacity: self.sgeCapacity)
        sges.initialize(repeating: ibv_sge(), count: self.sgeCapacity)
        completions = .allocate(capacity: self.capacity)
        completions.initialize(repeating: ibv_wc(), count: self.capacity)
        handles = .allocate(capacity: self.capacity)
        handles.initialize(repeating: nil, count: self.capacity)
    }

    deinit {
        sends.deallocate()
        receives.deallocate()
        sges.deallocate()
        completions.deallocate()
        handles.deinitialize(count: capacity)
        handles.deallocate()
    }

    /// Starts a new list of sends or receives.
    public func begin() {
        dropHandles()
        count = 0
        sgeCount = 0
    }

    private func dropHandles() {
        for i in 0..<count where handles[i] != nil { handles[i] = nil }
    }

    /// Appends a send work request (chained after the previous one); false if the scratch is full.
    public func appendSend(id: UInt64, operation: SendOperation, flags: SendFlags, destination: DatagramDestination?,
                           scatterGather: UnsafeBufferPointer<ScatterGatherElement>) -> Bool {
        guard count < capacity, let list = appendSGEs(scatterGather) else { return false }
        let wr = sends + count
        wr.pointee = ibv_send_wr()
        SendWorkRequest.fill(&wr.pointee, id: id, operation: operation, flags: flags, sgeCount: scatterGather.count,
                             destination: destination)
        wr.pointee.sg_list = list
        if count > 0 { sends[count - 1].next = wr }
        handles[count] = destination?.addressHandle
        count += 1
        return true
    }

    /// Appends a receive work request; false if the scratch is full.
    public func appendReceive(id: UInt64, scatterGather: UnsafeBufferPointer<ScatterGatherElement>) -> Bool {
        guard count < capacity, let list = appendSGEs(scatterGather) else { return false }
        let wr = receives + count
        wr.pointee = ibv_recv_wr()
        wr.pointee.wr_id = id
        wr.pointee.num_sge = Int32(scatterGather.count)
        wr.pointee.sg_list = list
        if count > 0 { receives[count - 1].next = wr }
        count += 1
        return true
    }

    /// Copies `list` after the SGEs already appended; nil if there is no room. An empty list is a null `sg_list`.
    private func appendSGEs(_ list: UnsafeBufferPointer<ScatterGatherElement>) -> UnsafeMutablePointer<ibv_sge>?? {
        guard list.count <= sgeCapacity - sgeCount else { return nil }
        guard !list.isEmpty else { return .some(nil) }
        let start = sges + sgeCount
        // An index loop: for-in's generic iterator allocates in unoptimized builds.
        for i in 0..<list.count {
            start[i] = ibv_sge(addr: list[i].address, length: list[i].length, lkey: list[i].lkey)
        }
        sgeCount += list.count
        return start
    }

    /// Completion `index` of the last poll into this scratch.
    public func completion(_ index: Int) -> WorkCompletion { WorkCompletion(completions[index]) }

    /// Runs a provider post of the appended list; a refusal names the failed request's index.
    func post<WR>(_ list: UnsafeMutablePointer<WR>, operation: String,
                  _ call: (UnsafeMutablePointer<WR>,
                           UnsafeMutablePointer<UnsafeMutablePointer<WR>?>) -> Int32) throws(VerbsError) {
        guard count > 0 else { return }
        defer { dropHandles() }
        var bad: UnsafeMutablePointer<WR>?
        // The index is worked out only when the post failed: the autoclosures run on the failure path alone.
        try Call.returnsErrno(operation, detail: "work request \(bad.map { list.distance(to: $0) } ?? 0) of \(count)",
                              failedWorkRequest: bad.map { list.distance(to: $0) } ?? 0) { call(list, &bad) }
    }
}

extension QueuePair {
    /// `ibv_post_send(3)` of the sends appended to `scratch`, as one chained list; allocates nothing unless it fails.
    public func postSend(_ scratch: WorkRequestScratch) throws(VerbsError) {
        try scratch.post(scratch.sends, operation: "ibv_post_send") { ibv_post_send(raw, $0, $1) }
    }

    /// `ibv_post_recv(3)` of the receives appended to `scratch`; allocates nothing unless it fails.
    public func postReceive(_ scratch: WorkRequestScratch) throws(VerbsError) {
        try scratch.post(scratch.receives, operation: "ibv_post_recv") { ibv_post_recv(raw, $0, $1) }
    }
}

extension SharedReceiveQueue {
    /// `ibv_post_srq_recv(3)` of the receives appended to `scratch`; allocates nothing unless it fails.
    public func postReceive(_ scratch: WorkRequestScratch) throws(VerbsError) {
        try scratch.post(scratch.receives, operation: "ibv_post_srq_recv") { ibv_post_srq_recv(raw, $0, $1) }
    }
}

extension CompletionQueue {
    /// `ibv_poll_cq(3)` for up to `max` completions (at most the scratch's capacity) into `scratch`; read them with
    /// `scratch.completion(_:)`. Allocates nothing unless it fails.
    public func poll(into scratch: WorkRequestScratch, max: Int) throws(VerbsError) -> Int {
        let entries = Int32(clamping: Swift.min(Swift.max(0, max), scratch.capacity))
        return try Call.returnsCountOrNegative("ibv_poll_cq") { ibv_poll_cq(raw, entries, scratch.completions) }
    }
}

extension WorkRequestScratch {
    /// A scratch holding exactly `requests` (one-off posts of request values).
    static func holding(_ requests: [SendWorkRequest]) -> WorkRequestScratch {
        let scratch = WorkRequestScratch(capacity: requests.count,
                                         sgeCapacity: requests.reduce(0) { $0 + $1.scatterGather.count })
        for r in requests {
            _ = r.scatterGather.withUnsafeBufferPointer {
                scratch.appendSend(id: r.id, operation: r.operation, flags: r.flags, destination: r.destination,
                                   scatterGather: $0)
            }
        }
        return scratch
    }

    /// A scratch holding exactly `requests`.
    static func holding(_ requests: [ReceiveWorkRequest]) -> WorkRequestScratch {
        let scratch = WorkRequestScratch(capacity: requests.count,
                                         sgeCapacity: requests.reduce(0) { $0 + $1.scatterGather.count })
        for r in requests {
            _ = r.scatterGather.withUnsafeBufferPointer { scratch.appendReceive(id: r.id, scatterGather: $0) }
        }
        return scratch
    }
}
