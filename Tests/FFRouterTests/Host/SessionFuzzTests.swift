import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Foundation
import Glibc
import XCTest

/// A structure-aware fuzzer for the router's session: after a valid setup, a hostile client sends well-formed
/// messages of every request kind with extreme field values (0, 1, max, max-1, 2^31, 2^63, lengths past the memfd,
/// junk descriptors), mixing in the handles it really owns so that requests get past the handle checks. The router
/// must never trap, must answer every request with its reply kind or an error, and a well-behaved client served
/// alongside must get correct answers throughout. The seed is printed; FFFUZZ_SEED and FFFUZZ_MESSAGES override.
final class SessionFuzzTests: XCTestCase {
    func testExtremeWellFormedRequestsOfEveryKindNeverTrapWhileAGoodClientKeepsWorking() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["FFFUZZ_SEED"].flatMap { UInt64($0) } ?? 0xF3EE_F10A_2026
        let target = env["FFFUZZ_MESSAGES"].flatMap { Int($0) } ?? 100_000
        print("session fuzz: seed \(seed), \(target) messages (FFFUZZ_SEED=\(seed) reproduces)")
        var rng = FuzzRandom(seed: seed)
        let backend = FakeBackend()
        var limits = SessionLimits()
        limits.mrs = 64
        limits.pds = 16
        limits.cqs = 64
        limits.qps = 64
        limits.completionChannels = 8
        let hostile = SessionDriver(backend: backend, vip: SessionDriver.vipA, id: 1, limits: limits)
        let good = try GoodClient(backend: backend)
        var pool = try HandlePool(hostile)
        var sent = 0, errors = 0, attempts = 0
        var kinds: [MessageKind: Int] = [:]
        var accepted: [MessageKind: Int] = [:]
        while sent < target {
            attempts += 1
            XCTAssertLessThan(attempts, target * 20, "the generator produces too few well-formed messages")
            if attempts >= target * 20 { break }
            let message = FuzzGenerator.message(&rng, pool)
            let requestID = rng.extremeU64()
            guard let bytes = try? Frame(requestID: requestID, message: message).encode() else { continue }
            var descriptors: [Int32] = []
            if message.kind == RegMRRequest.kind { descriptors = [pool.memoryDescriptor(&rng)] }
            let reply = hostile.rawBytes(bytes, descriptors: descriptors)
            for fd in reply.descriptors { close(fd) }
            sent += 1
            kinds[message.kind, default: 0] += 1
            XCTAssertEqual(reply.requestID, requestID, "the reply answers its request")
            if let e = reply.message.errorReply {
                if ProcessInfo.processInfo.environment["FFFUZZ_DEBUG"] == "\(message.kind)" { print("\(message.kind) refused: \(e.reason)") }
                errors += 1
            } else {
                XCTAssertEqual(reply.message.kind.rawValue, message.kind.rawValue | 0x8000, "\(message.kind) answered with \(reply.message.kind)")
                pool.learn(from: reply.message)
                pool.forget(after: message)
                if let p = reply.message.reply(to: PostSendRequest.self), p.errno == 0 { accepted[PostSendRequest.kind, default: 0] += 1 }
                if reply.message.reply(to: ModifyQPRequest.self) != nil { accepted[ModifyQPRequest.kind, default: 0] += 1 }
            }
            if sent % 500 == 0 { try good.roundTrip(sent) }
            if sent % 200 == 0 { pool.replenish(hostile) }
        }
        print("session fuzz: \(sent) sent (\(attempts - sent) not well-formed, skipped), \(errors) refused, \(kinds.count) kinds, "
              + "\(accepted[ModifyQPRequest.kind, default: 0]) QP transitions and "
              + "\(accepted[PostSendRequest.kind, default: 0]) posts accepted")
        XCTAssertEqual(kinds.count, FuzzGenerator.kindCount, "every request kind was sent")
        XCTAssertGreaterThan(sent - errors, sent / 50, "some requests got past the checks and ran")
        hostile.session.close()
        try good.roundTrip(sent)
        good.close()
        pool.close()
        try eventuallyBlocking("every object destroyed") { backend.liveObjects.isEmpty }
    }
}

/// Seeded random values that favour the ones that break arithmetic.
struct FuzzRandom: RandomNumberGenerator {
    private var bits: SplitMix64
    init(seed: UInt64) { bits = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { bits.next() }

    mutating func extremeU64() -> UInt64 {
        let edges: [UInt64] = [0, 1, 2, .max, .max - 1, 1 << 31, (1 << 31) - 1, 1 << 32, 1 << 63, (1 << 63) - 1, 4095, 4096, 4097, 1 << 62]
        return Int.random(in: 0..<4, using: &self) == 0 ? next() : edges.randomElement(using: &self)!
    }

    mutating func extremeU32() -> UInt32 {
        let edges: [UInt32] = [0, 1, 2, .max, .max - 1, 1 << 31, (1 << 31) - 1, 16, 32, 33, 256, 257, 4096, 0xFF_FFFF]
        return Int.random(in: 0..<4, using: &self) == 0 ? UInt32(truncatingIfNeeded: next()) : edges.randomElement(using: &self)!
    }

    mutating func extremeU16() -> UInt16 { UInt16(truncatingIfNeeded: [0, 1, .max, 0x8000, 64].randomElement(using: &self)! as UInt32) }
    mutating func extremeU8() -> UInt8 { [0, 1, 2, 7, 31, 0x80, .max].randomElement(using: &self)! }
    mutating func chance(_ oneIn: Int) -> Bool { Int.random(in: 0..<oneIn, using: &self) == 0 }
}

/// Handles the hostile client really owns (so requests reach the verbs), its memory, and junk descriptors.
struct HandlePool {
    var pds: [UInt32] = [], mrs: [UInt32] = [], channels: [UInt32] = [], cqs: [UInt32] = [], qps: [UInt32] = [], srqs: [UInt32] = [], ahs: [UInt32] = []
    var qpns: [UInt32] = []
    var keys: [UInt32] = []
    let memory: SharedMemory
    let junk: [Int32]

    init(_ client: SessionDriver) throws {
        memory = try SharedMemory(name: "fuzz", size: 64 * 1024)
        var pipeFDs: [Int32] = [-1, -1]
        _ = pipe(&pipeFDs)
        // A memfd of one page: valid memory, but most lengths run past it.
        let small = dup(try SharedMemory(name: "small", size: 1).descriptor.rawValue)
        junk = pipeFDs + [open("/proc/self/stat", O_RDONLY), small, socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)]
        replenish(client)
    }

    /// Makes a valid set of objects again once the fuzzed requests have destroyed the last of a kind, so that later
    /// requests keep reaching live objects (creation may be refused by the session's limits; then the pool stays as is).
    mutating func replenish(_ client: SessionDriver) {
        func created(_ message: Message, descriptors: [Int32] = []) -> Message? {
            let reply = client.raw(message, descriptors: descriptors).message
            if reply.errorReply != nil { return nil }
            learn(from: reply)
            return reply
        }
        if pds.isEmpty { _ = created(Message(AllocPDRequest())) }
        guard let pd = pds.last.map(PDHandle.init(rawValue:)) else { return }
        if mrs.isEmpty {
            _ = created(Message(RegMRRequest(pd: pd, access: [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic], address: memory.address,
                                            length: UInt64(memory.bytes.count), memfdOffset: 0)), descriptors: [memory.descriptor.rawValue])
        }
        if channels.isEmpty { _ = created(Message(CreateCompChannelRequest())) }
        if cqs.isEmpty { _ = created(Message(CreateCQRequest(cqe: 256, channel: channels.last.map(CompChannelHandle.init(rawValue:))))) }
        if srqs.isEmpty { _ = created(Message(CreateSRQRequest(pd: pd, maxWR: 16, maxSGE: 1))) }
        guard let cq = cqs.last.map(CQHandle.init(rawValue:)) else { return }
        if qps.count < 2 {
            var rc: [(QPHandle, UInt32)] = []
            for type in [QPType.rc, .rc, .uc, .ud] {
                let caps = QPCapabilities(maxSendWR: 16, maxRecvWR: 16, maxSendSGE: 3, maxRecvSGE: 3, maxInlineData: 64)
                if let r = created(Message(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: type, signalAll: false,
                                                                                  capabilities: caps)))?.reply(to: CreateQPRequest.self), type == .rc {
                    rc.append((r.qp, r.qpNum))
                }
            }
            // One connected RC pair in RTS, so that fuzzed posts really move data between the session's own QPs.
            if rc.count == 2 {
                client.connect(rc[0].0, to: rc[1].1, at: client.vip)
                client.connect(rc[1].0, to: rc[0].1, at: client.vip)
            }
        }
    }

    func memoryDescriptor(_ rng: inout FuzzRandom) -> Int32 { rng.chance(3) ? junk.randomElement(using: &rng)! : memory.descriptor.rawValue }

    mutating func learn(from reply: Message) {
        if let h = reply.reply(to: AllocPDRequest.self) { pds.append(h.rawValue) }
        if let r = reply.reply(to: RegMRRequest.self) { mrs.append(r.mr.rawValue); keys += [r.lkey, r.rkey] }
        if let h = reply.reply(to: CreateCompChannelRequest.self) { channels.append(h.rawValue) }
        if let r = reply.reply(to: CreateCQRequest.self) { cqs.append(r.cq.rawValue) }
        if let r = reply.reply(to: CreateQPRequest.self) { qps.append(r.qp.rawValue); qpns.append(r.qpNum) }
        if let r = reply.reply(to: CreateSRQRequest.self) { srqs.append(r.srq.rawValue) }
        if let h = reply.reply(to: CreateAHRequest.self) { ahs.append(h.rawValue) }
    }

    /// Drops a handle the session destroyed, so that later requests keep reaching live objects.
    mutating func forget(after request: Message) {
        if let r = request.request(DeallocPDRequest.self) { pds.removeAll { $0 == r.pd.rawValue } }
        if let r = request.request(DeregMRRequest.self) { mrs.removeAll { $0 == r.mr.rawValue } }
        if let r = request.request(DestroyCompChannelRequest.self) { channels.removeAll { $0 == r.channel.rawValue } }
        if let r = request.request(DestroyCQRequest.self) { cqs.removeAll { $0 == r.cq.rawValue } }
        if let r = request.request(DestroyQPRequest.self) { qps.removeAll { $0 == r.qp.rawValue } }
        if let r = request.request(DestroySRQRequest.self) { srqs.removeAll { $0 == r.srq.rawValue } }
        if let r = request.request(DestroyAHRequest.self) { ahs.removeAll { $0 == r.ah.rawValue } }
    }

    func close() { for fd in junk { Glibc.close(fd) } }
}

/// Builds requests of every kind from extreme values and owned handles.
enum FuzzGenerator {
    static let kindCount = 25

    private static func handle(_ rng: inout FuzzRandom, _ owned: [UInt32]) -> UInt32 {
        !owned.isEmpty && rng.chance(2) ? owned.randomElement(using: &rng)! : rng.extremeU32()
    }

    private static func address(_ rng: inout FuzzRandom, _ pool: HandlePool) -> UInt64 {
        rng.chance(2) ? pool.memory.address &+ UInt64.random(in: 0...70_000, using: &rng) : rng.extremeU64()
    }

    private static func gid(_ rng: inout FuzzRandom) -> GID {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: GID(ipv4Mapped: SessionDriver.vipB)
        case 1: GID(ipv4Mapped: IPv4Address(UInt8.random(in: 0...255, using: &rng), 0, 0, 1))
        default: GID(bytes: (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) })!
        }
    }

    private static func av(_ rng: inout FuzzRandom) -> AHAttributes {
        AHAttributes(globalRoute: rng.chance(5) ? nil : FFProtocol.GlobalRoute(destinationGID: gid(&rng), flowLabel: rng.extremeU32() & 0xF_FFFF,
                                                                              sourceGIDIndex: rng.extremeU8(), hopLimit: rng.extremeU8(), trafficClass: rng.extremeU8()),
                     destinationLID: rng.extremeU16(), serviceLevel: rng.extremeU8() & 0xF, sourcePathBits: rng.extremeU8() & 0x7F,
                     staticRate: rng.extremeU8(), port: rng.chance(4) ? rng.extremeU8() : 1)
    }

    private static func sges(_ rng: inout FuzzRandom, _ pool: HandlePool) -> [ScatterGatherEntry] {
        (0..<Int.random(in: 0...3, using: &rng)).map { _ in
            ScatterGatherEntry(address: address(&rng, pool), length: rng.chance(2) ? UInt32.random(in: 0...9000, using: &rng) : rng.extremeU32(),
                               lkey: rng.chance(2) ? pool.keys.randomElement(using: &rng)! : rng.extremeU32())
        }
    }

    private static func sendRequest(_ rng: inout FuzzRandom, _ pool: HandlePool) -> SendWorkRequest {
        let flags = SendFlags(rawValue: UInt32.random(in: 0...15, using: &rng))
        let inline = flags.contains(.inline)
        return SendWorkRequest(wrID: rng.extremeU64(), opcode: SendOpcode.allCases.randomElement(using: &rng)!, flags: flags,
                               immData: rng.extremeU32(), remoteAddress: address(&rng, pool),
                               rkey: rng.chance(2) ? pool.keys.randomElement(using: &rng)! : rng.extremeU32(),
                               compareAdd: rng.extremeU64(), swap: rng.extremeU64(),
                               addressHandle: rng.chance(3) ? AHHandle(rawValue: handle(&rng, pool.ahs)) : nil,
                               remoteQPN: rng.chance(2) ? (pool.qpns.randomElement(using: &rng) ?? 0) : rng.extremeU32() & 0xFF_FFFF,
                               remoteQKey: rng.extremeU32(), sgList: inline ? [] : sges(&rng, pool),
                               inlineData: inline ? (0..<Int.random(in: 0...600, using: &rng)).map { UInt8(truncatingIfNeeded: $0) } : [])
    }

    private static func attributes(_ rng: inout FuzzRandom, _ pool: HandlePool) -> FFProtocol.QPAttributes {
        var a = FFProtocol.QPAttributes()
        a.state = FFProtocol.QPState.allCases.randomElement(using: &rng)!
        a.rqPSN = rng.extremeU32() & 0xFF_FFFF
        a.sqPSN = rng.extremeU32() & 0xFF_FFFF
        a.destQPN = rng.chance(2) ? (pool.qpns.randomElement(using: &rng) ?? 0) : rng.extremeU32() & 0xFF_FFFF
        a.accessFlags = AccessFlags(rawValue: UInt32.random(in: 0...15, using: &rng))
        a.pkeyIndex = rng.extremeU16()
        a.maxReadAtomic = rng.extremeU8()
        a.maxDestReadAtomic = rng.extremeU8()
        a.minRNRTimer = rng.extremeU8() & 0x1F
        a.port = rng.chance(3) ? rng.extremeU8() : 1
        a.timeout = rng.extremeU8() & 0x1F
        a.retryCount = rng.extremeU8() & 7
        a.rnrRetry = rng.extremeU8() & 7
        a.pathMTU = FFProtocol.MTU.allCases.randomElement(using: &rng)!
        a.qkey = rng.extremeU32()
        a.addressVector = av(&rng)
        return a
    }

    /// One request; the caller skips it when it does not encode (not well-formed).
    static func message(_ rng: inout FuzzRandom, _ pool: HandlePool) -> Message {
        switch Int.random(in: 0..<kindCount, using: &rng) {
        case 0: return Message(QueryDeviceRequest())
        case 1: return Message(QueryPortRequest(port: rng.extremeU8()))
        case 2: return Message(QueryGIDRequest(port: rng.chance(2) ? 1 : rng.extremeU8(), index: Int32(bitPattern: rng.extremeU32())))
        case 3: return Message(AllocPDRequest())
        case 4: return Message(DeallocPDRequest(pd: PDHandle(rawValue: handle(&rng, pool.pds))))
        case 5:
            let offset = rng.chance(2) ? UInt64.random(in: 0...70_000, using: &rng) : rng.extremeU64()
            let length = rng.chance(2) ? UInt64.random(in: 1...70_000, using: &rng) : rng.extremeU64()
            let address = rng.chance(2) ? pool.memory.address &+ offset : rng.extremeU64()
            return Message(RegMRRequest(pd: PDHandle(rawValue: handle(&rng, pool.pds)), access: AccessFlags(rawValue: UInt32.random(in: 0...15, using: &rng)),
                                       address: address, length: length, memfdOffset: offset))
        case 6: return Message(DeregMRRequest(mr: MRHandle(rawValue: handle(&rng, pool.mrs))))
        case 7: return Message(CreateCompChannelRequest())
        case 8: return Message(DestroyCompChannelRequest(channel: CompChannelHandle(rawValue: handle(&rng, pool.channels))))
        case 9:
            return Message(CreateCQRequest(cqe: rng.extremeU32(), channel: rng.chance(2) ? CompChannelHandle(rawValue: handle(&rng, pool.channels)) : nil,
                                             compVector: rng.extremeU32()))
        case 10: return Message(DestroyCQRequest(cq: CQHandle(rawValue: handle(&rng, pool.cqs))))
        case 11: return Message(ReqNotifyCQRequest(cq: CQHandle(rawValue: handle(&rng, pool.cqs)), solicitedOnly: rng.chance(2)))
        case 12:
            let caps = QPCapabilities(maxSendWR: rng.chance(2) ? UInt32.random(in: 0...64, using: &rng) : rng.extremeU32(),
                                      maxRecvWR: rng.chance(2) ? UInt32.random(in: 0...64, using: &rng) : rng.extremeU32(),
                                      maxSendSGE: UInt32.random(in: 0...40, using: &rng), maxRecvSGE: UInt32.random(in: 0...40, using: &rng),
                                      maxInlineData: rng.chance(2) ? UInt32.random(in: 0...600, using: &rng) : rng.extremeU32())
            return Message(CreateQPRequest(pd: PDHandle(rawValue: handle(&rng, pool.pds)), sendCQ: CQHandle(rawValue: handle(&rng, pool.cqs)),
                                             recvCQ: CQHandle(rawValue: handle(&rng, pool.cqs)),
                                             srq: rng.chance(4) ? SRQHandle(rawValue: handle(&rng, pool.srqs)) : nil,
                                             type: FFProtocol.QPType.allCases.randomElement(using: &rng)!, signalAll: rng.chance(2), capabilities: caps))
        case 13 where rng.chance(3):
            // Every attribute and a plausible next state, so that QPs reach RTS and posts really move data.
            var a = attributes(&rng, pool)
            a.state = [.initialized, .readyToReceive, .readyToSend].randomElement(using: &rng)!
            a.port = 1
            a.addressVector = AHAttributes(globalRoute: FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: SessionDriver.vipB)), port: 1)
            let all: QPAttributeMask = [.state, .pkeyIndex, .port, .accessFlags, .addressVector, .pathMTU, .destQPN, .rqPSN, .maxDestReadAtomic,
                                        .minRNRTimer, .sqPSN, .timeout, .retryCount, .rnrRetry, .maxReadAtomic]
            return Message(ModifyQPRequest(qp: QPHandle(rawValue: handle(&rng, pool.qps)), mask: all, attributes: a))
        case 13:
            return Message(ModifyQPRequest(qp: QPHandle(rawValue: handle(&rng, pool.qps)),
                                             mask: QPAttributeMask(rawValue: UInt32.random(in: 0...UInt32.max, using: &rng)).intersection(.supported),
                                             attributes: attributes(&rng, pool)))
        case 14: return Message(QueryQPRequest(qp: QPHandle(rawValue: handle(&rng, pool.qps)), mask: QPAttributeMask(rawValue: rng.extremeU32()).intersection(.supported)))
        case 15: return Message(DestroyQPRequest(qp: QPHandle(rawValue: handle(&rng, pool.qps))))
        case 16:
            return Message(CreateSRQRequest(pd: PDHandle(rawValue: handle(&rng, pool.pds)), maxWR: rng.extremeU32(), maxSGE: rng.extremeU32(),
                                               limit: rng.extremeU32()))
        case 17:
            return Message(ModifySRQRequest(srq: SRQHandle(rawValue: handle(&rng, pool.srqs)),
                                               mask: SRQAttributeMask(rawValue: UInt32.random(in: 0...3, using: &rng)), maxWR: rng.extremeU32(), limit: rng.extremeU32()))
        case 18: return Message(DestroySRQRequest(srq: SRQHandle(rawValue: handle(&rng, pool.srqs))))
        case 19: return Message(CreateAHRequest(pd: PDHandle(rawValue: handle(&rng, pool.pds)), attributes: av(&rng)))
        case 20: return Message(DestroyAHRequest(ah: AHHandle(rawValue: handle(&rng, pool.ahs))))
        case 21:
            return Message(PostSendRequest(qp: QPHandle(rawValue: handle(&rng, pool.qps)),
                                             requests: (0..<Int.random(in: 0...4, using: &rng)).map { _ in sendRequest(&rng, pool) }))
        case 22:
            return Message(PostRecvRequest(target: QPHandle(rawValue: handle(&rng, pool.qps)),
                                             requests: (0..<Int.random(in: 0...4, using: &rng)).map { _ in ReceiveWorkRequest(wrID: rng.extremeU64(), sgList: sges(&rng, pool)) }))
        case 23:
            return Message(PostRecvRequest(target: SRQHandle(rawValue: handle(&rng, pool.srqs)),
                                                requests: (0..<Int.random(in: 0...4, using: &rng)).map { _ in ReceiveWorkRequest(wrID: rng.extremeU64(), sgList: sges(&rng, pool)) }))
        default: return Message(PollCQRequest(cq: CQHandle(rawValue: handle(&rng, pool.cqs)), maxEntries: rng.chance(2) ? UInt32.random(in: 0...256, using: &rng) : rng.extremeU32()))
        }
    }
}

/// A well-behaved pod beside the fuzzed one: it moves data between two QPs of its own and checks every answer.
final class GoodClient {
    let driver: SessionDriver
    let memory: SharedMemory
    let mr: RegMRReply
    let cq: CQHandle
    let sender: QPHandle, receiver: QPHandle

    init(backend: FakeBackend) throws {
        driver = SessionDriver(backend: backend, vip: SessionDriver.vipB, id: 2)
        memory = try SharedMemory(name: "good", size: 8192)
        let pd = driver.allocPD()
        mr = driver.registerMemory(pd, memory)
        cq = driver.createCQ(256)
        let (s, sqpn) = driver.createQP(pd, cq), (r, rqpn) = driver.createQP(pd, cq)
        sender = s
        receiver = r
        driver.connect(s, to: rqpn, at: SessionDriver.vipB)
        driver.connect(r, to: sqpn, at: SessionDriver.vipB)
    }

    /// Sends `tag` from the first half of its memory to the second and checks the bytes and both completions.
    func roundTrip(_ tag: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        guard let device = driver.ok(Message(QueryDeviceRequest())).reply(to: QueryDeviceRequest.self) else { return XCTFail("queryDevice", file: file, line: line) }
        XCTAssertEqual(device.vendorPartID, VirtualDevice.vendorPartID, file: file, line: line)
        let payload = Array("round trip \(tag)".utf8)
        memory.bytes.copyBytes(from: payload)
        driver.ok(Message(PostRecvRequest(target: receiver, requests: [ReceiveWorkRequest(wrID: UInt64(tag), sgList: [ScatterGatherEntry(address: memory.address + 4096, length: 128, lkey: mr.lkey)])])))
        driver.ok(Message(PostSendRequest(qp: sender, requests: [SendWorkRequest(wrID: UInt64(tag), opcode: .send,
                                                                                      sgList: [ScatterGatherEntry(address: memory.address, length: UInt32(payload.count), lkey: mr.lkey)])])))
        let completions = driver.poll(cq)
        XCTAssertEqual(completions.map(\.status), [.success, .success], file: file, line: line)
        XCTAssertEqual(Set(completions.map(\.wrID)), [UInt64(tag)], file: file, line: line)
        XCTAssertEqual(Array(memory.bytes[4096..<(4096 + payload.count)]), payload, file: file, line: line)
    }

    func close() { driver.session.close() }
}
