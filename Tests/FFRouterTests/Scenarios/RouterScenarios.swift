import FFProtocol
@testable import FFRouter
import FFSystem
import FreeFlowTestSupport
import Glibc
import XCTest

/// The router's session scenarios, written once and run on any backend: `RouterScenarioFakeBackendTests` runs them on
/// the in-memory fake on every host, `RouterScenarioLabTests` on rxe0 in the lab. Each drives `Session`s as their
/// connections would (`SessionDriver`) and checks both what the client is told and what the backend holds.
struct RouterScenarios {
    /// The backend under test, fresh for this value.
    let env: ScenarioBackend

    init(_ env: ScenarioBackend) { self.env = env }

    private typealias S = ScenarioBackend

    private static let rtrMask: QPAttributeMask = [.state, .addressVector, .pathMTU, .destQPN, .rqPSN,
                                                   .maxDestReadAtomic, .minRNRTimer]

    private func ah(_ pd: PDHandle, to vip: IPv4Address) -> Message {
        let route = FFProtocol.GlobalRoute(destinationGID: GID(ipv4Mapped: vip))
        return Message(CreateAHRequest(pd: pd, attributes: AHAttributes(globalRoute: route, port: 1)))
    }

    private func memory(_ name: String) throws -> SharedMemory { try SharedMemory(name: name, size: 8192) }

    /// Waits (bounded) until the backend holds `expected`, then asserts it, so that a failure names what was left.
    /// The wait is needed: a completion channel goes once its forwarding task has ended, and the kernel frees
    /// some objects after the call that destroyed them returned.
    private func expectObjects(_ expected: [String: Int], _ what: String, file: StaticString = #filePath,
                               line: UInt = #line) throws {
        var held = try env.objects()
        do {
            try eventuallyBlocking(what, file: file, line: line) {
                held = try env.objects()
                return held == expected
            }
        } catch is ConditionTimedOut {
            // The assertion below names what was left.
        }
        XCTAssertEqual(held, expected, what, file: file, line: line)
    }

    // MARK: - Ownership

    /// A session knows only its own handles: each of another session's is EBADF, whatever the request, and the other
    /// session's objects stay as they were and still its own.
    func handlesAreTheSessionsOwn() throws {
        let b = env.session(S.vipB, id: 2)
        let memoryB = try memory("owner-b")
        let pd = b.allocPD(), mr = b.registerMemory(pd, memoryB), cq = b.createCQ(), (qp, _) = b.createQP(pd, cq)
        let srq = b.ok(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1))).reply(to: CreateSRQRequest.self)?.srq
        let held = try env.objects()
        // A has made nothing, so no handle of B's can name an object of A's by coincidence.
        let a = env.session(S.vipA, id: 1)
        var initialize = FFProtocol.QPAttributes()
        initialize.state = .initialized
        initialize.port = 1
        let caps = QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)
        let foreign: [(String, Message)] = [
            ("destroy_qp", Message(DestroyQPRequest(qp: qp))),
            ("modify_qp", Message(ModifyQPRequest(qp: qp, mask: [.state, .pkeyIndex, .port, .accessFlags],
                                                  attributes: initialize))),
            ("query_qp", Message(QueryQPRequest(qp: qp, mask: [.state]))),
            ("post_send", Message(PostSendRequest(qp: qp, requests: [SendWorkRequest(wrID: 1, opcode: .send)]))),
            ("poll_cq", Message(PollCQRequest(cq: cq, maxEntries: 1))),
            ("destroy_cq", Message(DestroyCQRequest(cq: cq))),
            ("dereg_mr", Message(DeregMRRequest(mr: mr.mr))),
            ("destroy_srq", Message(DestroySRQRequest(srq: srq ?? SRQHandle(rawValue: 0)))),
            ("create_qp on another's PD and CQ", Message(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc,
                                                                          signalAll: false, capabilities: caps))),
            ("create_ah on another's PD", ah(pd, to: S.vipA)),
            ("dealloc_pd", Message(DeallocPDRequest(pd: pd))),
        ]
        for (what, message) in foreign {
            XCTAssertEqual(a.refused(message).errno, Errno.badHandle, what)
        }
        // B's objects are untouched and still B's: its QP is still in RESET, its CQ empty, its PD in use.
        XCTAssertEqual(b.ok(Message(QueryQPRequest(qp: qp, mask: [.state]))).reply(to: QueryQPRequest.self)?
            .attributes.state, .reset)
        XCTAssertEqual(b.poll(cq).count, 0)
        XCTAssertEqual(b.refused(Message(DeallocPDRequest(pd: pd))).errno, Errno.busy, "ibv_dealloc_pd(3): MR and QP")
        XCTAssertEqual(try env.objects(), held, "the backend holds what it held")
        a.session.close()
        b.session.close()
    }

    /// Another pod's lkey in a pod's own QP is no key of that QP's PD: the device answers with a local error
    /// completion and no byte moves, though the write's target is valid.
    func keysAreThePDsOwn() throws {
        let pair = try PodPair(backend: env.backend, map: env.map())
        pair.memB.bytes.copyBytes(from: Array("b's own".utf8))
        // A's QP writes to B (its peer) at a valid target, taking its source from B's memory with B's lkey.
        let steal = SendWorkRequest(wrID: 1, opcode: .rdmaWrite, remoteAddress: pair.memB.address + 4096,
                                    rkey: pair.mrB.rkey,
                                    sgList: [ScatterGatherEntry(address: pair.memB.address, length: 7,
                                                                lkey: pair.mrB.lkey)])
        pair.a.ok(Message(PostSendRequest(qp: pair.qpA, requests: [steal])))
        // Hardware (and the fake) say LOC_PROT_ERR; rxe says LOC_QP_OP_ERR, from its requester's failed copy of the
        // payload: either is a local error of this QP, and neither moves a byte.
        let status = try XCTUnwrap(pair.a.completions(pair.cqA).first).status
        XCTAssertTrue([.localProtectionError, .localQPOperationError].contains(status), "\(status)")
        XCTAssertEqual(Array(pair.memB.bytes[4096..<4103]), [UInt8](repeating: 0, count: 7), "no byte moved")
        pair.a.session.close()
        pair.b.session.close()
    }

    // MARK: - Teardown

    /// Closing a session destroys every object it made, in an order the device accepts (QPs before their SRQ and
    /// CQs, MRs and AHs before their PD, CQs before their channel): the backend holds none of them after, while
    /// another session's objects stay and it goes on working.
    func closingASessionDestroysAllItsObjects() throws {
        let baseline = try env.objects()
        let other = env.session(S.vipB, id: 2)
        _ = other.allocPD()
        let a = env.session(S.vipA, id: 1)
        let channelReply = a.raw(Message(CreateCompChannelRequest()))
        channelReply.descriptors.forEach { close($0) }
        let channel = try XCTUnwrap(channelReply.message.reply(to: CreateCompChannelRequest.self))
        let memory = try memory("teardown")
        let pd = a.allocPD()
        _ = a.registerMemory(pd, memory)
        let notified = a.createCQ(channel: channel), plain = a.createCQ()
        let srq = try XCTUnwrap(a.ok(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1)))
            .reply(to: CreateSRQRequest.self)).srq
        _ = a.createQP(pd, notified, srq: srq)
        _ = a.createQP(pd, plain)
        a.ok(ah(pd, to: S.vipB))
        let made = ["comp_channel": 1, "pd": 2, "mr": 1, "cq": 2, "srq": 1, "qp": 2, "ah": 1]
        XCTAssertEqual(try env.objects(), env.objects(baseline, plus: made), "the backend holds what the sessions made")

        a.session.close()
        try expectObjects(env.objects(baseline, plus: ["pd": 1]), "only the other session's PD is left")
        _ = other.allocPD()
        XCTAssertEqual(try env.objects(), env.objects(baseline, plus: ["pd": 2]), "the other session goes on")
        other.session.close()
        try expectObjects(baseline, "every object destroyed")
    }

    // MARK: - Limits

    /// Each per-kind object limit is refused with ENOMEM and a reason naming its flag, before the device is asked;
    /// another session on the same backend is not limited by this one.
    func objectCountsPerKindAreLimited() throws {
        var limits = SessionLimits()
        (limits.pds, limits.cqs, limits.qps, limits.ahs, limits.srqs) = (2, 1, 1, 1, 1)
        let tight = env.session(S.vipA, id: 1, limits: limits), other = env.session(S.vipB, id: 2)
        _ = tight.allocPD()
        let pd = tight.allocPD()
        let held = try env.objects()
        let error = tight.refused(Message(AllocPDRequest()))
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-pds"), error.reason)
        let cq = tight.createCQ()
        XCTAssertEqual(tight.refused(Message(CreateCQRequest(cqe: 4))).errno, Errno.outOfMemory)
        _ = tight.createQP(pd, cq)
        let caps = QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)
        let qp = CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false, capabilities: caps)
        XCTAssertEqual(tight.refused(Message(qp)).errno, Errno.outOfMemory)
        tight.ok(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1)))
        XCTAssertEqual(tight.refused(Message(CreateSRQRequest(pd: pd, maxWR: 4, maxSGE: 1))).errno, Errno.outOfMemory)
        tight.ok(ah(pd, to: S.vipB))
        XCTAssertEqual(tight.refused(ah(pd, to: S.vipB)).errno, Errno.outOfMemory)
        XCTAssertEqual(try env.objects(), env.objects(held, plus: ["cq": 1, "qp": 1, "srq": 1, "ah": 1]),
                       "the refused requests created nothing")
        // The other session is not limited by this one.
        for _ in 0..<5 { _ = other.allocPD() }
        XCTAssertEqual(other.session.objects.counts.pd, 5)
        tight.session.close()
        other.session.close()
    }

    /// Descriptors a session holds (completion channels) are limited with EMFILE; another session is not.
    func descriptorsHeldAreLimitedWithEMFILE() {
        var limits = SessionLimits()
        limits.descriptors = 2
        let tight = env.session(S.vipA, id: 1, limits: limits), other = env.session(S.vipB, id: 2)
        tight.raw(Message(CreateCompChannelRequest())).descriptors.forEach { close($0) }
        let error = tight.refused(Message(CreateCompChannelRequest()))
        XCTAssertEqual(error.errno, Errno.tooManyDescriptors)
        XCTAssertTrue(error.reason.contains("--max-descriptors"), error.reason)
        for _ in 0..<2 {
            let reply = other.raw(Message(CreateCompChannelRequest()))
            reply.descriptors.forEach { close($0) }
            XCTAssertNotNil(reply.message.reply(to: CreateCompChannelRequest.self), "the other session's channel")
        }
        tight.session.close()
        other.session.close()
    }

    /// Registered bytes are checked before anything is pinned: the refused registration leaves no MR on the device,
    /// and another session registers the same memory.
    func pinnedBytesAreCheckedBeforePinning() throws {
        var limits = SessionLimits()
        (limits.pinnedBytes, limits.mrs) = (8192, 3)
        let tight = env.session(S.vipA, id: 1, limits: limits), other = env.session(S.vipB, id: 2)
        let memory = try SharedMemory(name: "pinned", size: 4 * 4096)
        let pd = tight.allocPD()
        _ = tight.registerMemory(pd, memory, offset: 0, length: 4096)
        _ = tight.registerMemory(pd, memory, offset: 4096, length: 100)
        let held = try env.objects()
        let request = RegMRRequest(pd: pd, access: [.localWrite], address: memory.address + 8192, length: 10,
                                   memfdOffset: 8192)
        let error = tight.refused(Message(request), descriptors: [memory.descriptor.rawValue])
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-pinned-bytes"), error.reason)
        XCTAssertEqual(try env.objects(), held, "the refused registration made no MR")
        let otherPD = other.allocPD()
        XCTAssertNotEqual(other.registerMemory(otherPD, memory).lkey, 0)
        XCTAssertEqual(try env.objects(), env.objects(held, plus: ["pd": 1, "mr": 1]))
        tight.session.close()
        other.session.close()
    }

    /// Queue depth and CQ entries are budgets of what the device granted (rxe rounds sizes up); a refusal names the
    /// flag, and destroying a QP gives its depth back.
    func queueDepthAndCQEntriesAreBudgeted() throws {
        // What the device grants for a 64-entry CQ and a QP 32 deep, on a session without limits.
        let probe = env.session(S.vipB, id: 9)
        let probePD = probe.allocPD()
        let probeCQ = try XCTUnwrap(probe.ok(Message(CreateCQRequest(cqe: 64))).reply(to: CreateCQRequest.self))
        let grantedCQ = probeCQ.cqe
        // SessionDriver.createQP's capabilities at depth 32.
        let depth = QPCapabilities(maxSendWR: 32, maxRecvWR: 32, maxSendSGE: 2, maxRecvSGE: 2, maxInlineData: 64)
        let probeQP = CreateQPRequest(pd: probePD, sendCQ: probeCQ.cq, recvCQ: probeCQ.cq, type: .rc, signalAll: false,
                                      capabilities: depth)
        let granted = try XCTUnwrap(probe.ok(Message(probeQP)).reply(to: CreateQPRequest.self)).capabilities
        probe.session.close()

        var limits = SessionLimits()
        limits.workRequests = UInt64(granted.maxSendWR) + UInt64(granted.maxRecvWR)
        limits.cqEntries = UInt64(grantedCQ) + 63
        let tight = env.session(S.vipA, id: 1, limits: limits)
        let pd = tight.allocPD()
        let cq = tight.createCQ(64)
        let cqError = tight.refused(Message(CreateCQRequest(cqe: 64)))
        XCTAssertEqual(cqError.errno, Errno.outOfMemory, "\(grantedCQ) + 64 CQ entries pass \(limits.cqEntries)")
        XCTAssertTrue(cqError.reason.contains("--max-cq-entries"), cqError.reason)
        let (qp, _) = tight.createQP(pd, cq, depth: 32)
        let one = QPCapabilities(maxSendWR: 1, maxRecvWR: 0, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)
        let error = tight.refused(Message(CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false,
                                                          capabilities: one)))
        XCTAssertEqual(error.errno, Errno.outOfMemory)
        XCTAssertTrue(error.reason.contains("--max-work-requests"), error.reason)
        // Destroying the QP gives its depth back.
        tight.ok(Message(DestroyQPRequest(qp: qp)))
        _ = tight.createQP(pd, cq, depth: 32)
        tight.session.close()
    }

    // MARK: - Translation

    /// The backend sees only physical addresses: a virtual GID ::ffff:vip in modify_qp's RTR and in create_ah
    /// becomes the GID of the vip's node, sent from this node's GID; an unknown vip is EHOSTUNREACH naming it and the
    /// session goes on; a transition without its attributes, or out of order, is EINVAL.
    func virtualGIDsBecomeTheirNodesPhysicalGIDs() throws {
        let a = env.session(S.vipA, id: 1)
        let pd = a.allocPD(), cq = a.createCQ()
        let (qp, _) = a.createQP(pd, cq)
        var attributes = FFProtocol.QPAttributes()
        attributes.state = .readyToReceive
        XCTAssertEqual(a.refused(Message(ModifyQPRequest(qp: qp, mask: [.state], attributes: attributes))).errno,
                       Errno.invalidArgument, "RESET→RTR is not a transition")
        attributes.state = .initialized
        attributes.port = 1
        a.ok(Message(ModifyQPRequest(qp: qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: attributes)))

        attributes.state = .readyToReceive
        attributes.pathMTU = .mtu1024
        attributes.destQPN = 1
        attributes.maxDestReadAtomic = 1
        attributes.minRNRTimer = 12
        attributes.addressVector = AHAttributes(globalRoute: FFProtocol.GlobalRoute(
            destinationGID: GID(ipv4Mapped: S.unknownVIP)), port: 1)
        let unknown = a.refused(Message(ModifyQPRequest(qp: qp, mask: Self.rtrMask, attributes: attributes)))
        XCTAssertEqual(unknown.errno, Errno.hostUnreachable)
        XCTAssertTrue(unknown.reason.contains(S.unknownVIP.description), unknown.reason)
        XCTAssertEqual(a.refused(ah(pd, to: S.unknownVIP)).errno, Errno.hostUnreachable)
        XCTAssertTrue(env.backend.recordedAddresses.isEmpty, "an unknown vip reaches no verbs call")

        // The session goes on: a vip on the other node is that node's GID, from this node's GID index.
        attributes.addressVector = AHAttributes(globalRoute: FFProtocol.GlobalRoute(
            destinationGID: GID(ipv4Mapped: S.remoteVIP)), port: 1)
        a.ok(Message(ModifyQPRequest(qp: qp, mask: Self.rtrMask, attributes: attributes)))
        a.ok(ah(pd, to: S.remoteVIP))
        let physical = try XCTUnwrap(env.physicalGID(of: env.otherNodeIP))
        let recorded = env.backend.recordedAddresses
        XCTAssertEqual(recorded.map(\.call), ["ibv_modify_qp", "ibv_create_ah"])
        for (call, address) in recorded {
            XCTAssertEqual(address.global?.destinationGID, physical,
                           "\(call): the node's GID, not ::ffff:\(S.remoteVIP)")
            XCTAssertEqual(address.global.map { Int($0.sourceGIDIndex) }, env.backend.gidIndex,
                           "\(call): sent from this node's GID")
            XCTAssertEqual(address.port, env.backend.port, call)
        }
        XCTAssertEqual(a.ok(Message(QueryQPRequest(qp: qp, mask: [.state]))).reply(to: QueryQPRequest.self)?
            .attributes.state, .readyToReceive, "the device took the translated RTR")
        a.session.close()
    }

    /// Before the map's first list every vip would look unknown: translation says EAGAIN ("try again"), not
    /// EHOSTUNREACH, and succeeds once the map is loaded.
    func translationBeforeTheMapIsLoadedSaysTryAgain() {
        let map = env.map(ready: false)
        let a = env.session(S.vipA, id: 1, map: map)
        let pd = a.allocPD()
        let early = a.refused(ah(pd, to: S.vipB))
        XCTAssertEqual(early.errno, Errno.tryAgain)
        XCTAssertTrue(early.reason.contains("not loaded yet"), early.reason)
        map.isReady = true
        a.ok(ah(pd, to: S.vipB))
        a.session.close()
    }

    // MARK: - Data

    /// Two pods' RC QPs on one router exchange SEND with immediate, RDMA WRITE, READ, both atomics and an inline
    /// SEND, each landing in the other pod's own memory; closing both sessions leaves nothing on the backend.
    func twoSessionsMoveDataBetweenTheirRCQPs() throws {
        let baseline = try env.objects()
        let pair = try PodPair(backend: env.backend, map: env.map())
        let (a, b, memA, memB, mrA, mrB) = (pair.a, pair.b, pair.memA, pair.memB, pair.mrA, pair.mrB)
        let (cqA, cqB, qpA, qpB) = (pair.cqA, pair.cqB, pair.qpA, pair.qpB)
        func sgeA(_ offset: UInt64, _ length: UInt32) -> [ScatterGatherEntry] {
            [ScatterGatherEntry(address: memA.address + offset, length: length, lkey: mrA.lkey)]
        }
        func receiveB(_ id: UInt64, at offset: UInt64) {
            let sge = ScatterGatherEntry(address: memB.address + offset, length: 64, lkey: mrB.lkey)
            b.ok(Message(PostRecvRequest(target: qpB, requests: [ReceiveWorkRequest(wrID: id, sgList: [sge])])))
        }
        func sendA(_ request: SendWorkRequest, file: StaticString = #filePath,
                   line: UInt = #line) throws -> WorkCompletion? {
            let posted = a.ok(Message(PostSendRequest(qp: qpA, requests: [request])), file: file, line: line)
            XCTAssertEqual(posted.reply(to: PostSendRequest.self)?.errno, 0, file: file, line: line)
            return try a.completions(cqA, file: file, line: line).first
        }

        // SEND with immediate: B posts a receive at offset 1024 of its memory, A sends 5 bytes from offset 0.
        memA.bytes.copyBytes(from: Array("hello".utf8))
        receiveB(7, at: 1024)
        let send = SendWorkRequest(wrID: 1, opcode: .sendWithImmediate, immData: UInt32(0xABCD).bigEndian,
                                   sgList: sgeA(0, 5))
        XCTAssertEqual(try sendA(send)?.status, .success)
        let received = try b.completions(cqB).first
        XCTAssertEqual(received?.status, .success)
        XCTAssertEqual(received?.wrID, 7)
        XCTAssertEqual(received?.byteLength, 5)
        XCTAssertEqual(received?.immData, UInt32(0xABCD).bigEndian, "the immediate's bits survive")
        XCTAssertEqual(Array(memB.bytes[1024..<1029]), Array("hello".utf8))

        // RDMA WRITE into B at B's own address and rkey.
        memA.bytes.copyBytes(from: Array("written".utf8))
        let write = SendWorkRequest(wrID: 2, opcode: .rdmaWrite, remoteAddress: memB.address + 2048, rkey: mrB.rkey,
                                    sgList: sgeA(0, 7))
        XCTAssertEqual(try sendA(write)?.opcode, .rdmaWrite)
        XCTAssertEqual(Array(memB.bytes[2048..<2055]), Array("written".utf8))

        // RDMA READ back from B into A at offset 4096.
        let read = SendWorkRequest(wrID: 3, opcode: .rdmaRead, remoteAddress: memB.address + 1024, rkey: mrB.rkey,
                                   sgList: sgeA(4096, 5))
        XCTAssertEqual(try sendA(read)?.status, .success)
        XCTAssertEqual(Array(memA.bytes[4096..<4101]), Array("hello".utf8))

        // Fetch-and-add then compare-and-swap on B's word at 4096; the old values land in A at 6144.
        memB.bytes.storeBytes(of: UInt64(40), toByteOffset: 4096, as: UInt64.self)
        let faa = SendWorkRequest(wrID: 4, opcode: .atomicFetchAndAdd, remoteAddress: memB.address + 4096,
                                  rkey: mrB.rkey, compareAdd: 2, sgList: sgeA(6144, 8))
        XCTAssertEqual(try sendA(faa)?.opcode, .fetchAndAdd)
        XCTAssertEqual(memA.bytes.load(fromByteOffset: 6144, as: UInt64.self), 40)
        let cas = SendWorkRequest(wrID: 5, opcode: .atomicCompareAndSwap, remoteAddress: memB.address + 4096,
                                  rkey: mrB.rkey, compareAdd: 42, swap: 7, sgList: sgeA(6144, 8))
        XCTAssertEqual(try sendA(cas)?.opcode, .compareAndSwap)
        XCTAssertEqual(memA.bytes.load(fromByteOffset: 6144, as: UInt64.self), 42)
        XCTAssertEqual(memB.bytes.load(fromByteOffset: 4096, as: UInt64.self), 7)

        // An inline send needs no lkey.
        receiveB(8, at: 0)
        let inline = SendWorkRequest(wrID: 6, opcode: .send, flags: [.signaled, .inline],
                                     inlineData: Array("inline".utf8))
        XCTAssertEqual(try sendA(inline)?.status, .success)
        XCTAssertEqual(try b.completions(cqB).first?.byteLength, 6)
        XCTAssertEqual(Array(memB.bytes[0..<6]), Array("inline".utf8))

        XCTAssertNotEqual(try env.objects(), baseline)
        a.session.close()
        b.session.close()
        try expectObjects(baseline, "closed sessions leave nothing behind")
    }
}
