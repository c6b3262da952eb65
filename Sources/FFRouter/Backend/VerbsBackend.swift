import FFProtocol
import FFSystem
import Verbs

/// The verbs a router runs for its sessions on one device port. `DeviceBackend` is the real device; `FakeBackend`
/// (module FFFakeDevice, outside the router's) is an in-memory device (objects, a QP state machine, loopback data
/// movement) so that the router's session logic runs under `swift test` on a machine without RDMA. Everything here
/// is public so that a backend can live in another module. Sessions validate every client value before calling in
/// here: a backend may assume arguments that fit the device's limits (`limits`) and reports refusals as `VerbsError`.
public protocol VerbsBackend: AnyObject, Sendable {
    /// Device name (`rxe0`, or the fake's name).
    var deviceName: String { get }
    /// The node's IP: its RoCEv2 GID is the source of every translated address vector.
    var nodeIP: IPv4Address { get }
    /// GID table index of `nodeIP` on the served port.
    var gidIndex: Int { get }
    /// The physical port served (1-based).
    var port: UInt8 { get }
    /// What the device can do; sessions check client values against it before any verbs call.
    var limits: DeviceLimits { get }
    /// Who touches registered memory: sessions seal a client's memfd against shrinking before mapping it for a
    /// backend whose own code reads and writes it (docs/router.md "Client memory").
    var memoryAccess: BackendMemoryAccess { get }
    /// The device as a pod with `vip` sees it (docs/router.md "What a pod sees").
    func virtualAttributes(vip: IPv4Address) -> FFProtocol.DeviceAttributes
    /// The served port, as a pod sees it (one GID, no LIDs).
    func virtualPort() throws -> FFProtocol.PortAttributes
    /// Whether the port can carry traffic, and a line saying its state.
    func portHealth() -> (active: Bool, detail: String)
    /// `ibv_alloc_pd`.
    func allocatePD() throws -> any BackendPD
    /// `ibv_create_comp_channel`.
    func createCompletionChannel() throws -> any BackendCompletionChannel
    /// `ibv_create_cq` with at least `entries` entries, reporting to `channel`.
    func createCQ(entries: Int32, channel: (any BackendCompletionChannel)?, vector: Int32) throws -> any BackendCQ
}

/// Who reads and writes the pages of a registered memory region.
public enum BackendMemoryAccess: Sendable, Equatable {
    /// Only the device, through the pages it pinned at registration: a client that truncates its memfd takes the
    /// pages out of its own view, not the device's, and the router's code never touches them.
    case deviceOnly
    /// The backend's own code, through the router's mapping (the fake device's copies): a page cut off the file
    /// would raise SIGBUS in the router, so every memfd is sealed against shrinking (F_SEAL_SHRINK) at reg_mr, and
    /// one that cannot be sealed is refused.
    case routerCopies
}

/// The device maxima a session validates client values against (`ibv_query_device`, clamped to what the wire carries).
public struct DeviceLimits: Sendable, Equatable {
    /// Largest memory region.
    public var maxMRSize: UInt64
    /// Entries of the largest CQ.
    public var maxCQE: Int32
    /// Depth of the largest send or receive queue.
    public var maxQPWR: UInt32
    /// Scatter/gather entries per work request.
    public var maxSGE: UInt32
    /// Depth of the largest SRQ.
    public var maxSRQWR: UInt32
    /// Scatter/gather entries per SRQ work request.
    public var maxSRQSGE: UInt32
    /// Largest inline payload a QP may ask for.
    public var maxInlineData: UInt32
    /// Completion vectors (`ibv_context.num_comp_vectors`): valid `comp_vector` values are 0..<this.
    public var completionVectors: Int32

    /// Limits with every field given.
    public init(maxMRSize: UInt64, maxCQE: Int32, maxQPWR: UInt32, maxSGE: UInt32, maxSRQWR: UInt32, maxSRQSGE: UInt32,
                maxInlineData: UInt32, completionVectors: Int32) {
        self.maxMRSize = maxMRSize
        self.maxCQE = maxCQE
        self.maxQPWR = maxQPWR
        self.maxSGE = maxSGE
        self.maxSRQWR = maxSRQWR
        self.maxSRQSGE = maxSRQSGE
        self.maxInlineData = maxInlineData
        self.completionVectors = completionVectors
    }
}

/// A protection domain.
public protocol BackendPD: AnyObject {
    /// `ibv_reg_mr_iova` of `region` (router memory mapped from the client's memfd) at the client's address `iova`;
    /// the MR keeps `keepAlive` (the mapping) alive.
    func registerMemory(_ region: UnsafeMutableRawBufferPointer, iova: UInt64, access: Verbs.AccessFlags,
                        keepAlive: MemoryMapping) throws -> any BackendMR
    /// `ibv_create_qp`.
    func createQP(_ configuration: BackendQPConfiguration) throws -> any BackendQP
    /// `ibv_create_srq`.
    func createSRQ(maxWorkRequests: UInt32, maxSGE: UInt32) throws -> any BackendSRQ
    /// `ibv_create_ah` with a physical address vector.
    func createAH(_ address: AddressVector) throws -> any BackendAH
}

/// A registered memory region.
public protocol BackendMR: AnyObject {
    /// Local key.
    var lkey: UInt32 { get }
    /// Remote key.
    var rkey: UInt32 { get }
}

/// A completion channel. Events are read without blocking a thread.
public protocol BackendCompletionChannel: AnyObject, Sendable {
    /// Waits for the next event and returns the `eventID` of the CQ it is for; throws when the channel is closed or the
    /// task cancelled.
    func nextEvent() async throws -> UInt
    /// A descriptor that is readable while events are pending, for a thread that waits in poll(2) itself and then
    /// calls `takePendingEvents`; nil when events come only through `nextEvent` (the fake device). Asking for it
    /// makes the channel non-blocking: use one way or the other for a channel, not both.
    func pollDescriptor() throws -> Int32?
    /// Takes every pending event without blocking, calling `each` with the `eventID` of the CQ it is for; how many.
    func takePendingEvents(_ each: (UInt) -> Void) throws -> Int
}

extension BackendCompletionChannel {
    /// No descriptor: events come through `nextEvent` only.
    public func pollDescriptor() throws -> Int32? { nil }
    /// Nothing to take without a descriptor.
    public func takePendingEvents(_ each: (UInt) -> Void) throws -> Int { 0 }
}

/// A completion queue.
public protocol BackendCQ: AnyObject {
    /// Entries granted.
    var capacity: Int32 { get }
    /// What the CQ's channel events name it by.
    var eventID: UInt { get }
    /// `ibv_req_notify_cq`.
    func requestNotification(solicitedOnly: Bool) throws
    /// `ibv_poll_cq` for at most `completions.count` completions (and at most `scratch.capacity`), as the wire carries
    /// them, into `completions`; returns how many. The data path's poll: it allocates nothing.
    func poll(into completions: UnsafeMutableBufferPointer<FFProtocol.WorkCompletion>, scratch: WorkRequestScratch) throws -> Int
}

extension BackendCQ {
    /// `ibv_poll_cq` for at most `max` completions, as the wire carries them (the socket path's poll).
    func poll(max: Int32) throws -> [FFProtocol.WorkCompletion] {
        guard max > 0 else { throw VerbsError(operation: "ibv_poll_cq", errno: Errno.invalidArgument, detail: "poll for \(max)") }
        let scratch = WorkRequestScratch(capacity: Int(max), sgeCapacity: 1)
        var out = [FFProtocol.WorkCompletion](repeating: FFProtocol.WorkCompletion(wrID: 0, status: .success, opcode: .send), count: scratch.capacity)
        let n = try out.withUnsafeMutableBufferPointer { try poll(into: $0, scratch: scratch) }
        out.removeLast(out.count - n)
        return out
    }
}

/// What a QP is created with.
public struct BackendQPConfiguration {
    /// Transport.
    public var type: Verbs.QPType
    /// Send CQ.
    public var sendCQ: any BackendCQ
    /// Receive CQ.
    public var receiveCQ: any BackendCQ
    /// Shared receive queue, if any.
    public var sharedReceiveQueue: (any BackendSRQ)?
    /// Queue depths, SGEs and inline size asked for.
    public var capabilities: Verbs.QPCapabilities
    /// Every send completes (`sq_sig_all`).
    public var signalAll: Bool

    /// A configuration with every field given.
    public init(type: Verbs.QPType, sendCQ: any BackendCQ, receiveCQ: any BackendCQ, sharedReceiveQueue: (any BackendSRQ)?,
                capabilities: Verbs.QPCapabilities, signalAll: Bool) {
        self.type = type
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.sharedReceiveQueue = sharedReceiveQueue
        self.capabilities = capabilities
        self.signalAll = signalAll
    }
}

/// A send work request with its address handle resolved to the session's backend object, its SGEs in `SGEs`: an array
/// on the socket path (`BackendSendRequest`), a buffer in the poller's memory on the data path (`BackendSendWR`, valid
/// for the duration of the post, so a batch of them costs no allocation).
public struct BackendSend<SGEs: RandomAccessCollection> where SGEs.Element == ScatterGatherElement, SGEs.Index == Int {
    /// `wr_id`.
    public var id: UInt64
    /// Opcode and its operands.
    public var operation: SendOperation
    /// Local buffers (client addresses and lkeys; an inline payload is one SGE of router memory with lkey 0).
    public var scatterGather: SGEs
    /// `send_flags`.
    public var flags: Verbs.SendFlags
    /// UD destination: address handle, remote QPN and Q_Key.
    public var addressHandle: (any BackendAH)?
    /// UD remote QP number.
    public var remoteQPN: UInt32
    /// UD remote Q_Key.
    public var remoteQKey: UInt32

    /// A request with every field given.
    public init(id: UInt64, operation: SendOperation, scatterGather: SGEs, flags: Verbs.SendFlags,
                addressHandle: (any BackendAH)?, remoteQPN: UInt32, remoteQKey: UInt32) {
        self.id = id
        self.operation = operation
        self.scatterGather = scatterGather
        self.flags = flags
        self.addressHandle = addressHandle
        self.remoteQPN = remoteQPN
        self.remoteQKey = remoteQKey
    }
}

/// A send as the socket path builds it.
public typealias BackendSendRequest = BackendSend<[ScatterGatherElement]>
/// A send as the data path stages it.
public typealias BackendSendWR = BackendSend<UnsafeBufferPointer<ScatterGatherElement>>

/// A receive work request with its SGEs in the caller's memory (the data path's form).
public struct BackendReceiveWR {
    /// `wr_id`.
    public var id: UInt64
    /// Buffers to fill, in order.
    public var scatterGather: UnsafeBufferPointer<ScatterGatherElement>

    /// A request `id` over `scatterGather`.
    public init(id: UInt64, scatterGather: UnsafeBufferPointer<ScatterGatherElement>) {
        self.id = id
        self.scatterGather = scatterGather
    }
}

/// A queue pair.
public protocol BackendQP: AnyObject {
    /// QP number.
    var number: UInt32 { get }
    /// Transport.
    var type: Verbs.QPType { get }
    /// Capabilities granted.
    var capabilities: Verbs.QPCapabilities { get }
    /// `ibv_modify_qp` with the attributes set in `attributes`.
    func modify(_ attributes: Verbs.QPAttributes) throws
    /// The current state (`ibv_query_qp`).
    func state() throws -> Verbs.QPState
    /// `ibv_post_send` of `requests` as one list, built in `scratch` if the backend needs C work requests; a refusal is
    /// a `VerbsError` naming the failed request's index. The data path's post: it allocates nothing unless it fails.
    func postSend(_ requests: UnsafeBufferPointer<BackendSendWR>, scratch: WorkRequestScratch) throws
    /// `ibv_post_recv` of `requests` as one list, as `postSend`.
    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws
}

extension BackendQP {
    /// `ibv_post_send` of request values (the socket path's post): laid out in temporary memory, then posted as one list.
    func postSend(_ requests: [BackendSendRequest]) throws {
        try laidOut(requests, sges: \.scatterGather, as: { r, list in
            BackendSendWR(id: r.id, operation: r.operation, scatterGather: list, flags: r.flags, addressHandle: r.addressHandle,
                          remoteQPN: r.remoteQPN, remoteQKey: r.remoteQKey)
        }) { try postSend($0, scratch: $1) }
    }

    /// `ibv_post_recv` of request values (the socket path's post).
    func postReceive(_ requests: [Verbs.ReceiveWorkRequest]) throws {
        try laidOut(requests, sges: \.scatterGather, as: BackendReceiveWR.init(_:over:)) { try postReceive($0, scratch: $1) }
    }
}

extension BackendReceiveWR {
    /// `request` over `list`, its SGEs laid out by the caller.
    fileprivate init(_ request: Verbs.ReceiveWorkRequest, over list: UnsafeBufferPointer<ScatterGatherElement>) {
        self.init(id: request.id, scatterGather: list)
    }
}

/// Runs `body` with `requests` laid out in temporary memory as data-path requests (`make` builds one over its slice of
/// the SGEs, which lie side by side), and a scratch that fits them: how the socket path's request values reach the
/// backend's one post.
private func laidOut<Request, WR>(_ requests: [Request], sges: (Request) -> [ScatterGatherElement],
                                  as make: (Request, UnsafeBufferPointer<ScatterGatherElement>) -> WR,
                                  _ body: (UnsafeBufferPointer<WR>, WorkRequestScratch) throws -> Void) throws {
    let all = requests.flatMap(sges)
    try all.withUnsafeBufferPointer { buffer in
        var next = 0
        let wrs = requests.map { r in
            let count = sges(r).count
            defer { next += count }
            return make(r, UnsafeBufferPointer(rebasing: buffer[next..<(next + count)]))
        }
        try wrs.withUnsafeBufferPointer { try body($0, WorkRequestScratch(capacity: wrs.count, sgeCapacity: buffer.count)) }
    }
}

/// A shared receive queue.
public protocol BackendSRQ: AnyObject {
    /// Depth granted.
    var maxWorkRequests: UInt32 { get }
    /// SGEs per request granted.
    var maxSGE: UInt32 { get }
    /// `ibv_modify_srq` of the limit.
    func setLimit(_ limit: UInt32) throws
    /// `ibv_post_srq_recv` of `requests` as one list, as `BackendQP.postSend`.
    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws
}

extension BackendSRQ {
    /// `ibv_post_srq_recv` of request values (the socket path's post).
    func postReceive(_ requests: [Verbs.ReceiveWorkRequest]) throws {
        try laidOut(requests, sges: \.scatterGather, as: BackendReceiveWR.init(_:over:)) { try postReceive($0, scratch: $1) }
    }
}

/// An address handle.
public protocol BackendAH: AnyObject {}
