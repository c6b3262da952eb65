import FFProtocol
import FFSystem
import Logging
import Verbs

/// Who a session belongs to, as the router decided it: the pod socket the client connected to and the
/// kernel's peer credentials. Nothing here comes from what the client says.
public struct ClientIdentity: Sendable, Equatable, Codable {
    /// The pod the socket was declared for.
    public var pod: String
    /// The pod's virtual IP.
    public var vip: String
    /// The client process (SO_PEERCRED).
    public var pid: Int32
    /// Its user id.
    public var uid: UInt32
}

/// One client's session: decodes its requests, runs them on the real device with the client's own
/// objects, and answers. Used by one task at a time (the connection's); never throws: every failure is an
/// error reply and the session goes on.
final class Session: SessionHandler {
    let id: UInt64
    let identity: ClientIdentity
    private let vip: IPv4Address
    private let device: NodeDevice
    private let map: any VipResolver
    private let logger: Logger
    private let metrics: RouterMetrics
    private(set) var objects = ObjectTable()
    private var version: UInt16?
    private(set) var stats = SessionStats()

    init(id: UInt64, identity: ClientIdentity, vip: IPv4Address, device: NodeDevice, map: any VipResolver, metrics: RouterMetrics,
         logger: Logger) {
        self.metrics = metrics
        self.id = id
        self.identity = identity
        self.vip = vip
        self.device = device
        self.map = map
        var logger = logger
        logger[metadataKey: "session"] = "\(id)"
        logger[metadataKey: "pod"] = "\(identity.pod)"
        self.logger = logger
    }

    /// Objects, requests and errors so far, for status.
    var counters: SessionCounters { SessionCounters(objects: objects.counts, requests: stats.requests, errors: stats.errors) }

    /// Destroys every object of the session in dependency order.
    func close() {
        let counts = objects.counts
        objects.removeAll()
        logger.info("session closed", metadata: ["destroyed": "\(counts.total)", "qp": "\(counts.qp)", "mr": "\(counts.mr)"])
    }

    /// Answers one datagram.
    func handle(_ datagram: Datagram) -> Reply {
        stats.requests += 1
        let frame: Frame
        do throws(WireError) {
            guard !datagram.truncated else {
                throw WireError(.messageTooLarge(size: datagram.bytes.count), field: "datagram", offset: WireLimits.maxMessageSize)
            }
            frame = try Frame.decode(datagram.bytes)
        } catch {
            let requestID = (try? WireHeader.decode(datagram.bytes).requestID) ?? 0
            return failure(requestID, ErrorReply(malformed: error), kind: "malformed")
        }
        guard Int(frame.descriptorCount) == datagram.descriptors.count else {
            return failure(frame.requestID, ErrorReply(errno: Errno.protocolError,
                reason: "\(frame.message.kind) carries \(frame.descriptorCount) descriptors, \(datagram.descriptors.count) arrived"), kind: "malformed")
        }
        if case .hello(let hello) = frame.message {
            guard version == nil else { return failure(frame.requestID, ErrorReply(errno: Errno.protocolError, reason: "hello sent twice"), kind: "protocol") }
            let answer = ProtocolVersion.answer(hello, sessionID: id, vip: vip)
            if case .helloReply(let reply) = answer {
                version = reply.version
                logger.info("hello", metadata: ["client": "\(hello.clientName)", "version": "\(reply.version)", "pid": "\(identity.pid)"])
            } else {
                stats.errors += 1
                logger.warning("hello refused", metadata: ["client": "\(hello.clientName)", "reason": "\(answer)"])
            }
            return Reply(message: answer, requestID: frame.requestID, closeAfterSend: version == nil)
        }
        guard let version, frame.version == version else {
            return failure(frame.requestID, ErrorReply(errno: Errno.protocolError, reason: version == nil
                ? "the first message must be hello" : "request in version \(frame.version), session speaks \(version!)"), kind: "protocol")
        }
        do {
            var reply = try dispatch(frame.message, descriptors: datagram.descriptors)
            reply.requestID = frame.requestID
            return reply
        } catch let error as ErrorReply {
            let kind = error.errno == Errno.badHandle ? "bad_handle" : error.errno == Errno.hostUnreachable ? "unknown_vip" : "verbs"
            return failure(frame.requestID, error, kind: kind)
        } catch let error as VerbsError {
            return failure(frame.requestID, ErrorReply(errno: error.errno, reason: ErrorReply.fit(error.description)), kind: "verbs")
        } catch let error as SystemError {
            return failure(frame.requestID, ErrorReply(errno: error.errno, reason: ErrorReply.fit(error.description)), kind: "system")
        } catch {
            return failure(frame.requestID, ErrorReply(errno: Errno.invalidArgument, reason: ErrorReply.fit("\(error)")), kind: "other")
        }
    }

    private func failure(_ requestID: UInt64, _ error: ErrorReply, kind: String) -> Reply {
        stats.errors += 1
        stats.errorsByKind[kind, default: 0] += 1
        metrics.error(kind)
        logger.debug("request refused", metadata: ["errno": "\(error.errno)", "reason": "\(error.reason)"])
        return Reply(message: .error(error), requestID: requestID)
    }

    // MARK: - Handles

    private func pd(_ h: PDHandle) throws -> ProtectionDomain {
        guard let pd = objects.pds[h.rawValue] else { throw badHandle("PD", h.rawValue) }
        return pd
    }

    private func cq(_ h: CQHandle) throws -> ObjectTable.CQEntry {
        guard let cq = objects.cqs[h.rawValue] else { throw badHandle("CQ", h.rawValue) }
        return cq
    }

    private func qp(_ h: QPHandle) throws -> ObjectTable.QPEntry {
        guard let qp = objects.qps[h.rawValue] else { throw badHandle("QP", h.rawValue) }
        return qp
    }

    private func srq(_ h: SRQHandle) throws -> ObjectTable.SRQEntry {
        guard let srq = objects.srqs[h.rawValue] else { throw badHandle("SRQ", h.rawValue) }
        return srq
    }

    private func badHandle(_ kind: String, _ value: UInt32) -> ErrorReply {
        ErrorReply(errno: Errno.badHandle, reason: "no \(kind) \(value) in this session")
    }

    private func busy(_ why: String?) throws {
        if let why { throw ErrorReply(errno: Errno.busy, reason: why) }
    }

    // MARK: - Virtual addressing

    /// The virtual device has one port, numbered 1; it is the router's configured port.
    private func checkPort(_ port: UInt8) throws {
        guard port == 1 else { throw ErrorReply(errno: Errno.invalidArgument, reason: "port \(port) does not exist (the virtual device has port 1)") }
    }

    /// Turns a client's address vector (virtual destination GID) into the physical one: the destination vip
    /// becomes its node's IP through the map, and the source is always this node's GID.
    func physicalAddress(_ av: AHAttributes) throws -> AddressVector {
        try checkPort(av.port)
        guard let route = av.globalRoute else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "RoCE needs a global route (is_global) in the address vector")
        }
        guard let destinationVIP = route.destinationGID.ipv4Mapped else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "destination GID \(route.destinationGID) is not a FreeFlow virtual GID (::ffff:vip)")
        }
        guard let pip = map.physicalIP(for: destinationVIP) else {
            stats.unknownVIPs += 1
            throw ErrorReply(errno: Errno.hostUnreachable, reason: "unknown vip \(destinationVIP): not in the vip map (\(map.summary.source))")
        }
        let global = GlobalRoute(destinationGID: Verbs.GID(ipv4: pip.description)!, sourceGIDIndex: UInt8(device.gidIndex),
                                 flowLabel: route.flowLabel, hopLimit: route.hopLimit, trafficClass: route.trafficClass)
        return AddressVector(global: global, destinationLID: av.destinationLID, serviceLevel: av.serviceLevel,
                             sourcePathBits: av.sourcePathBits, staticRate: av.staticRate, port: device.port)
    }

    // MARK: - Dispatch

    private func dispatch(_ message: Message, descriptors: [OwnedDescriptor]) throws -> Reply {
        switch message {
        case .queryDevice:
            return Reply(message: .queryDeviceReply(VirtualDevice.attributes(of: device, vip: vip)))
        case .queryPort(let r):
            try checkPort(r.port)
            return Reply(message: .queryPortReply(VirtualDevice.port(try device.context.queryPort(device.port))))
        case .queryGID(let r):
            try checkPort(r.port)
            guard r.index >= 0 && r.index < VirtualDevice.gidTableLength else {
                throw ErrorReply(errno: Errno.invalidArgument, reason: "GID index \(r.index) outside the virtual table (0..<\(VirtualDevice.gidTableLength))")
            }
            return Reply(message: .queryGIDReply(r.index == 0 ? FFProtocol.GID(ipv4Mapped: vip) : FFProtocol.GID(bytes: [UInt8](repeating: 0, count: 16))!))

        case .allocPD:
            let handle = objects.allocate()
            objects.pds[handle] = try device.context.allocateProtectionDomain()
            return Reply(message: .allocPDReply(PDHandle(rawValue: handle)))
        case .deallocPD(let h):
            _ = try pd(h)
            try busy(objects.usersOfPD(h.rawValue))
            objects.pds[h.rawValue] = nil
            return Reply(message: .deallocPDReply)

        case .regMR(let r):
            return try registerMemory(r, memfd: descriptors[0])
        case .deregMR(let h):
            guard objects.mrs.removeValue(forKey: h.rawValue) != nil else { throw badHandle("MR", h.rawValue) }
            return Reply(message: .deregMRReply)

        case .createCompChannel:
            let forwarder = try CompletionForwarder(context: device.context)
            forwarder.start()
            let handle = objects.allocate()
            objects.channels[handle] = forwarder
            // The client's end goes to the client; once sent, the router keeps only its own end.
            return Reply(message: .createCompChannelReply(CompChannelHandle(rawValue: handle)), descriptors: [forwarder.clientEnd.descriptor],
                         afterSend: { forwarder.clientEnd.close() })
        case .destroyCompChannel(let h):
            guard let forwarder = objects.channels[h.rawValue] else { throw badHandle("completion channel", h.rawValue) }
            try busy(objects.usersOfChannel(h.rawValue))
            forwarder.stop()
            objects.channels[h.rawValue] = nil
            return Reply(message: .destroyCompChannelReply)

        case .createCQ(let r):
            var forwarder: CompletionForwarder?
            if let channel = r.channel {
                guard let f = objects.channels[channel.rawValue] else { throw badHandle("completion channel", channel.rawValue) }
                forwarder = f
            }
            let cq = try device.context.createCompletionQueue(entries: Int(r.cqe), channel: forwarder?.channel, vector: Int(r.compVector))
            let handle = objects.allocate()
            forwarder?.attach(cq, as: CQHandle(rawValue: handle))
            objects.cqs[handle] = ObjectTable.CQEntry(cq: cq, channel: r.channel?.rawValue)
            return Reply(message: .createCQReply(CreateCQReply(cq: CQHandle(rawValue: handle), cqe: UInt32(cq.capacity))))
        case .destroyCQ(let h):
            let entry = try cq(h)
            try busy(objects.usersOfCQ(h.rawValue))
            if let channel = entry.channel { objects.channels[channel]?.detach(entry.cq) }
            objects.cqs[h.rawValue] = nil
            return Reply(message: .destroyCQReply)
        case .reqNotifyCQ(let r):
            try cq(r.cq).cq.requestNotification(solicitedOnly: r.solicitedOnly)
            return Reply(message: .reqNotifyCQReply)

        case .createQP(let r):
            return try createQP(r)
        case .modifyQP(let r):
            let entry = try qp(r.qp)
            try entry.qp.modify(try verbsAttributes(r.mask, r.attributes))
            stats.modifies += 1
            return Reply(message: .modifyQPReply)
        case .queryQP(let r):
            let entry = try qp(r.qp)
            var attributes = FFProtocol.QPAttributes()
            attributes.state = FFProtocol.QPState(rawValue: try entry.qp.state().rawValue) ?? .unknown
            return Reply(message: .queryQPReply(QueryQPReply(attributes: attributes, type: FFProtocol.QPType(rawValue: entry.qp.type.rawValue)!,
                                                             capabilities: Translate.capabilities(entry.qp.capabilities))))
        case .destroyQP(let h):
            guard objects.qps.removeValue(forKey: h.rawValue) != nil else { throw badHandle("QP", h.rawValue) }
            return Reply(message: .destroyQPReply)

        case .createSRQ(let r):
            let srq = try pd(r.pd).createSharedReceiveQueue(maxWorkRequests: r.maxWR, maxSGE: r.maxSGE)
            if r.limit > 0 { try srq.setLimit(r.limit) }
            let handle = objects.allocate()
            objects.srqs[handle] = ObjectTable.SRQEntry(srq: srq, pd: r.pd.rawValue)
            return Reply(message: .createSRQReply(CreateSRQReply(srq: SRQHandle(rawValue: handle), maxWR: srq.maxWorkRequests, maxSGE: srq.maxSGE)))
        case .modifySRQ(let r):
            let entry = try srq(r.srq)
            guard r.mask == .limit else {
                throw ErrorReply(errno: Errno.notSupported, reason: "only the SRQ limit can be modified (rxe cannot resize an SRQ)")
            }
            try entry.srq.setLimit(r.limit)
            return Reply(message: .modifySRQReply)
        case .destroySRQ(let h):
            _ = try srq(h)
            try busy(objects.usersOfSRQ(h.rawValue))
            objects.srqs[h.rawValue] = nil
            return Reply(message: .destroySRQReply)

        case .createAH(let r):
            let ah = try pd(r.pd).createAddressHandle(try physicalAddress(r.attributes))
            let handle = objects.allocate()
            objects.ahs[handle] = ObjectTable.AHEntry(ah: ah, pd: r.pd.rawValue)
            return Reply(message: .createAHReply(AHHandle(rawValue: handle)))
        case .destroyAH(let h):
            guard objects.ahs.removeValue(forKey: h.rawValue) != nil else { throw badHandle("AH", h.rawValue) }
            return Reply(message: .destroyAHReply)

        case .postSend(let r):
            return Reply(message: .postSendReply(try postSend(r)))
        case .postRecv(let r):
            let entry = try qp(r.target)
            return Reply(message: .postRecvReply(post(r.requests.count) { try entry.qp.postReceive(r.requests.map(Translate.receive)) }))
        case .postSRQRecv(let r):
            let entry = try srq(r.target)
            return Reply(message: .postSRQRecvReply(post(r.requests.count) { try entry.srq.postReceive(r.requests.map(Translate.receive)) }))
        case .pollCQ(let r):
            let entry = try cq(r.cq)
            let completions = try entry.cq.poll(max: Int(max(1, r.maxEntries)))
            stats.completions += UInt64(completions.count)
            if !completions.isEmpty { metrics.completions.increment(by: Int64(completions.count)) }
            return Reply(message: .pollCQReply(PollCQReply(completions: completions.map(Translate.completion))))

        case .hello, .helloReply, .error, .queryDeviceReply, .queryPortReply, .queryGIDReply, .allocPDReply, .deallocPDReply,
             .regMRReply, .deregMRReply, .createCompChannelReply, .destroyCompChannelReply, .createCQReply, .destroyCQReply,
             .reqNotifyCQReply, .createQPReply, .modifyQPReply, .queryQPReply, .destroyQPReply, .createSRQReply, .modifySRQReply,
             .destroySRQReply, .createAHReply, .destroyAHReply, .postSendReply, .postRecvReply, .postSRQRecvReply, .pollCQReply:
            throw ErrorReply(errno: Errno.protocolError, reason: "\(message.kind) is a reply, not a request")
        }
    }

    private func registerMemory(_ r: RegMRRequest, memfd: OwnedDescriptor) throws -> Reply {
        let protectionDomain = try pd(r.pd)
        let page = UInt64(4096)
        // rxe (and ibv_reg_mr_iova(3) generally) needs the iova to keep the buffer's offset within its page,
        // and so the memfd offset must sit at the same page offset as the client's address.
        guard r.memfdOffset % page == r.address % page else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "memfd offset \(r.memfdOffset) and address 0x\(String(r.address, radix: 16)) differ in page offset")
        }
        let mapStart = r.memfdOffset - r.memfdOffset % page
        let mapEnd = (r.memfdOffset + r.length + page - 1) / page * page
        let mapping = try SharedMemory(mapping: memfd, offset: Int(mapStart), length: Int(mapEnd - mapStart))
        let region = UnsafeMutableRawBufferPointer(rebasing: mapping.bytes[Int(r.memfdOffset - mapStart)..<Int(r.memfdOffset - mapStart + r.length)])
        let mr = try protectionDomain.registerMemory(region, iova: r.address, access: Translate.access(r.access), keepAlive: mapping)
        let handle = objects.allocate()
        objects.mrs[handle] = ObjectTable.MREntry(mr: mr, pd: r.pd.rawValue, mapping: mapping)
        stats.registeredBytes += r.length
        return Reply(message: .regMRReply(RegMRReply(mr: MRHandle(rawValue: handle), lkey: mr.lkey, rkey: mr.rkey)))
    }

    private func createQP(_ r: CreateQPRequest) throws -> Reply {
        let protectionDomain = try pd(r.pd)
        let send = try cq(r.sendCQ), receive = try cq(r.recvCQ)
        let shared = try r.srq.map { try srq($0) }
        let configuration = QueuePairConfiguration(type: Verbs.QPType(rawValue: r.type.rawValue)!, sendCQ: send.cq, receiveCQ: receive.cq,
                                                   sharedReceiveQueue: shared?.srq, capabilities: Translate.capabilities(r.capabilities),
                                                   signalAll: r.signalAll)
        let qp = try protectionDomain.createQueuePair(configuration)
        let handle = objects.allocate()
        objects.qps[handle] = ObjectTable.QPEntry(qp: qp, pd: r.pd.rawValue, sendCQ: r.sendCQ.rawValue, recvCQ: r.recvCQ.rawValue, srq: r.srq?.rawValue)
        logger.debug("QP created", metadata: ["handle": "\(handle)", "qpn": "\(qp.number)", "type": "\(qp.type)"])
        return Reply(message: .createQPReply(CreateQPReply(qp: QPHandle(rawValue: handle), qpNum: qp.number,
                                                           capabilities: Translate.capabilities(qp.capabilities))))
    }

    /// The client's attribute mask and values as a Verbs attribute set; the address vector is translated.
    private func verbsAttributes(_ mask: QPAttributeMask, _ a: FFProtocol.QPAttributes) throws -> Verbs.QPAttributes {
        var v = Verbs.QPAttributes()
        if mask.contains(.state) {
            guard let state = Verbs.QPState(rawValue: a.state.rawValue) else {
                throw ErrorReply(errno: Errno.invalidArgument, reason: "QP state \(a.state) cannot be requested")
            }
            v.state = state
        }
        if mask.contains(.accessFlags) { v.access = Translate.access(a.accessFlags) }
        if mask.contains(.pkeyIndex) { v.pkeyIndex = a.pkeyIndex }
        if mask.contains(.port) { try checkPort(a.port); v.port = device.port }
        if mask.contains(.qkey) { v.qkey = a.qkey }
        if mask.contains(.addressVector) { v.address = try physicalAddress(a.addressVector) }
        if mask.contains(.pathMTU) { v.pathMTU = Translate.mtu(a.pathMTU) }
        if mask.contains(.timeout) { v.timeout = a.timeout }
        if mask.contains(.retryCount) { v.retryCount = a.retryCount }
        if mask.contains(.rnrRetry) { v.rnrRetry = a.rnrRetry }
        if mask.contains(.rqPSN) { v.receivePSN = a.rqPSN }
        if mask.contains(.maxReadAtomic) { v.maxReadAtomic = a.maxReadAtomic }
        if mask.contains(.minRNRTimer) { v.minRNRTimer = a.minRNRTimer }
        if mask.contains(.sqPSN) { v.sendPSN = a.sqPSN }
        if mask.contains(.maxDestReadAtomic) { v.maxDestinationReadAtomic = a.maxDestReadAtomic }
        if mask.contains(.destQPN) { v.destinationQPN = a.destQPN }
        return v
    }

    private func postSend(_ r: PostSendRequest) throws -> PostReply {
        let entry = try qp(r.qp)
        // Inline payloads travel in the message; they are copied into router memory the device reads at post time.
        let inlineBytes = r.requests.reduce(0) { $0 + $1.inlineData.count }
        let inlineBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, inlineBytes), alignment: 8)
        defer { inlineBuffer.deallocate() }
        var inlineOffset = 0
        var requests: [Verbs.SendWorkRequest] = []
        requests.reserveCapacity(r.requests.count)
        for w in r.requests {
            var destination: DatagramDestination?
            if let ah = w.addressHandle {
                guard let entry = objects.ahs[ah.rawValue] else { throw badHandle("AH", ah.rawValue) }
                destination = DatagramDestination(addressHandle: entry.ah, remoteQPN: w.remoteQPN, remoteQKey: w.remoteQKey)
            }
            var sges = w.sgList.map(Translate.sge)
            if w.flags.contains(.inline) && !w.inlineData.isEmpty {
                let target = inlineBuffer.baseAddress! + inlineOffset
                w.inlineData.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                sges = [ScatterGatherElement(address: UInt64(UInt(bitPattern: target)), length: UInt32(w.inlineData.count), lkey: 0)]
                inlineOffset += w.inlineData.count
            }
            requests.append(Verbs.SendWorkRequest(id: w.wrID, operation: Translate.operation(w), scatterGather: sges,
                                                  flags: Verbs.SendFlags(rawValue: w.flags.rawValue), destination: destination))
        }
        let reply = post(requests.count) { try entry.qp.postSend(requests) }
        if reply.errno == 0 {
            let bytes = r.requests.reduce(0) { $0 + $1.sgList.reduce(UInt64($1.inlineData.count)) { $0 + UInt64($1.length) } }
            stats.sends += UInt64(requests.count)
            stats.bytesPosted += bytes
            metrics.postedOperations.increment(by: Int64(requests.count))
            metrics.postedBytes.increment(by: Int64(bytes))
        }
        return reply
    }

    /// Runs a post and turns a refusal into the reply's errno and index (as `bad_wr` reports it).
    private func post(_ count: Int, _ body: () throws -> Void) -> PostReply {
        do {
            try body()
            return PostReply(errno: 0, failedIndex: 0)
        } catch let error as VerbsError {
            stats.errors += 1
            return PostReply(errno: error.errno, failedIndex: UInt32(error.failedWorkRequest ?? 0))
        } catch {
            return PostReply(errno: Errno.invalidArgument, failedIndex: 0)
        }
    }
}

/// What a session has done, for status and metrics.
struct SessionStats: Sendable {
    var requests: UInt64 = 0
    var errors: UInt64 = 0
    var errorsByKind: [String: UInt64] = [:]
    var sends: UInt64 = 0
    var bytesPosted: UInt64 = 0
    var completions: UInt64 = 0
    var modifies: UInt64 = 0
    var registeredBytes: UInt64 = 0
    var unknownVIPs: UInt64 = 0
}
