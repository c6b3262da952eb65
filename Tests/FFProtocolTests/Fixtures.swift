import FFProtocol

import Testing

enum Fixtures {
    static let vip = IPv4Address(10, 244, 1, 17)
    static let peerGID = GID(ipv4Mapped: IPv4Address(10, 244, 2, 9))

    static let cap = QPCapabilities(maxSendWR: 512, maxRecvWR: 1024, maxSendSGE: 4, maxRecvSGE: 2, maxInlineData: 220)

    static var rtrAttributes: QPAttributes {
        var a = QPAttributes()
        a.state = .readyToReceive
        a.pathMTU = .mtu4096
        a.qkey = 0x1111_2222
        a.rqPSN = 0xABCDEF
        a.sqPSN = 0x123456
        a.destQPN = 0x00_0F_0E
        a.accessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
        a.pkeyIndex = 3
        a.maxReadAtomic = 16
        a.maxDestReadAtomic = 8
        a.minRNRTimer = 12
        a.port = 1
        a.timeout = 14
        a.retryCount = 7
        a.rnrRetry = 6
        a.addressVector = AHAttributes(
            globalRoute: GlobalRoute(destinationGID: peerGID, flowLabel: 0xFFFFF, sourceGIDIndex: 3, hopLimit: 255, trafficClass: 106),
            destinationLID: 0x1234, serviceLevel: 15, sourcePathBits: 127, staticRate: 7, port: 2)
        return a
    }

    static var device: DeviceAttributes {
        var d = DeviceAttributes()
        d.firmwareVersion = "freeflow-1.0 ünï"
        d.nodeGUID = 0x0011_2233_4455_6677
        d.systemImageGUID = 0x8899_AABB_CCDD_EEFF
        d.maxMRSize = 1 << 40
        d.pageSizeCap = 0xFFFF_F000
        d.vendorID = 0xFFFFFF
        d.vendorPartID = 0xF1F0
        d.hardwareVersion = 2
        d.deviceCapFlags = 0xDEAD_BEEF
        d.atomicCap = .hca
        d.maxQP = 1 << 17
        d.maxQPWR = 32768
        d.maxSGE = 30
        d.maxSGERead = 30
        d.maxCQ = 1 << 16
        d.maxCQE = 4_194_303
        d.maxMR = 1 << 20
        d.maxPD = 1 << 18
        d.maxQPReadAtomic = 16
        d.maxResourceReadAtomic = 1 << 21
        d.maxQPInitReadAtomic = 16
        d.maxAH = Int32.max
        d.maxSRQ = 1 << 23
        d.maxSRQWR = 32767
        d.maxSRQSGE = 31
        d.maxPkeys = 128
        d.localCAAckDelay = 16
        d.physicalPortCount = 1
        return d
    }

    static var port: PortAttributes {
        var p = PortAttributes()
        p.state = .active
        p.maxMTU = .mtu4096
        p.activeMTU = .mtu2048
        p.gidTableLength = 256
        p.portCapFlags = 0x0401_0000
        p.maxMessageSize = 1 << 30
        p.badPkeyCounter = 5
        p.qkeyViolationCounter = 6
        p.pkeyTableLength = 1
        p.lid = 7
        p.smLID = 8
        p.portCapFlags2 = 0x20
        p.lmc = 1
        p.maxVLNum = 4
        p.smSL = 2
        p.subnetTimeout = 18
        p.initTypeReply = 3
        p.activeWidth = 2
        p.activeSpeed = 32
        p.physicalState = 5
        p.linkLayer = .ethernet
        p.flags = 1
        return p
    }

    static let sges = [
        ScatterGatherEntry(address: 0x7F00_DEAD_0000, length: 4096, lkey: 0x100),
        ScatterGatherEntry(address: 0x7F00_DEAD_1000, length: 1, lkey: 0x101),
    ]

    static let completions = [
        WorkCompletion(wrID: 1, status: .success, opcode: .receive, vendorError: 0, byteLength: 4096, immData: 0xCAFE_BABE,
                       qpNum: 0x123, sourceQP: 0x456, flags: [.withImmediate, .grh], pkeyIndex: 1, sourceLID: 2, serviceLevel: 3, dlidPathBits: 4),
        WorkCompletion(wrID: .max, status: .retryExceeded, opcode: .rdmaRead, vendorError: 0x81, qpNum: 0x124),
        WorkCompletion(wrID: 3, status: .tagMatchingRendezvousIncomplete, opcode: .receiveRDMAWithImmediate, flags: .supported),
    ]

    /// A registration over three segments of two memfds, descriptor 1 named twice (which the codec allows; whether
    /// the pages fit is the router's check).
    static let segmentsSample = RegMRSegmentsRequest(
        pd: PDHandle(rawValue: 9), access: [.localWrite, .remoteWrite], address: 0x7F12_3456_7100, length: 0xF00 + 0x2000 + 0x10,
        descriptorCount: 2, segments: [MemorySegment(descriptor: 1, memfdOffset: 0x3100, length: 0xF00),
                                       MemorySegment(descriptor: 0, memfdOffset: 0, length: 0x2000),
                                       MemorySegment(descriptor: 1, memfdOffset: 0x8000, length: 0x10)])

    /// One non-trivial message of every kind.
    static let samples: [Message] = [
        Message(Hello(minVersion: 1, maxVersion: 3, capabilities: [.sharedMemoryRings, Capabilities(rawValue: 1 << 40)], clientName: "ib_write_bw pid 4242")),
        Message.reply(to: Hello.self, HelloReply(version: 1, capabilities: [.sharedMemoryRings], sessionID: 0x0102_0304_0506_0708, vip: vip, gid: GID(ipv4Mapped: vip))),
        .error(ErrorReply(errno: Errno.hostUnreachable, reason: "no route to vip 10.244.9.9 (not in the vip→pip map)")),
        Message(QueryDeviceRequest()),
        Message.reply(to: QueryDeviceRequest.self, device),
        Message(QueryPortRequest(port: 1)),
        Message.reply(to: QueryPortRequest.self, port),
        Message(QueryGIDRequest(port: 2, index: 0x7FFF_FFFF)),
        Message.reply(to: QueryGIDRequest.self, GID(bytes: [0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xFF, 0xFE, 0x33, 0x44, 0x55])!),
        Message(AllocPDRequest()),
        Message.reply(to: AllocPDRequest.self, PDHandle(rawValue: 1)),
        Message(DeallocPDRequest(pd: PDHandle(rawValue: .max))),
        Message.reply(to: DeallocPDRequest.self, EmptyBody()),
        Message(RegMRRequest(pd: PDHandle(rawValue: 9), access: [.localWrite, .remoteRead, .relaxedOrdering], address: 0x7F12_3456_7000, length: 1 << 21, memfdOffset: 0x1000)),
        Message.reply(to: RegMRRequest.self, RegMRReply(mr: MRHandle(rawValue: 3), lkey: 0xAABB_CCDD, rkey: 0x1122_3344)),
        Message(DeregMRRequest(mr: MRHandle(rawValue: 3))),
        Message.reply(to: DeregMRRequest.self, EmptyBody()),
        Message(segmentsSample),
        Message.reply(to: RegMRSegmentsRequest.self, RegMRReply(mr: MRHandle(rawValue: 4), lkey: 0x0102_0304, rkey: 0x0506_0708)),
        Message(CreateCompChannelRequest()),
        Message.reply(to: CreateCompChannelRequest.self, CompChannelHandle(rawValue: 77)),
        Message(DestroyCompChannelRequest(channel: CompChannelHandle(rawValue: 77))),
        Message.reply(to: DestroyCompChannelRequest.self, EmptyBody()),
        Message(CreateCQRequest(cqe: 4096, channel: CompChannelHandle(rawValue: 77), compVector: 3)),
        Message.reply(to: CreateCQRequest.self, CreateCQReply(cq: CQHandle(rawValue: 5), cqe: 8191)),
        Message(DestroyCQRequest(cq: CQHandle(rawValue: 5))),
        Message.reply(to: DestroyCQRequest.self, EmptyBody()),
        Message(ReqNotifyCQRequest(cq: CQHandle(rawValue: 5), solicitedOnly: true)),
        Message.reply(to: ReqNotifyCQRequest.self, EmptyBody()),
        Message(CreateQPRequest(pd: PDHandle(rawValue: 9), sendCQ: CQHandle(rawValue: 5), recvCQ: CQHandle(rawValue: 6), srq: SRQHandle(rawValue: 2), type: .uc, signalAll: true, capabilities: cap)),
        Message.reply(to: CreateQPRequest.self, CreateQPReply(qp: QPHandle(rawValue: 11), qpNum: 0xFFFFFF, capabilities: cap)),
        Message(ModifyQPRequest(qp: QPHandle(rawValue: 11), mask: .supported, attributes: rtrAttributes)),
        Message.reply(to: ModifyQPRequest.self, EmptyBody()),
        Message(QueryQPRequest(qp: QPHandle(rawValue: 11), mask: [.state, .addressVector, .destQPN])),
        Message.reply(to: QueryQPRequest.self, QueryQPReply(attributes: rtrAttributes, type: .rc, capabilities: cap)),
        Message(DestroyQPRequest(qp: QPHandle(rawValue: 11))),
        Message.reply(to: DestroyQPRequest.self, EmptyBody()),
        Message(CreateSRQRequest(pd: PDHandle(rawValue: 9), maxWR: 2048, maxSGE: 32, limit: 100)),
        Message.reply(to: CreateSRQRequest.self, CreateSRQReply(srq: SRQHandle(rawValue: 2), maxWR: 4096, maxSGE: 31)),
        Message(ModifySRQRequest(srq: SRQHandle(rawValue: 2), mask: [.limit], maxWR: 0, limit: 64)),
        Message.reply(to: ModifySRQRequest.self, EmptyBody()),
        Message(DestroySRQRequest(srq: SRQHandle(rawValue: 2))),
        Message.reply(to: DestroySRQRequest.self, EmptyBody()),
        Message(CreateAHRequest(pd: PDHandle(rawValue: 9), attributes: AHAttributes(globalRoute: GlobalRoute(destinationGID: peerGID), port: 1))),
        Message.reply(to: CreateAHRequest.self, AHHandle(rawValue: 4)),
        Message(DestroyAHRequest(ah: AHHandle(rawValue: 4))),
        Message.reply(to: DestroyAHRequest.self, EmptyBody()),
        Message(PostSendRequest(qp: QPHandle(rawValue: 11), requests: [
            SendWorkRequest(wrID: 1, opcode: .rdmaWriteWithImmediate, flags: [.signaled, .fence], immData: 0x0100_0000, remoteAddress: 0x7F99_0000_0000, rkey: 0x55, sgList: sges),
            SendWorkRequest(wrID: 2, opcode: .atomicCompareAndSwap, flags: [.signaled], remoteAddress: 0x7F99_0000_0008, rkey: 0x55, compareAdd: 42, swap: 43, sgList: [sges[0]]),
            SendWorkRequest(wrID: 3, opcode: .send, flags: [.inline, .solicited], addressHandle: AHHandle(rawValue: 4), remoteQPN: 0x77, remoteQKey: 0x1111_2222, inlineData: Array("hello, peer".utf8)),
        ])),
        Message.reply(to: PostSendRequest.self, PostReply(errno: Errno.outOfMemory, failedIndex: 2)),
        Message(PostRecvRequest(target: QPHandle(rawValue: 11), requests: [ReceiveWorkRequest(wrID: 10, sgList: sges), ReceiveWorkRequest(wrID: 11, sgList: [])])),
        Message.reply(to: PostRecvRequest<QPHandle>.self, .success),
        Message(PostRecvRequest(target: SRQHandle(rawValue: 2), requests: [ReceiveWorkRequest(wrID: 12, sgList: [sges[1]])])),
        Message.reply(to: PostRecvRequest<SRQHandle>.self, PostReply(errno: Errno.invalidArgument, failedIndex: 0)),
        Message(PollCQRequest(cq: CQHandle(rawValue: 5), maxEntries: 256)),
        Message.reply(to: PollCQRequest.self, PollCQReply(completions: completions)),
        Message(MapRingRequest(target: .qp, handle: 0xFFFF_FFFF)),
        Message.reply(to: MapRingRequest.self, MapRingReply(size: 3 * 4096)),
        Message(CMCreateChannelRequest()),
        Message.reply(to: CMCreateChannelRequest.self, CMChannelHandle(rawValue: 3)),
        Message(CMRequest.connect(CMConnectionParameters(id: CMIDHandle(rawValue: 9), qpNum: 0x11, responderResources: 1, initiatorDepth: 1,
                                                privateData: Array("ping".utf8)))),
        Message.reply(to: CMRequest.self, CMReply(id: CMIDHandle(rawValue: 9), address: IPv4Address(10, 9, 0, 1), port: 7471)),
    ]

    /// The sample frames encoded, with distinct request ids.
    static func encodedSamples() throws -> [(Message, [UInt8])] {
        try samples.enumerated().map { i, m in (m, try Frame(requestID: 0xF00D_0000 + UInt64(i), message: m).encode()) }
    }

    /// Rewrites the header's body length to match a modified body.
    static func refreshLength(_ bytes: inout [UInt8]) {
        let n = UInt32(bytes.count - WireHeader.size)
        for i in 0..<4 { bytes[12 + i] = UInt8(truncatingIfNeeded: n >> (8 * i)) }
    }

    static func put32(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    static func put16(_ value: UInt16, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<2 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}

/// Runs `body` and returns the WireError it threw, or nil if it succeeded.
/// Any other error type is recorded as a test failure: the codec must only throw WireError.
func wireError(_ body: () throws -> Void) -> WireError? {
    do {
        try body()
        return nil
    } catch let error as WireError {
        return error
    } catch {
        Issue.record("threw \(type(of: error)), not WireError: \(error)")
        return nil
    }
}
