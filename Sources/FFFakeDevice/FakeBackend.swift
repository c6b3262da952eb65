import FFProtocol
import FFRouter
import FFSystem
import Foundation
import Verbs

/// An in-memory verbs device for host tests and benchmarks: PDs, MRs over the router's mapping of the client's memfd,
/// CQs with notification and channels, QPs with the RESET→INIT→RTR→RTS state machine and its required attributes,
/// SRQs, AHs, and loopback data movement between any two fake QPs of the same backend (SEND with or without immediate,
/// RDMA WRITE with or without immediate, READ, both atomics; RC, UC and UD). Work completes synchronously inside
/// `postSend`, so a completion is in the CQ when the post returns. `liveObjects` counts what exists, so tests can check
/// that a session left nothing behind.
///
/// It lives outside the router's module and implements the router's public backend protocols (FFRouter's
/// `VerbsBackend` and its objects), in the Verbs value types they speak (`QPAttributes`, `AddressVector`,
/// `ScatterGatherElement`, `VerbsError`), so the production router carries no fake. Its data movement copies bytes
/// through the router's mapping of clients' memfds with the CPU: `memoryAccess` is `.routerCopies`, so sessions seal
/// each memfd against shrinking before it is mapped (docs/router.md "Client memory").
public final class FakeBackend: VerbsBackend, @unchecked Sendable {
    // @unchecked: every mutable field of the fake's objects is guarded by `world.lock`.
    /// Device name.
    public let deviceName: String
    /// Node IP.
    public let nodeIP: IPv4Address
    /// GID index of the node IP.
    public let gidIndex = 1
    /// Served port.
    public let port: UInt8 = 1
    /// Device maxima.
    public let limits: DeviceLimits
    /// The fake copies registered bytes itself, through the router's mapping.
    public let memoryAccess = BackendMemoryAccess.routerCopies
    let world: FakeWorld

    /// A fake device `name` on a node with IP `nodeIP`.
    public init(name: String = "fake0", nodeIP: IPv4Address = IPv4Address("10.0.2.15")!, limits: DeviceLimits = FakeBackend.defaultLimits) {
        deviceName = name
        self.nodeIP = nodeIP
        self.limits = limits
        world = FakeWorld(limits: limits)
    }

    /// rxe-like maxima.
    public static let defaultLimits = DeviceLimits(maxMRSize: 1 << 40, maxCQE: 32767, maxQPWR: 16384, maxSGE: 32, maxSRQWR: 16384,
                                                   maxSRQSGE: 27, maxInlineData: 512, completionVectors: 1)

    /// Live objects by kind (`pd`, `mr`, `comp_channel`, `cq`, `qp`, `srq`, `ah`); kinds with none are absent.
    public var liveObjects: [String: Int] { world.locked { $0.live.filter { $0.value > 0 } } }

    /// All live objects.
    public var liveObjectCount: Int { liveObjects.values.reduce(0, +) }

    /// Whether the port is active; tests turn it off to see health fail.
    public var portActive: Bool {
        get { world.locked { $0.portActive } }
        set { world.locked { $0.portActive = newValue } }
    }

    /// Called inside `registerMemory` before it returns, with the region's length; tests use it to hold a registration
    /// in progress (as pinning a large buffer would).
    public var onRegisterMemory: (@Sendable (Int) -> Void)? {
        get { world.locked { $0.onRegister } }
        set { world.locked { $0.onRegister = newValue } }
    }

    /// The device as a pod sees it.
    public func virtualAttributes(vip: IPv4Address) -> FFProtocol.DeviceAttributes {
        var real = FFProtocol.DeviceAttributes()
        real.firmwareVersion = "freeflow-1"
        real.nodeGUID = VirtualDevice.guid(vip: vip)
        real.systemImageGUID = real.nodeGUID
        real.maxMRSize = limits.maxMRSize
        real.pageSizeCap = 0xFFFF_F000
        real.vendorID = VirtualDevice.vendorID
        real.vendorPartID = VirtualDevice.vendorPartID
        real.atomicCap = .hca
        real.maxQP = 65536
        real.maxQPWR = Int32(clamping: limits.maxQPWR)
        real.maxSGE = Int32(clamping: limits.maxSGE)
        real.maxSGERead = real.maxSGE
        real.maxCQ = 65536
        real.maxCQE = limits.maxCQE
        real.maxMR = 65536
        real.maxPD = 65536
        real.maxQPReadAtomic = 128
        real.maxQPInitReadAtomic = 128
        real.maxAH = 65536
        real.maxSRQ = 65536
        real.maxSRQWR = Int32(clamping: limits.maxSRQWR)
        real.maxSRQSGE = Int32(clamping: limits.maxSRQSGE)
        real.maxPkeys = 64
        real.physicalPortCount = 1
        return real
    }

    /// Port 1, active unless `portActive` was cleared.
    public func virtualPort() throws -> FFProtocol.PortAttributes {
        var p = FFProtocol.PortAttributes()
        p.state = portActive ? .active : .down
        p.maxMTU = .mtu4096
        p.activeMTU = .mtu1024
        p.gidTableLength = VirtualDevice.gidTableLength
        p.maxMessageSize = 1 << 31
        p.pkeyTableLength = 64
        p.linkLayer = .ethernet
        return p
    }

    /// Active unless `portActive` was cleared.
    public func portHealth() -> (active: Bool, detail: String) {
        let active = portActive
        return (active, "device \(deviceName) port 1 \(active ? "PORT_ACTIVE" : "PORT_DOWN")")
    }

    /// A new PD.
    public func allocatePD() throws -> any BackendPD { FakePD(world: world) }

    /// A new completion channel.
    public func createCompletionChannel() throws -> any BackendCompletionChannel { FakeCompletionChannel(world: world) }

    /// A new CQ; `entries` and `vector` as verbs checks them.
    public func createCQ(entries: Int32, channel: (any BackendCompletionChannel)?, vector: Int32) throws -> any BackendCQ {
        guard entries > 0, entries <= limits.maxCQE else { throw fakeError("ibv_create_cq", Errno.invalidArgument, "\(entries) entries") }
        guard vector >= 0, vector < limits.completionVectors else { throw fakeError("ibv_create_cq", Errno.invalidArgument, "vector \(vector)") }
        var fakeChannel: FakeCompletionChannel?
        if let channel {
            guard let c = channel as? FakeCompletionChannel else { throw fakeError("ibv_create_cq", Errno.invalidArgument, "foreign channel") }
            fakeChannel = c
        }
        return FakeCQ(world: world, capacity: entries, channel: fakeChannel)
    }
}

func fakeError(_ operation: String, _ errno: Int32, _ detail: String, failed: Int? = nil) -> VerbsError {
    VerbsError(operation: operation, errno: errno, detail: "fake: \(detail)", failedWorkRequest: failed)
}

/// Everything the fake's objects share: one lock, live counts, and the QPs and MRs data movement looks up.
final class FakeWorld: @unchecked Sendable {
    // @unchecked: all state is behind `lock`.
    struct State {
        var live: [String: Int] = [:]
        var portActive = true
        var nextQPN: UInt32 = 0x11
        var nextKey: UInt32 = 1
        var qps: [UInt32: Entry<FakeQP>] = [:]
        var mrsByLKey: [UInt32: Entry<FakeMR>] = [:]
        var mrsByRKey: [UInt32: Entry<FakeMR>] = [:]
        var onRegister: (@Sendable (Int) -> Void)?
    }

    /// A table entry: an unretained reference, used only under `lock`. Sound because every object removes its entry in
    /// `deinit` under the same lock, so an entry read under the lock names an object whose memory stays valid until
    /// the lock is released (at worst one whose deinit waits for that lock; it is used, never kept). Not `weak`: an
    /// object that ever had a weak reference keeps its counts in a side table, which made every retain and release of a
    /// fake QP or MR a slow path, and each lookup copied a weak reference (together over half of the data-path
    /// thread's time in the host benchmark, docs/benchmarks.md).
    struct Entry<T: AnyObject> {
        unowned(unsafe) let object: T
        init(object: T) { self.object = object }
    }

    let limits: DeviceLimits
    private let lock = NSLock()
    @exclusivity(unchecked) private var state = State()

    init(limits: DeviceLimits) { self.limits = limits }

    func locked<T>(_ body: (inout State) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }

    func born(_ kind: String) { locked { $0.live[kind, default: 0] += 1 } }
    func died(_ kind: String) { locked { $0.live[kind, default: 0] -= 1 } }
}

final class FakePD: BackendPD {
    let world: FakeWorld

    init(world: FakeWorld) {
        self.world = world
        world.born("pd")
    }

    deinit { world.died("pd") }

    func registerMemory(_ region: UnsafeMutableRawBufferPointer, iova: UInt64, access: Verbs.AccessFlags,
                        keepAlive: MemoryMapping) throws -> any BackendMR {
        guard region.count > 0 else { throw fakeError("ibv_reg_mr_iova", Errno.invalidArgument, "empty region") }
        guard iova.addingReportingOverflow(UInt64(region.count)).overflow == false else {
            throw fakeError("ibv_reg_mr_iova", Errno.invalidArgument, "iova range wraps")
        }
        if let hook = world.locked({ $0.onRegister }) { hook(region.count) }
        return FakeMR(world: world, pd: self, region: region, iova: iova, access: access, keepAlive: keepAlive)
    }

    func createQP(_ c: BackendQPConfiguration) throws -> any BackendQP {
        guard let send = c.sendCQ as? FakeCQ, let receive = c.receiveCQ as? FakeCQ else {
            throw fakeError("ibv_create_qp", Errno.invalidArgument, "foreign CQ")
        }
        var srq: FakeSRQ?
        if let shared = c.sharedReceiveQueue {
            guard let s = shared as? FakeSRQ else { throw fakeError("ibv_create_qp", Errno.invalidArgument, "foreign SRQ") }
            srq = s
        }
        let caps = c.capabilities
        let limits = world.limits
        guard caps.maxSendWorkRequests <= limits.maxQPWR, caps.maxReceiveWorkRequests <= limits.maxQPWR,
              caps.maxSendSGE <= limits.maxSGE, caps.maxReceiveSGE <= limits.maxSGE, caps.maxInlineData <= limits.maxInlineData else {
            throw fakeError("ibv_create_qp", Errno.invalidArgument, "capabilities \(caps) beyond the device's")
        }
        return FakeQP(world: world, pd: self, configuration: c, sendCQ: send, receiveCQ: receive, srq: srq)
    }

    func createSRQ(maxWorkRequests: UInt32, maxSGE: UInt32) throws -> any BackendSRQ {
        let limits = world.limits
        guard maxWorkRequests > 0, maxWorkRequests <= limits.maxSRQWR, maxSGE > 0, maxSGE <= limits.maxSRQSGE else {
            throw fakeError("ibv_create_srq", Errno.invalidArgument, "\(maxWorkRequests) WRs, \(maxSGE) SGEs")
        }
        return FakeSRQ(world: world, pd: self, maxWorkRequests: maxWorkRequests, maxSGE: maxSGE)
    }

    func createAH(_ address: AddressVector) throws -> any BackendAH {
        guard address.global != nil else { throw fakeError("ibv_create_ah", Errno.invalidArgument, "RoCE needs a GRH") }
        return FakeAH(world: world, pd: self, address: address)
    }
}

/// A fake memory region: the router's mapping of the client's pages at the client's address, found by its keys.
public final class FakeMR: BackendMR {
    let world: FakeWorld
    let pd: FakePD
    let region: UnsafeMutableRawBufferPointer
    let iova: UInt64
    let access: Verbs.AccessFlags
    /// The router's mapping the region lies in, kept while the MR lives (tests watch it go at deregistration).
    public let keepAlive: MemoryMapping
    /// Local key.
    public let lkey: UInt32
    /// Remote key.
    public let rkey: UInt32

    init(world: FakeWorld, pd: FakePD, region: UnsafeMutableRawBufferPointer, iova: UInt64, access: Verbs.AccessFlags,
         keepAlive: MemoryMapping) {
        self.world = world
        self.pd = pd
        self.region = region
        self.iova = iova
        self.access = access
        self.keepAlive = keepAlive
        let key = world.locked { s -> UInt32 in defer { s.nextKey &+= 1 }; return s.nextKey }
        lkey = key << 8 | 0x01
        rkey = key << 8 | 0x02
        world.locked { s in
            s.live["mr", default: 0] += 1
            s.mrsByLKey[lkey] = .init(object: self)
            s.mrsByRKey[rkey] = .init(object: self)
        }
    }

    deinit {
        world.locked { s in
            s.live["mr", default: 0] -= 1
            s.mrsByLKey[lkey] = nil
            s.mrsByRKey[rkey] = nil
        }
    }

    /// The router-side bytes for client addresses `address..<address+length`, if the MR covers them.
    public func bytes(at address: UInt64, length: UInt64) -> UnsafeMutableRawBufferPointer? {
        guard address >= iova else { return nil }
        let offset = address - iova
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= UInt64(region.count) else { return nil }
        return UnsafeMutableRawBufferPointer(rebasing: region[Int(offset)..<Int(end)])
    }
}

final class FakeCompletionChannel: BackendCompletionChannel, @unchecked Sendable {
    // @unchecked: the stream's continuation is thread-safe; the iterator is used by the one forwarding task.
    let world: FakeWorld
    private let stream: AsyncStream<UInt>
    private let continuation: AsyncStream<UInt>.Continuation
    private var iterator: AsyncStream<UInt>.AsyncIterator

    init(world: FakeWorld) {
        self.world = world
        (stream, continuation) = AsyncStream.makeStream(of: UInt.self)
        iterator = stream.makeAsyncIterator()
        world.born("comp_channel")
    }

    deinit {
        continuation.finish()
        world.died("comp_channel")
    }

    func signal(_ eventID: UInt) { continuation.yield(eventID) }

    func nextEvent() async throws -> UInt {
        guard let id = await iterator.next() else { throw CancellationError() }
        return id
    }
}

final class FakeCQ: BackendCQ {
    let world: FakeWorld
    let capacity: Int32
    let channel: FakeCompletionChannel?
    // Guarded by world.lock.
    @exclusivity(unchecked) private var entries: FakeRing<FFProtocol.WorkCompletion>
    @exclusivity(unchecked) private var armed = false
    @exclusivity(unchecked) private var solicitedOnly = false
    @exclusivity(unchecked) private(set) var overflowed = false

    init(world: FakeWorld, capacity: Int32, channel: FakeCompletionChannel?) {
        self.world = world
        self.capacity = capacity
        self.channel = channel
        entries = FakeRing(reserving: min(Int(capacity), 256))
        world.born("cq")
    }

    deinit { world.died("cq") }

    var eventID: UInt { UInt(bitPattern: ObjectIdentifier(self).hashValue) }

    func requestNotification(solicitedOnly: Bool) throws {
        world.locked { _ in
            armed = true
            self.solicitedOnly = solicitedOnly
        }
    }

    func poll(into completions: UnsafeMutableBufferPointer<FFProtocol.WorkCompletion>, scratch: WorkRequestScratch) throws -> Int {
        guard !completions.isEmpty else { throw fakeError("ibv_poll_cq", Errno.invalidArgument, "poll for 0") }
        return world.locked { _ in
            var n = 0
            while n < completions.count, let wc = entries.popFirst() {
                completions[n] = wc
                n += 1
            }
            return n
        }
    }

    /// Adds a completion; called with world.lock held. A full CQ overflows (as a real one does), and the completion is lost.
    func push(_ wc: FFProtocol.WorkCompletion, solicited: Bool) {
        guard entries.count < Int(capacity) else {
            overflowed = true
            return
        }
        entries.append(wc)
        if armed && (!solicitedOnly || solicited || wc.status != .success) {
            armed = false
            channel?.signal(eventID)
        }
    }
}

final class FakeSRQ: BackendSRQ {
    let world: FakeWorld
    let pd: FakePD
    let maxWorkRequests: UInt32
    let maxSGE: UInt32
    // Guarded by world.lock.
    @exclusivity(unchecked) var limit: UInt32 = 0
    @exclusivity(unchecked) var queue: FakeReceiveQueue

    init(world: FakeWorld, pd: FakePD, maxWorkRequests: UInt32, maxSGE: UInt32) {
        self.world = world
        self.pd = pd
        self.maxWorkRequests = maxWorkRequests
        self.maxSGE = maxSGE
        queue = FakeReceiveQueue(maxSGE: Int(maxSGE), reserving: Int(maxWorkRequests))
        world.born("srq")
    }

    deinit { world.died("srq") }

    func setLimit(_ limit: UInt32) throws {
        guard limit <= maxWorkRequests else { throw fakeError("ibv_modify_srq", Errno.invalidArgument, "limit \(limit) over \(maxWorkRequests)") }
        world.locked { _ in self.limit = limit }
    }

    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws {
        try world.locked { _ in
            for i in 0..<requests.count {
                let r = requests[i]
                guard r.scatterGather.count <= Int(maxSGE) else { throw fakeError("ibv_post_srq_recv", Errno.invalidArgument, "too many SGEs", failed: i) }
                guard queue.count < Int(maxWorkRequests) else { throw fakeError("ibv_post_srq_recv", Errno.outOfMemory, "SRQ full", failed: i) }
                queue.append(id: r.id, scatterGather: r.scatterGather)
            }
        }
    }
}

/// A FIFO in storage that grows by doubling and is reused after: the fake's CQs queue completions without allocating
/// once they have held their most.
struct FakeRing<Element> {
    private var storage: [Element?]
    private var head = 0
    /// Elements queued.
    private(set) var count = 0

    init(reserving capacity: Int) { storage = Array(repeating: nil, count: max(1, capacity)) }

    mutating func append(_ element: Element) {
        if count == storage.count {
            var grown = [Element?](repeating: nil, count: storage.count * 2)
            for i in 0..<count { grown[i] = storage[(head + i) % storage.count] }
            storage = grown
            head = 0
        }
        storage[(head + count) % storage.count] = element
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        defer {
            storage[head] = nil
            head = (head + 1) % storage.count
            count -= 1
        }
        return storage[head]
    }
}

/// A receive queue (a QP's or an SRQ's) whose requests keep their SGEs in one flat array, `maxSGE` per request: posting
/// a receive copies its SGEs in and allocates nothing once the queue has held its most.
struct FakeReceiveQueue {
    /// A queued receive: its id and where its SGEs are.
    struct Entry {
        var id: UInt64
        var slot: Int
        var sgeCount: Int
    }

    private let stride: Int
    private var entries: FakeRing<Entry>
    private var sges: [ScatterGatherElement]
    private var freeSlots: [Int]

    init(maxSGE: Int, reserving capacity: Int) {
        stride = max(1, maxSGE)
        let initial = max(1, min(capacity, 64))
        entries = FakeRing(reserving: initial)
        sges = Array(repeating: ScatterGatherElement(address: 0, length: 0, lkey: 0), count: initial * stride)
        freeSlots = Array((0..<initial).reversed())
    }

    /// Receives queued.
    var count: Int { entries.count }

    /// Queues a receive (at most `maxSGE` SGEs, checked by the caller).
    mutating func append(id: UInt64, scatterGather: UnsafeBufferPointer<ScatterGatherElement>) {
        if freeSlots.isEmpty {
            let slots = sges.count / stride
            sges.append(contentsOf: repeatElement(ScatterGatherElement(address: 0, length: 0, lkey: 0), count: slots * stride))
            freeSlots.append(contentsOf: (slots..<(2 * slots)).reversed())
        }
        let slot = freeSlots.removeLast()
        for i in 0..<min(scatterGather.count, stride) { sges[slot * stride + i] = scatterGather[i] }
        entries.append(Entry(id: id, slot: slot, sgeCount: min(scatterGather.count, stride)))
    }

    /// Takes the oldest receive; its SGEs (`sge(_:_:)`) stay readable until the next `append`.
    mutating func popFirst() -> Entry? {
        guard let entry = entries.popFirst() else { return nil }
        freeSlots.append(entry.slot)
        return entry
    }

    /// SGE `index` of `entry`.
    func sge(_ entry: Entry, _ index: Int) -> ScatterGatherElement { sges[entry.slot * stride + index] }

    /// Takes every receive, oldest first.
    mutating func drain(_ each: (Entry) -> Void) {
        while let entry = popFirst() { each(entry) }
    }
}

final class FakeAH: BackendAH {
    let world: FakeWorld
    let pd: FakePD
    let address: AddressVector

    init(world: FakeWorld, pd: FakePD, address: AddressVector) {
        self.world = world
        self.pd = pd
        self.address = address
        world.born("ah")
    }

    deinit { world.died("ah") }
}
