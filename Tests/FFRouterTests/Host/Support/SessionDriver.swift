import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFRouterAPI
import FFSystem
import Foundation
import Glibc
import Logging
import Synchronization
import XCTest

/// A vip map held in memory.
final class MemoryVipMap: VipResolver {
    private let entries: Mutex<[IPv4Address: IPv4Address]>
    private let ready: Mutex<Bool>
    init(_ entries: [IPv4Address: IPv4Address], ready: Bool = true) {
        self.entries = Mutex(entries)
        self.ready = Mutex(ready)
    }
    var isReady: Bool {
        get { ready.withLock { $0 } }
        set { ready.withLock { $0 = newValue } }
    }
    func physicalIP(for vip: IPv4Address) -> IPv4Address? { entries.withLock { $0[vip] } }
    var summary: MapSummary { MapSummary(entries: entries.withLock { $0.count }, revision: 1, source: "memory") }
}

/// Drives one router `Session` directly, as its connection would: each call encodes a frame, hands it to the session
/// with its descriptors, and decodes the reply. The session under test sees exactly what a socket would deliver.
final class SessionDriver {
    let session: Session
    let vip: IPv4Address
    private var nextRequestID: UInt64 = 1

    static let vipA = IPv4Address("10.9.0.1")!, vipB = IPv4Address("10.9.0.2")!
    static let map = MemoryVipMap([vipA: IPv4Address("10.0.2.15")!, vipB: IPv4Address("10.0.2.16")!])

    init(backend: any VerbsBackend, vip: IPv4Address = SessionDriver.vipA, id: UInt64 = 1, limits: SessionLimits = SessionLimits(),
         map: any VipResolver = SessionDriver.map, hello: Bool = true, dataPath: DataPath? = nil,
         connectionManager: ConnectionManagerService? = nil, capabilities: Capabilities = []) {
        self.vip = vip
        var logger = Logger(label: "test.session")
        logger.logLevel = .error
        session = Session(id: id, identity: ClientIdentity(pod: "pod-\(id)", vip: vip.description, pid: 1, uid: 0), vip: vip,
                          backend: backend, map: map, limits: limits, metrics: RouterMetrics(), logger: logger, dataPath: dataPath,
                          connectionManager: connectionManager)
        if hello {
            let offered: Capabilities = dataPath == nil ? capabilities : capabilities.union([.sharedMemoryRings])
            let reply = raw(Message(Hello(minVersion: 1, maxVersion: 1, capabilities: offered, clientName: "test")))
            guard reply.message.reply(to: Hello.self) != nil else { fatalError("hello refused: \(reply.message)") }
        }
    }

    /// The session's answer to `message` (with copies of `descriptors`), and what the reply carried.
    func raw(_ message: Message, descriptors: [Int32] = [], requestID: UInt64? = nil) -> (message: Message, requestID: UInt64, descriptors: [Int32]) {
        let id = requestID ?? { defer { nextRequestID += 1 }; return nextRequestID }()
        do {
            return rawBytes(try Frame(requestID: id, message: message).encode(), descriptors: descriptors)
        } catch {
            XCTFail("\(message.kind) is not well-formed: \(error)")
            return (.error(ErrorReply(errno: -1, reason: "not encodable")), id, [])
        }
    }

    /// The session's answer to a datagram of `bytes`.
    func rawBytes(_ bytes: [UInt8], descriptors: [Int32] = [], truncated: Bool = false) -> (message: Message, requestID: UInt64, descriptors: [Int32]) {
        let owned = descriptors.map { OwnedDescriptor(taking: dup($0)) }
        let reply = session.handle(Datagram(bytes: bytes, descriptors: owned, truncated: truncated))
        let encoded = try! reply.encode()
        let sentDescriptors = reply.descriptors.map { dup($0) }
        reply.afterSend?()
        let frame = try! Frame.decode(encoded)
        return (frame.message, frame.requestID, sentDescriptors)
    }

    /// The reply to `message`, failing the test on an error reply.
    @discardableResult
    func ok(_ message: Message, descriptors: [Int32] = [], file: StaticString = #filePath, line: UInt = #line) -> Message {
        let reply = raw(message, descriptors: descriptors).message
        if let e = reply.errorReply { XCTFail("\(message.kind) refused: \(e)", file: file, line: line) }
        return reply
    }

    /// The error reply to `message`, failing the test if it succeeded.
    func refused(_ message: Message, descriptors: [Int32] = [], file: StaticString = #filePath, line: UInt = #line) -> ErrorReply {
        let reply = raw(message, descriptors: descriptors).message
        guard let e = reply.errorReply else {
            XCTFail("\(message.kind) was accepted: \(reply)", file: file, line: line)
            return ErrorReply(errno: 0, reason: "")
        }
        return e
    }

    func allocPD() -> PDHandle {
        guard let h = ok(Message(AllocPDRequest())).reply(to: AllocPDRequest.self) else { return PDHandle(rawValue: 0) }
        return h
    }

    func registerMemory(_ pd: PDHandle, _ memory: SharedMemory, offset: Int = 0, length: Int? = nil,
                        access: AccessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]) -> RegMRReply {
        let count = length ?? (memory.bytes.count - offset)
        let request = RegMRRequest(pd: pd, access: access, address: memory.address + UInt64(offset), length: UInt64(count), memfdOffset: UInt64(offset))
        guard let r = ok(Message(request), descriptors: [memory.descriptor.rawValue]).reply(to: RegMRRequest.self) else { return RegMRReply(mr: MRHandle(rawValue: 0), lkey: 0, rkey: 0) }
        return r
    }

    func createCQ(_ cqe: UInt32 = 64, channel: CompChannelHandle? = nil) -> CQHandle {
        guard let r = ok(Message(CreateCQRequest(cqe: cqe, channel: channel))).reply(to: CreateCQRequest.self) else { return CQHandle(rawValue: 0) }
        return r.cq
    }

    func createQP(_ pd: PDHandle, _ cq: CQHandle, type: QPType = .rc, srq: SRQHandle? = nil, depth: UInt32 = 32) -> (QPHandle, UInt32) {
        let caps = QPCapabilities(maxSendWR: depth, maxRecvWR: depth, maxSendSGE: 2, maxRecvSGE: 2, maxInlineData: 64)
        let request = CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, srq: srq, type: type, signalAll: false, capabilities: caps)
        guard let r = ok(Message(request)).reply(to: CreateQPRequest.self) else { return (QPHandle(rawValue: 0), 0) }
        return (r.qp, r.qpNum)
    }

    /// Moves `qp` through INIT, RTR and RTS towards `peerQPN` at `peerVIP` (RC/UC), or to RTS (UD).
    func connect(_ qp: QPHandle, type: QPType = .rc, to peerQPN: UInt32, at peerVIP: IPv4Address, file: StaticString = #filePath, line: UInt = #line) {
        var a = FFProtocol.QPAttributes()
        a.state = .initialized
        a.port = 1
        a.accessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
        a.qkey = 0x1111_1111
        ok(Message(ModifyQPRequest(qp: qp, mask: [.state, .pkeyIndex, .port, type == .ud ? .qkey : .accessFlags], attributes: a)), file: file, line: line)
        a.state = .readyToReceive
        a.addressVector = AHAttributes(globalRoute: FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: peerVIP)), port: 1)
        a.pathMTU = .mtu1024
        a.destQPN = peerQPN
        a.maxDestReadAtomic = 1
        a.minRNRTimer = 12
        let rtr: QPAttributeMask = switch type {
        case .rc: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN, .maxDestReadAtomic, .minRNRTimer]
        case .uc: [.state, .addressVector, .pathMTU, .destQPN, .rqPSN]
        case .ud: [.state]
        }
        ok(Message(ModifyQPRequest(qp: qp, mask: rtr, attributes: a)), file: file, line: line)
        a.state = .readyToSend
        a.timeout = 14
        a.retryCount = 7
        a.rnrRetry = 7
        a.maxReadAtomic = 1
        let rts: QPAttributeMask = type == .rc ? [.state, .sqPSN, .timeout, .retryCount, .rnrRetry, .maxReadAtomic] : [.state, .sqPSN]
        ok(Message(ModifyQPRequest(qp: qp, mask: rts, attributes: a)), file: file, line: line)
    }

    func poll(_ cq: CQHandle, max: UInt32 = 16) -> [WorkCompletion] {
        guard let r = ok(Message(PollCQRequest(cq: cq, maxEntries: max))).reply(to: PollCQRequest.self) else { return [] }
        return r.completions
    }
}

/// Two pods on one backend, each with 8 KiB of memory, a PD, an MR, a CQ and an RC QP connected to the other's;
/// B's CQ reports to a completion channel when `channelOnB` (its descriptor is `channelDescriptor`).
struct PodPair {
    let a: SessionDriver, b: SessionDriver
    let memA: SharedMemory, memB: SharedMemory
    let mrA: RegMRReply, mrB: RegMRReply
    let cqA: CQHandle, cqB: CQHandle
    let qpA: QPHandle, qpB: QPHandle
    let channel: CompChannelHandle?
    let channelDescriptor: Int32?

    /// The pair on `backend`, translating through `map` (pods a and b are `SessionDriver.vipA` and `vipB`).
    init(backend: any VerbsBackend, map: any VipResolver = SessionDriver.map, channelOnB: Bool = false,
         dataPath: DataPath? = nil) throws {
        a = SessionDriver(backend: backend, vip: SessionDriver.vipA, id: 1, map: map, dataPath: dataPath)
        b = SessionDriver(backend: backend, vip: SessionDriver.vipB, id: 2, map: map, dataPath: dataPath)
        if channelOnB, case let reply = b.raw(Message(CreateCompChannelRequest())), let handle = reply.message.reply(to: CreateCompChannelRequest.self) {
            channel = handle
            channelDescriptor = reply.descriptors.first
        } else {
            channel = nil
            channelDescriptor = nil
        }
        memA = try SharedMemory(name: "a", size: 8192)
        memB = try SharedMemory(name: "b", size: 8192)
        let pdA = a.allocPD(), pdB = b.allocPD()
        mrA = a.registerMemory(pdA, memA)
        mrB = b.registerMemory(pdB, memB)
        cqA = a.createCQ()
        cqB = b.createCQ(channel: channel)
        let (qa, qpnA) = a.createQP(pdA, cqA), (qb, qpnB) = b.createQP(pdB, cqB)
        qpA = qa
        qpB = qb
        a.connect(qpA, to: qpnB, at: SessionDriver.vipB)
        b.connect(qpB, to: qpnA, at: SessionDriver.vipA)
    }
}
