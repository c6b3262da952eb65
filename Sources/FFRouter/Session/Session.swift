import FFProtocol
import FFRouterAPI
import FFSystem
import Logging
import Verbs

/// One client's session: decodes its requests, checks every value against the trust boundary and the session's
/// limits, runs them on the backend with the client's own objects, and answers. Used by one thread at a time (the
/// session's); never throws: every failure is an error reply and the session goes on.
final class Session: SessionHandler {
    let id: UInt64
    let identity: ClientIdentity
    let vip: IPv4Address
    let backend: any VerbsBackend
    private let map: any VipResolver
    private let limits: SessionLimits
    private let logger: Logger
    private let metrics: RouterMetrics
    /// The router's rdma_cm, shared by its sessions (nil: cm calls are EOPNOTSUPP).
    let connectionManagerService: ConnectionManagerService?
    private(set) var objects = ObjectTable()
    private var version: UInt16?
    /// What the hello granted: capabilities the client offered that this router serves.
    private var granted: Capabilities = []
    private(set) var stats = SessionStats()
    private let dataPath: DataPath?
    /// The fast path's state, once hello granted it (docs/router.md "Data path").
    private(set) var fast: SessionDataPath?

    init(id: UInt64, identity: ClientIdentity, vip: IPv4Address, backend: any VerbsBackend, map: any VipResolver,
         limits: SessionLimits = SessionLimits(), metrics: RouterMetrics, logger: Logger, dataPath: DataPath? = nil,
         connectionManager: ConnectionManagerService? = nil) {
        self.metrics = metrics
        self.dataPath = dataPath
        self.connectionManagerService = connectionManager
        self.id = id
        self.identity = identity
        self.vip = vip
        self.backend = backend
        self.map = map
        self.limits = limits
        var logger = logger
        logger[metadataKey: "session"] = "\(id)"
        logger[metadataKey: "pod"] = "\(identity.pod)"
        self.logger = logger
    }

    /// Objects, requests and errors so far, for status.
    var counters: SessionCounters {
        var counts = objects.counts
        if let cm = connectionManagerService { (counts.cmID, counts.cmListener) = cm.counts(session: id) }
        return SessionCounters(objects: counts, requests: stats.requests, errors: stats.errors)
    }

    /// Destroys every object of the session in dependency order.
    func close() {
        // Peers of its connections hear of it before its QPs go.
        connectionManagerService?.close(session: id)
        let counts = objects.counts
        // The poller lets go of every ring first, so nothing it polls is destroyed under it.
        fast?.close()
        fast = nil
        objects.removeAll()
        logger.info("session closed", metadata: ["destroyed": "\(counts.total)", "qp": "\(counts.qp)", "mr": "\(counts.mr)"])
    }

    /// Answers one datagram.
    func handle(_ datagram: Datagram) -> Reply {
        stats.requests &+= 1
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
        if let hello = frame.message.request(Hello.self) {
            guard version == nil else { return failure(frame.requestID, ErrorReply(errno: Errno.protocolError, reason: "hello sent twice"), kind: "protocol") }
            var answer = ProtocolVersion.answer(hello, routerCapabilities: dataPath == nil ? Self.capabilities : Self.capabilities.union([.sharedMemoryRings]), sessionID: id, vip: vip)
            if var reply = answer.reply(to: Hello.self), reply.capabilities.contains(.sharedMemoryRings), let dataPath {
                do {
                    fast = try SessionDataPath(pool: dataPath, session: id, maxUnmapped: limits.descriptors)
                } catch {
                    // No rings for this session: it uses the socket path.
                    logger.warning("fast path unavailable", metadata: ["error": "\(error)"])
                    reply.capabilities.remove(.sharedMemoryRings)
                    answer = .reply(to: Hello.self, reply)
                }
            }
            if let reply = answer.reply(to: Hello.self) {
                version = reply.version
                granted = reply.capabilities
                logger.info("hello", metadata: ["client": "\(hello.clientName)", "version": "\(reply.version)", "pid": "\(identity.pid)"])
            } else {
                stats.errors &+= 1
                logger.warning("hello refused", metadata: ["client": "\(hello.clientName)", "reason": "\(answer)"])
            }
            return Reply(message: answer, requestID: frame.requestID, closeAfterSend: version == nil)
        }
        guard let version, frame.version == version else {
            return failure(frame.requestID, ErrorReply(errno: Errno.protocolError, reason: version == nil
                ? "the first message must be hello" : "request in version \(frame.version), session speaks \(version!)"), kind: "protocol")
        }
        do {
            var reply = try Self.handlers.run(self, frame.message, descriptors: datagram.descriptors)
            reply.requestID = frame.requestID
            return reply
        } catch let error as ErrorReply {
            let kind = switch error.errno {
            case Errno.badHandle: "bad_handle"
            case Errno.hostUnreachable: "unknown_vip"
            case Errno.outOfMemory, Errno.tooManyDescriptors: "limit"
            default: "verbs"
            }
            return failure(frame.requestID, error, kind: kind)
        } catch let error as VerbsError {
            return failure(frame.requestID, ErrorReply(errno: error.errno, reason: ErrorReply.fit(error.description)), kind: "verbs")
        } catch let error as SystemError {
            return failure(frame.requestID, ErrorReply(errno: error.errno, reason: ErrorReply.fit(error.description)), kind: "system")
        } catch {
            return failure(frame.requestID, ErrorReply(errno: Errno.invalidArgument, reason: ErrorReply.fit("\(error)")), kind: "other")
        }
    }

    /// The capabilities this router grants to clients that offer them.
    static let capabilities: Capabilities = [.memorySegments]

    private func failure(_ requestID: UInt64, _ error: ErrorReply, kind: String) -> Reply {
        stats.errors &+= 1
        stats.errorsByKind[kind, default: 0] &+= 1
        metrics.error(kind)
        logger.debug("request refused", metadata: ["errno": "\(error.errno)", "reason": "\(error.reason)"])
        return Reply(message: .error(error), requestID: requestID)
    }

    // MARK: - Handles

    private func pd(_ h: PDHandle) throws -> any BackendPD {
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

    /// Remembers the Q_Key the router or the client set on QP `handle`, for query_qp.
    func recordQKey(_ qkey: UInt32, of handle: UInt32) { objects.qps[handle]?.qkey = qkey }

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
        // Before the first map list every vip would look unknown: say "try again" instead of "no such host".
        guard map.isReady else {
            throw ErrorReply(errno: Errno.tryAgain, reason: "the vip map is not loaded yet (\(map.summary.source)); try again")
        }
        guard let pip = map.physicalIP(for: destinationVIP) else {
            stats.unknownVIPs &+= 1
            throw ErrorReply(errno: Errno.hostUnreachable, reason: "unknown vip \(destinationVIP): not in the vip map (\(map.summary.source))")
        }
        guard let gid = Verbs.GID(ipv4: pip.description), let sourceIndex = UInt8(exactly: backend.gidIndex) else {
            throw ErrorReply(errno: Errno.invalidArgument, reason: "no RoCEv2 GID for node \(pip)")
        }
        let global = GlobalRoute(destinationGID: gid, sourceGIDIndex: sourceIndex,
                                 flowLabel: route.flowLabel, hopLimit: route.hopLimit, trafficClass: route.trafficClass)
        return AddressVector(global: global, destinationLID: av.destinationLID, serviceLevel: av.serviceLevel,
                             sourcePathBits: av.sourcePathBits, staticRate: av.staticRate, port: backend.port)
    }

    // MARK: - Handlers

    /// One handler per request type (hello is the handshake, answered in `handle` before any of these).
    static let handlers: RequestTable<Session> = {
        var t = RequestTable<Session>()
        t.on(QueryDeviceRequest.self) { s, _, _ in s.backend.virtualAttributes(vip: s.vip) }
        t.on(QueryPortRequest.self) { s, r, _ in
            try s.checkPort(r.port)
            return try s.backend.virtualPort()
        }
        t.on(QueryGIDRequest.self) { s, r, _ in
            try s.checkPort(r.port)
            guard r.index >= 0 && r.index < VirtualDevice.gidTableLength else {
                throw ErrorReply(errno: Errno.invalidArgument,
                                 reason: "GID index \(r.index) outside the virtual table (0..<\(VirtualDevice.gidTableLength))")
            }
            return FFProtocol.GID(ipv4Mapped: s.vip)
        }

        t.on(AllocPDRequest.self) { s, _, _ in
            try SessionLimits.checkCount(s.objects.pds.count, s.limits.pds, "PDs", flag: "max-pds")
            let pd = try s.backend.allocatePD()
            let handle = s.objects.allocate()
            s.objects.pds[handle] = pd
            return PDHandle(rawValue: handle)
        }
        t.on(DeallocPDRequest.self) { s, r, _ in
            _ = try s.pd(r.pd)
            try s.busy(s.objects.usersOfPD(r.pd.rawValue))
            s.objects.pds[r.pd.rawValue] = nil
            return EmptyBody()
        }

        t.on(RegMRRequest.self) { s, r, descriptors in
            guard let memfd = descriptors.first else {
                throw ErrorReply(errno: Errno.protocolError, reason: "reg_mr carries no memfd")
            }
            return try s.registerMemory(RegMRSegmentsRequest(r), descriptors: [memfd])
        }
        t.on(RegMRSegmentsRequest.self) { s, r, descriptors in
            guard s.granted.contains(.memorySegments) else {
                throw ErrorReply(errno: Errno.protocolError,
                                 reason: "regMRSegments needs the memorySegments capability, not offered in hello")
            }
            return try s.registerMemory(r, descriptors: descriptors)
        }
        t.on(DeregMRRequest.self) { s, r, _ in
            guard s.objects.mrs.removeValue(forKey: r.mr.rawValue) != nil else { throw s.badHandle("MR", r.mr.rawValue) }
            return EmptyBody()
        }

        t.on(CreateCompChannelRequest.self, answer: { s, _, _ in try s.createCompletionChannel() })
        t.on(DestroyCompChannelRequest.self) { s, r, _ in
            let h = r.channel
            guard let forwarder = s.objects.channels[h.rawValue] else { throw s.badHandle("completion channel", h.rawValue) }
            try s.busy(s.objects.usersOfChannel(h.rawValue))
            forwarder.stop()
            s.objects.channels[h.rawValue] = nil
            return EmptyBody()
        }

        t.on(CreateCQRequest.self) { s, r, _ in try s.createCQ(r) }
        t.on(DestroyCQRequest.self) { s, r, _ in
            let entry = try s.cq(r.cq)
            try s.busy(s.objects.usersOfCQ(r.cq.rawValue))
            if let channel = entry.channel { s.objects.channels[channel]?.detach(entry.cq) }
            s.fast?.removeCQ(r.cq.rawValue)
            s.objects.cqs[r.cq.rawValue] = nil
            return EmptyBody()
        }
        t.on(ReqNotifyCQRequest.self) { s, r, _ in
            let entry = try s.cq(r.cq)
            guard entry.channel != nil else {
                throw Check.invalid("CQ \(r.cq.rawValue) has no completion channel to notify")
            }
            if let fast = s.fast {
                fast.requestNotification(r.cq.rawValue, solicitedOnly: r.solicitedOnly)
            } else {
                try entry.cq.requestNotification(solicitedOnly: r.solicitedOnly)
            }
            return EmptyBody()
        }

        t.on(CreateQPRequest.self) { s, r, _ in try s.createQP(r) }
        t.on(ModifyQPRequest.self) { s, r, _ in
            let entry = try s.qp(r.qp)
            // What the client posted to the rings before this call reaches the QP before the transition, as with verbs.
            s.fast?.flushQP(r.qp.rawValue)
            try entry.qp.modify(try s.verbsAttributes(r.mask, r.attributes))
            if r.mask.contains(.qkey) { s.recordQKey(r.attributes.qkey, of: r.qp.rawValue) }
            s.stats.modifies &+= 1
            return EmptyBody()
        }
        t.on(QueryQPRequest.self) { s, r, _ in
            let entry = try s.qp(r.qp)
            var attributes = FFProtocol.QPAttributes()
            attributes.state = FFProtocol.QPState(rawValue: try entry.qp.state().rawValue) ?? .unknown
            attributes.qkey = entry.qkey
            guard let type = FFProtocol.QPType(rawValue: entry.qp.type.rawValue) else {
                throw Check.invalid("QP type \(entry.qp.type)")
            }
            return QueryQPReply(attributes: attributes, type: type, capabilities: Translate.capabilities(entry.qp.capabilities))
        }
        t.on(DestroyQPRequest.self) { s, r, _ in
            _ = try s.qp(r.qp)
            s.fast?.removeQP(r.qp.rawValue)
            guard s.objects.qps.removeValue(forKey: r.qp.rawValue) != nil else { throw s.badHandle("QP", r.qp.rawValue) }
            return EmptyBody()
        }

        t.on(CreateSRQRequest.self) { s, r, _ in try s.createSRQ(r) }
        t.on(ModifySRQRequest.self) { s, r, _ in
            let entry = try s.srq(r.srq)
            guard r.mask == .limit else {
                throw ErrorReply(errno: Errno.notSupported,
                                 reason: "only the SRQ limit can be modified (rxe cannot resize an SRQ)")
            }
            _ = try Check.within(r.limit, 0...entry.srq.maxWorkRequests, "srq_limit")
            try entry.srq.setLimit(r.limit)
            return EmptyBody()
        }
        t.on(DestroySRQRequest.self) { s, r, _ in
            _ = try s.srq(r.srq)
            try s.busy(s.objects.usersOfSRQ(r.srq.rawValue))
            s.fast?.removeSRQ(r.srq.rawValue)
            s.objects.srqs[r.srq.rawValue] = nil
            return EmptyBody()
        }

        t.on(CreateAHRequest.self) { s, r, _ in
            let protectionDomain = try s.pd(r.pd)
            try SessionLimits.checkCount(s.objects.ahs.count, s.limits.ahs, "AHs", flag: "max-ahs")
            let ah = try protectionDomain.createAH(try s.physicalAddress(r.attributes))
            let handle = s.objects.allocate()
            s.objects.ahs[handle] = ObjectTable.AHEntry(ah: ah, pd: r.pd.rawValue)
            s.fast?.setAH(handle, ah)
            return AHHandle(rawValue: handle)
        }
        t.on(DestroyAHRequest.self) { s, r, _ in
            guard s.objects.ahs.removeValue(forKey: r.ah.rawValue) != nil else { throw s.badHandle("AH", r.ah.rawValue) }
            s.fast?.setAH(r.ah.rawValue, nil)
            return EmptyBody()
        }

        t.on(PostSendRequest.self) { s, r, _ in
            try s.onSocketPath(PostSendRequest.kind)
            return try s.postSend(r)
        }
        t.on(PostRecvRequest<QPHandle>.self) { s, r, _ in
            try s.onSocketPath(PostRecvRequest<QPHandle>.kind)
            let entry = try s.qp(r.target)
            return s.post(r.requests.count) { try entry.qp.postReceive(r.requests.map(Translate.receive)) }
        }
        t.on(PostRecvRequest<SRQHandle>.self) { s, r, _ in
            try s.onSocketPath(PostRecvRequest<SRQHandle>.kind)
            let entry = try s.srq(r.target)
            return s.post(r.requests.count) { try entry.srq.postReceive(r.requests.map(Translate.receive)) }
        }
        t.on(PollCQRequest.self) { s, r, _ in
            try s.onSocketPath(PollCQRequest.kind)
            return try s.pollCQ(r)
        }
        t.on(MapRingRequest.self, answer: { s, r, _ in
            guard let fast = s.fast else {
                throw ErrorReply(errno: Errno.protocolError,
                                 reason: "map_ring needs the sharedMemoryRings capability, not granted to this session")
            }
            return try fast.map(r)
        })

        t.on(CMCreateChannelRequest.self, answer: { s, _, _ in try s.createCMChannel() })
        t.on(CMRequest.self) { s, r, _ in try s.callCM(r) }
        return t
    }()

    /// Sessions with the fast path post and poll on their rings; the socket refuses those requests.
    private func onSocketPath(_ kind: MessageKind) throws {
        if fast != nil {
            throw Check.invalid("\(kind) on the socket: this session's queues are served by its shared-memory rings")
        }
    }

    private func createCompletionChannel() throws -> Answer<CompChannelHandle> {
        try SessionLimits.checkCount(objects.channels.count, limits.completionChannels, "completion channels",
                                     flag: "max-comp-channels")
        try SessionLimits.checkBudget(UInt64(objects.usage.descriptors), adding: UInt64(ObjectTable.descriptorsPerChannel),
                                      UInt64(limits.descriptors), "router descriptors held", flag: "max-descriptors",
                                      errno: Errno.tooManyDescriptors)
        let forwarder = try CompletionForwarder(backend: backend)
        forwarder.start()
        let handle = objects.allocate()
        objects.channels[handle] = forwarder
        // The client's end goes to the client; once sent, the router keeps only its own end.
        return Answer(body: CompChannelHandle(rawValue: handle), descriptors: [forwarder.clientEnd.descriptor],
                      afterSend: { forwarder.clientEnd.close() })
    }

    /// poll_cq on the control socket (sessions without the fast path).
    private func pollCQ(_ r: PollCQRequest) throws -> PollCQReply {
        let entry = try cq(r.cq)
        // verbs polls at most num_entries; the reply carries at most maxWCsPerPoll, and 0 asks for nothing.
        guard r.maxEntries > 0 else { return PollCQReply(completions: []) }
        let completions = try entry.cq.poll(max: Int32(min(r.maxEntries, UInt32(WireLimits.maxWCsPerPoll))))
        stats.completions &+= UInt64(completions.count)
        if !completions.isEmpty { metrics.completions.increment(by: Int64(completions.count)) }
        return PollCQReply(completions: completions)
    }

    /// reg_mr, over one memfd or several: checks every descriptor and segment, maps the segments side by side in one
    /// reserved range, closes the descriptors (the mapping keeps the pages) and registers the range at the client's
    /// address.
    private func registerMemory(_ r: RegMRSegmentsRequest, descriptors: [OwnedDescriptor]) throws -> RegMRReply {
        let protectionDomain = try pd(r.pd)
        let access = try Check.memoryAccess(r.access)
        try SessionLimits.checkCount(objects.mrs.count, limits.mrs, "MRs", flag: "max-mrs")
        // The router holds the client's descriptors until the pages are mapped.
        try SessionLimits.checkBudget(UInt64(objects.usage.descriptors), adding: UInt64(descriptors.count), UInt64(limits.descriptors),
                                      "router descriptors held (reg_mr's memfds)", flag: "max-descriptors", errno: Errno.tooManyDescriptors)
        var files: [MemoryFile] = []
        for (i, descriptor) in descriptors.enumerated() {
            do {
                var file = try MemoryFile.check(descriptor.rawValue)
                if backend.memoryAccess == .routerCopies {
                    // Once sealed, the size is read again: the one checked then stays true while the MR lives.
                    try MemoryFile.sealAgainstShrinking(descriptor.rawValue)
                    file = try MemoryFile.check(descriptor.rawValue)
                }
                files.append(file)
            } catch {
                throw Check.invalid("reg_mr\(descriptors.count > 1 ? " descriptor \(i)" : ""): \(error.detail ?? error.description)")
            }
        }
        let plan = try Check.segments(r, files: files, maxMRSize: backend.limits.maxMRSize)
        // Checked before anything is mapped or pinned.
        try SessionLimits.checkBudget(objects.usage.pinnedBytes, adding: plan.mapLength, limits.pinnedBytes, "registered bytes",
                                      flag: "max-pinned-bytes")
        let mapping = try MemoryMapping(length: plan.mapLength, segments: plan.segments.map {
            MappedSegment(fd: descriptors[$0.descriptor].rawValue, offset: $0.offset, length: $0.length, at: $0.at)
        })
        // The mapping keeps the pages; the client's descriptors are not needed any more.
        for descriptor in descriptors { descriptor.close() }
        let region = UnsafeMutableRawBufferPointer(rebasing: mapping.bytes[plan.bufferOffset..<(plan.bufferOffset + plan.bufferLength)])
        let mr = try protectionDomain.registerMemory(region, iova: r.address, access: access, keepAlive: mapping)
        let handle = objects.allocate()
        objects.mrs[handle] = ObjectTable.MREntry(mr: mr, pd: r.pd.rawValue, pinnedBytes: plan.mapLength)
        stats.registeredBytes &+= r.length
        return RegMRReply(mr: MRHandle(rawValue: handle), lkey: mr.lkey, rkey: mr.rkey)
    }

    private func createCQ(_ r: CreateCQRequest) throws -> CreateCQReply {
        let device = backend.limits
        guard let entries = Int32(exactly: r.cqe), entries >= 1, entries <= device.maxCQE else {
            throw Check.invalid("cqe \(r.cqe) outside 1...\(device.maxCQE)")
        }
        guard let vector = Int32(exactly: r.compVector), vector < device.completionVectors else {
            throw Check.invalid("comp_vector \(r.compVector) outside 0..<\(device.completionVectors)")
        }
        var forwarder: CompletionForwarder?
        if let channel = r.channel {
            guard let f = objects.channels[channel.rawValue] else { throw badHandle("completion channel", channel.rawValue) }
            forwarder = f
        }
        try SessionLimits.checkCount(objects.cqs.count, limits.cqs, "CQs", flag: "max-cqs")
        try SessionLimits.checkBudget(objects.usage.cqEntries, adding: UInt64(entries), limits.cqEntries, "CQ entries", flag: "max-cq-entries")
        // With the fast path every CQ reports to its poller's channel; the poller raises the client's events itself.
        let cq = try backend.createCQ(entries: entries, channel: fast?.channel ?? forwarder?.channel, vector: vector)
        let handle = objects.allocate()
        if let fast {
            try fast.addCQ(CQHandle(rawValue: handle), cq: cq, forwarder: forwarder)
        } else {
            forwarder?.attach(cq, as: CQHandle(rawValue: handle))
        }
        objects.cqs[handle] = ObjectTable.CQEntry(cq: cq, channel: r.channel?.rawValue, entries: UInt64(max(0, cq.capacity)))
        return CreateCQReply(cq: CQHandle(rawValue: handle), cqe: UInt32(max(0, cq.capacity)))
    }

    private func createQP(_ r: CreateQPRequest) throws -> CreateQPReply {
        let protectionDomain = try pd(r.pd)
        let send = try cq(r.sendCQ), receive = try cq(r.recvCQ)
        let shared = try r.srq.map { try srq($0) }
        let capabilities = try Check.capabilities(r.capabilities, backend.limits)
        guard let type = Verbs.QPType(rawValue: r.type.rawValue) else { throw Check.invalid("QP type \(r.type)") }
        try SessionLimits.checkCount(objects.qps.count, limits.qps, "QPs", flag: "max-qps")
        // With an SRQ the receive queue is the SRQ's, already counted.
        let depth = UInt64(capabilities.maxSendWorkRequests) + (shared == nil ? UInt64(capabilities.maxReceiveWorkRequests) : 0)
        try SessionLimits.checkBudget(objects.usage.workRequests, adding: depth, limits.workRequests, "queue depth (outstanding work requests)",
                                      flag: "max-work-requests")
        let qp = try protectionDomain.createQP(BackendQPConfiguration(type: type, sendCQ: send.cq, receiveCQ: receive.cq,
                                                                      sharedReceiveQueue: shared?.srq, capabilities: capabilities,
                                                                      signalAll: r.signalAll))
        let granted = qp.capabilities
        let handle = objects.allocate()
        try fast?.addQP(QPHandle(rawValue: handle), qp: qp, sendCQ: r.sendCQ.rawValue, receiveCQ: r.recvCQ.rawValue, srq: r.srq?.rawValue)
        objects.qps[handle] = ObjectTable.QPEntry(qp: qp, pd: r.pd.rawValue, sendCQ: r.sendCQ.rawValue, recvCQ: r.recvCQ.rawValue, srq: r.srq?.rawValue,
                                                  workRequests: UInt64(granted.maxSendWorkRequests) + (shared == nil ? UInt64(granted.maxReceiveWorkRequests) : 0))
        logger.debug("QP created", metadata: ["handle": "\(handle)", "qpn": "\(qp.number)", "type": "\(qp.type)"])
        return CreateQPReply(qp: QPHandle(rawValue: handle), qpNum: qp.number, capabilities: Translate.capabilities(granted))
    }

    private func createSRQ(_ r: CreateSRQRequest) throws -> CreateSRQReply {
        let protectionDomain = try pd(r.pd)
        let device = backend.limits
        _ = try Check.within(r.maxWR, 1...device.maxSRQWR, "srq max_wr")
        _ = try Check.within(r.maxSGE, 1...device.maxSRQSGE, "srq max_sge")
        _ = try Check.within(r.limit, 0...r.maxWR, "srq_limit")
        try SessionLimits.checkCount(objects.srqs.count, limits.srqs, "SRQs", flag: "max-srqs")
        try SessionLimits.checkBudget(objects.usage.workRequests, adding: UInt64(r.maxWR), limits.workRequests,
                                      "queue depth (outstanding work requests)", flag: "max-work-requests")
        let srq = try protectionDomain.createSRQ(maxWorkRequests: r.maxWR, maxSGE: r.maxSGE)
        if r.limit > 0 { try srq.setLimit(r.limit) }
        let handle = objects.allocate()
        try fast?.addSRQ(SRQHandle(rawValue: handle), srq: srq)
        objects.srqs[handle] = ObjectTable.SRQEntry(srq: srq, pd: r.pd.rawValue, workRequests: UInt64(srq.maxWorkRequests))
        return CreateSRQReply(srq: SRQHandle(rawValue: handle), maxWR: srq.maxWorkRequests, maxSGE: srq.maxSGE)
    }

    /// The client's attribute mask and values as a Verbs attribute set; the address vector is translated.
    private func verbsAttributes(_ mask: QPAttributeMask, _ a: FFProtocol.QPAttributes) throws -> Verbs.QPAttributes {
        var v = Verbs.QPAttributes()
        if mask.contains(.state) {
            guard a.state != .unknown, let state = Verbs.QPState(rawValue: a.state.rawValue) else {
                throw ErrorReply(errno: Errno.invalidArgument, reason: "QP state \(a.state) cannot be requested")
            }
            v.state = state
        }
        if mask.contains(.accessFlags) { v.access = Translate.access(a.accessFlags) }
        if mask.contains(.pkeyIndex) { v.pkeyIndex = a.pkeyIndex }
        if mask.contains(.port) { try checkPort(a.port); v.port = backend.port }
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
        // Inline payloads travel in the message (the decoder allows them only with IBV_SEND_INLINE and no SGEs, so the
        // device never reads an inline SGE from the router's own memory); they are copied into router memory the device
        // reads at post time.
        let inlineBytes = r.requests.reduce(0) { $0 + $1.inlineData.count }
        let inlineBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, inlineBytes), alignment: 8)
        defer { inlineBuffer.deallocate() }
        var inlineOffset = 0
        var requests: [BackendSendRequest] = []
        requests.reserveCapacity(r.requests.count)
        var bytes: UInt64 = 0
        for w in r.requests {
            var addressHandle: (any BackendAH)?
            if let ah = w.addressHandle {
                guard let entry = objects.ahs[ah.rawValue] else { throw badHandle("AH", ah.rawValue) }
                addressHandle = entry.ah
            }
            let request = Translate.send(w, addressHandle: addressHandle, inline: inlineBuffer.baseAddress! + inlineOffset)
            inlineOffset += w.inlineData.count
            bytes = request.scatterGather.reduce(bytes) { $0 &+ UInt64($1.length) }
            requests.append(request)
        }
        let reply = post(requests.count) { try entry.qp.postSend(requests) }
        if reply.errno == 0 {
            stats.sends &+= UInt64(requests.count)
            stats.bytesPosted &+= bytes
            metrics.postedOperations.increment(by: Int64(requests.count))
            metrics.postedBytes.increment(by: Int64(clamping: bytes))
        }
        return reply
    }

    /// Runs a post of `count` requests and turns a refusal into the reply's errno and index (as `bad_wr` reports it),
    /// an index that always names one of the requests (0 for an empty post).
    private func post(_ count: Int, _ body: () throws -> Void) -> PostReply {
        do {
            try body()
            return PostReply(errno: 0, failedIndex: 0)
        } catch let error as VerbsError {
            stats.errors &+= 1
            let index = min(max(0, error.failedWorkRequest ?? 0), max(0, count - 1))
            return PostReply(errno: error.errno == 0 ? Errno.invalidArgument : error.errno, failedIndex: UInt32(clamping: index))
        } catch {
            stats.errors &+= 1
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
