import FFProtocol
import FFSystem
import Verbs

/// The real device as the sessions' backend: each call is the one libibverbs call of the same name, through `Verbs`.
extension NodeDevice: VerbsBackend {
    /// The kernel name of the device.
    public var deviceName: String { context.name }

    /// The device's maxima, clamped to what the wire can carry.
    public var limits: DeviceLimits {
        DeviceLimits(maxMRSize: attributes.maxMRSize, maxCQE: Int32(clamping: attributes.maxCQE),
                     maxQPWR: UInt32(clamping: attributes.maxQPWorkRequests),
                     maxSGE: UInt32(clamping: min(attributes.maxSGE, WireLimits.maxSGEPerWR)),
                     maxSRQWR: UInt32(clamping: attributes.maxSRQWorkRequests),
                     maxSRQSGE: UInt32(clamping: min(attributes.maxSRQSGE, WireLimits.maxSGEPerWR)),
                     maxInlineData: UInt32(WireLimits.maxInlineData),
                     completionVectors: Int32(clamping: max(1, context.completionVectorCount)))
    }

    /// The device moves registered bytes through the pages it pinned; the router's code never reads them (inline
    /// payloads come in the client's message, not from its memory), so a client's memfd needs no seal.
    public var memoryAccess: BackendMemoryAccess { .deviceOnly }

    /// The device as a pod sees it.
    public func virtualAttributes(vip: IPv4Address) -> FFProtocol.DeviceAttributes {
        VirtualDevice.attributes(of: attributes, vip: vip)
    }

    /// The served port as a pod sees it.
    public func virtualPort() throws -> FFProtocol.PortAttributes { VirtualDevice.port(try context.queryPort(port)) }

    /// Active while the port is; the detail names its state.
    public func portHealth() -> (active: Bool, detail: String) {
        let state = try? context.queryPort(port).state
        return (state == .active, "device \(context.name) port \(port) \(state.map { "\($0)" } ?? "unreadable")")
    }

    /// `ibv_alloc_pd`.
    public func allocatePD() throws -> any BackendPD { DevicePD(try context.allocateProtectionDomain()) }

    /// `ibv_create_comp_channel`.
    public func createCompletionChannel() throws -> any BackendCompletionChannel {
        DeviceCompletionChannel(try context.createCompletionChannel())
    }

    /// `ibv_create_cq`.
    public func createCQ(entries: Int32, channel: (any BackendCompletionChannel)?, vector: Int32) throws -> any BackendCQ {
        let real = try channel.map { try DeviceCompletionChannel.unwrap($0) }
        return DeviceCQ(try context.createCompletionQueue(entries: Int(entries), channel: real?.channel, vector: Int(vector)))
    }
}

/// A backend object of another backend was passed in: a programming error in the router, reported, not trapped.
private func foreign(_ what: String) -> VerbsError {
    VerbsError(operation: "backend", errno: Errno.invalidArgument, detail: "\(what) does not belong to the device backend")
}

final class DevicePD: BackendPD {
    let pd: ProtectionDomain
    init(_ pd: ProtectionDomain) { self.pd = pd }

    func registerMemory(_ region: UnsafeMutableRawBufferPointer, iova: UInt64, access: Verbs.AccessFlags,
                        keepAlive: MemoryMapping) throws -> any BackendMR {
        DeviceMR(try pd.registerMemory(region, iova: iova, access: access, keepAlive: keepAlive))
    }

    func createQP(_ c: BackendQPConfiguration) throws -> any BackendQP {
        guard let send = c.sendCQ as? DeviceCQ, let receive = c.receiveCQ as? DeviceCQ else { throw foreign("CQ") }
        var srq: SharedReceiveQueue?
        if let shared = c.sharedReceiveQueue {
            guard let s = shared as? DeviceSRQ else { throw foreign("SRQ") }
            srq = s.srq
        }
        let configuration = QueuePairConfiguration(type: c.type, sendCQ: send.cq, receiveCQ: receive.cq, sharedReceiveQueue: srq,
                                                   capabilities: c.capabilities, signalAll: c.signalAll)
        return DeviceQP(try pd.createQueuePair(configuration))
    }

    func createSRQ(maxWorkRequests: UInt32, maxSGE: UInt32) throws -> any BackendSRQ {
        DeviceSRQ(try pd.createSharedReceiveQueue(maxWorkRequests: maxWorkRequests, maxSGE: maxSGE))
    }

    func createAH(_ address: AddressVector) throws -> any BackendAH { DeviceAH(try pd.createAddressHandle(address)) }
}

final class DeviceMR: BackendMR {
    let mr: MemoryRegion
    init(_ mr: MemoryRegion) { self.mr = mr }
    var lkey: UInt32 { mr.lkey }
    var rkey: UInt32 { mr.rkey }
}

final class DeviceCompletionChannel: BackendCompletionChannel {
    let channel: CompletionChannel
    init(_ channel: CompletionChannel) { self.channel = channel }

    static func unwrap(_ channel: any BackendCompletionChannel) throws -> DeviceCompletionChannel {
        guard let real = channel as? DeviceCompletionChannel else { throw foreign("completion channel") }
        return real
    }

    func nextEvent() async throws -> UInt { try await channel.nextEvent().rawValue }
    func pollDescriptor() throws -> Int32? {
        try channel.makeNonBlocking()
        return channel.fileDescriptor
    }
    func takePendingEvents(_ each: (UInt) -> Void) throws -> Int { try channel.takePendingEvents { each($0.rawValue) } }
}

final class DeviceCQ: BackendCQ {
    let cq: CompletionQueue
    init(_ cq: CompletionQueue) { self.cq = cq }
    var capacity: Int32 { Int32(clamping: cq.capacity) }
    var eventID: UInt { cq.id.rawValue }
    func requestNotification(solicitedOnly: Bool) throws { try cq.requestNotification(solicitedOnly: solicitedOnly) }
    func poll(into completions: UnsafeMutableBufferPointer<FFProtocol.WorkCompletion>, scratch: WorkRequestScratch) throws -> Int {
        let n = try cq.poll(into: scratch, max: completions.count)
        for i in 0..<n { completions[i] = Translate.completion(scratch.completion(i)) }
        return n
    }
}

final class DeviceQP: BackendQP {
    let qp: QueuePair
    init(_ qp: QueuePair) { self.qp = qp }
    var number: UInt32 { qp.number }
    var type: Verbs.QPType { qp.type }
    var capabilities: Verbs.QPCapabilities { qp.capabilities }
    func modify(_ attributes: Verbs.QPAttributes) throws { try qp.modify(attributes) }
    func state() throws -> Verbs.QPState { try qp.state() }

    /// Builds the chained `ibv_send_wr`s in `scratch` and calls the provider's post once.
    func postSend(_ requests: UnsafeBufferPointer<BackendSendWR>, scratch: WorkRequestScratch) throws {
        scratch.begin()
        for i in 0..<requests.count {
            let r = requests[i]
            var destination: DatagramDestination?
            if let handle = r.addressHandle {
                guard let ah = handle as? DeviceAH else { throw foreign("AH") }
                destination = DatagramDestination(addressHandle: ah.ah, remoteQPN: r.remoteQPN, remoteQKey: r.remoteQKey)
            }
            guard scratch.appendSend(id: r.id, operation: r.operation, flags: r.flags, destination: destination, scatterGather: r.scatterGather) else {
                throw scratchFull(scratch)
            }
        }
        try qp.postSend(scratch)
    }

    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws {
        try DeviceReceives.build(requests, in: scratch)
        try qp.postReceive(scratch)
    }
}

/// Receives laid out in a scratch for one post.
enum DeviceReceives {
    static func build(_ requests: UnsafeBufferPointer<BackendReceiveWR>, in scratch: WorkRequestScratch) throws {
        scratch.begin()
        for i in 0..<requests.count where !scratch.appendReceive(id: requests[i].id, scatterGather: requests[i].scatterGather) {
            throw scratchFull(scratch)
        }
    }
}

/// More requests or SGEs than the poller's scratch holds: a programming error in the router (it sizes batches to fit).
private func scratchFull(_ scratch: WorkRequestScratch) -> VerbsError {
    VerbsError(operation: "backend", errno: Errno.invalidArgument,
               detail: "batch beyond the scratch (\(scratch.capacity) requests, \(scratch.sgeCapacity) SGEs)", failedWorkRequest: scratch.count)
}

final class DeviceSRQ: BackendSRQ {
    let srq: SharedReceiveQueue
    init(_ srq: SharedReceiveQueue) { self.srq = srq }
    var maxWorkRequests: UInt32 { srq.maxWorkRequests }
    var maxSGE: UInt32 { srq.maxSGE }
    func setLimit(_ limit: UInt32) throws { try srq.setLimit(limit) }
    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws {
        try DeviceReceives.build(requests, in: scratch)
        try srq.postReceive(scratch)
    }
}

final class DeviceAH: BackendAH {
    let ah: AddressHandle
    init(_ ah: AddressHandle) { self.ah = ah }
}
