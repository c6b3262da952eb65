import FFProtocol
import FFRouter
import Verbs

/// A fake QP: the verbs state machine (ibv_modify_qp(3)'s transitions and required attributes), receive queues, and
/// synchronous loopback execution of send work requests against the peer QP it is connected to (RC/UC: the
/// destination QPN of RTR; UD: the remote QPN and Q_Key of each request). All mutable state is guarded by world.lock.
final class FakeQP: BackendQP {
    let world: FakeWorld
    let pd: FakePD
    let number: UInt32
    let type: Verbs.QPType
    let capabilities: Verbs.QPCapabilities
    let signalAll: Bool
    let sendCQ: FakeCQ
    let receiveCQ: FakeCQ
    let srq: FakeSRQ?
    @exclusivity(unchecked) private var current: Verbs.QPState = .reset
    @exclusivity(unchecked) private var access: Verbs.AccessFlags = []
    @exclusivity(unchecked) private var qkey: UInt32 = 0
    @exclusivity(unchecked) private var destinationQPN: UInt32 = 0
    @exclusivity(unchecked) private var receiveQueue: FakeReceiveQueue

    init(world: FakeWorld, pd: FakePD, configuration c: BackendQPConfiguration, sendCQ: FakeCQ, receiveCQ: FakeCQ, srq: FakeSRQ?) {
        self.world = world
        self.pd = pd
        type = c.type
        capabilities = Self.granted(c.capabilities)
        signalAll = c.signalAll
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.srq = srq
        receiveQueue = FakeReceiveQueue(maxSGE: Int(c.capabilities.maxReceiveSGE), reserving: srq == nil ? Int(c.capabilities.maxReceiveWorkRequests) : 0)
        number = world.locked { s -> UInt32 in defer { s.nextQPN = (s.nextQPN &+ 1) & 0xFF_FFFF }; return s.nextQPN }
        world.locked { s in
            s.live["qp", default: 0] += 1
            s.qps[number] = .init(object: self)
        }
    }

    /// What rxe grants (rxe_qp.c, rxe_init_sq): a send WQE has room for max(16 × SGEs, inline bytes), and both
    /// limits are reported from that room, so a QP asking for no inline data may still send 16 bytes per SGE
    /// inline (rdma_xclient does). `createQP` checked the request against the device's limits first.
    static func granted(_ requested: Verbs.QPCapabilities) -> Verbs.QPCapabilities {
        var granted = requested
        let room = max(requested.maxSendSGE.multipliedReportingOverflow(by: 16).partialValue, requested.maxInlineData)
        granted.maxSendSGE = room / 16
        granted.maxInlineData = room
        return granted
    }

    deinit {
        world.locked { s in
            s.live["qp", default: 0] -= 1
            s.qps[number] = nil
        }
    }

    func state() throws -> Verbs.QPState { world.locked { _ in current } }

    func modify(_ a: Verbs.QPAttributes) throws {
        try world.locked { _ in
            let to = a.state ?? current
            if let missing = Self.missingAttributes(type: type, from: current, to: to, a) {
                throw fakeError("ibv_modify_qp", Errno.invalidArgument, "\(current)→\(to): \(missing)")
            }
            if let port = a.port, port != 1 { throw fakeError("ibv_modify_qp", Errno.invalidArgument, "port \(port)") }
            if let v = a.access { access = v }
            if let v = a.qkey { qkey = v }
            if let v = a.destinationQPN { destinationQPN = v }
            current = to
            if to == .reset { receiveQueue.drain { _ in } }
            if to == .error { flushReceives() }
        }
    }

    /// What a transition lacks, or nil when it is allowed with these attributes (the table of ibv_modify_qp(3)).
    static func missingAttributes(type: Verbs.QPType, from: Verbs.QPState, to: Verbs.QPState, _ a: Verbs.QPAttributes) -> String? {
        func need(_ items: [(String, Bool)]) -> String? {
            let missing = items.filter { !$0.1 }.map(\.0)
            return missing.isEmpty ? nil : "missing " + missing.joined(separator: ", ")
        }
        switch (from, to) {
        case (_, .reset), (_, .error), (.initialized, .initialized), (.readyToSend, .readyToSend):
            return nil
        case (.reset, .initialized):
            return need([("pkey_index", a.pkeyIndex != nil), ("port", a.port != nil),
                         type == .ud ? ("qkey", a.qkey != nil) : ("access_flags", a.access != nil)])
        case (.initialized, .readyToReceive):
            switch type {
            case .rc:
                return need([("ah_attr", a.address != nil), ("path_mtu", a.pathMTU != nil), ("dest_qp_num", a.destinationQPN != nil),
                             ("rq_psn", a.receivePSN != nil), ("max_dest_rd_atomic", a.maxDestinationReadAtomic != nil),
                             ("min_rnr_timer", a.minRNRTimer != nil)])
            case .uc:
                return need([("ah_attr", a.address != nil), ("path_mtu", a.pathMTU != nil), ("dest_qp_num", a.destinationQPN != nil),
                             ("rq_psn", a.receivePSN != nil)])
            case .ud:
                return nil
            }
        case (.readyToReceive, .readyToSend):
            if type == .rc {
                return need([("sq_psn", a.sendPSN != nil), ("timeout", a.timeout != nil), ("retry_cnt", a.retryCount != nil),
                             ("rnr_retry", a.rnrRetry != nil), ("max_rd_atomic", a.maxReadAtomic != nil)])
            }
            return need([("sq_psn", a.sendPSN != nil)])
        default:
            return "no such transition"
        }
    }

    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws {
        try world.locked { _ in
            guard srq == nil else { throw fakeError("ibv_post_recv", Errno.invalidArgument, "QP \(number) receives through its SRQ", failed: 0) }
            guard current != .reset else { throw fakeError("ibv_post_recv", Errno.invalidArgument, "QP \(number) is in RESET", failed: 0) }
            for i in 0..<requests.count {
                let r = requests[i]
                guard r.scatterGather.count <= Int(capabilities.maxReceiveSGE) else {
                    throw fakeError("ibv_post_recv", Errno.invalidArgument, "\(r.scatterGather.count) SGEs", failed: i)
                }
                guard receiveQueue.count < Int(capabilities.maxReceiveWorkRequests) else {
                    throw fakeError("ibv_post_recv", Errno.outOfMemory, "receive queue full", failed: i)
                }
                receiveQueue.append(id: r.id, scatterGather: r.scatterGather)
            }
            if current == .error { flushReceives() }
        }
    }

    func postSend(_ requests: UnsafeBufferPointer<BackendSendWR>, scratch: WorkRequestScratch) throws {
        try world.locked { s in
            guard current == .readyToSend || current == .error else {
                throw fakeError("ibv_post_send", Errno.invalidArgument, "QP \(number) is in \(current)", failed: 0)
            }
            guard requests.count <= Int(capabilities.maxSendWorkRequests) else {
                throw fakeError("ibv_post_send", Errno.outOfMemory, "send queue full", failed: Int(capabilities.maxSendWorkRequests))
            }
            // Index loops on the data path: for-in's generic iterator allocates in unoptimized builds.
            for i in 0..<requests.count {
                let r = requests[i]
                guard r.scatterGather.count <= Int(capabilities.maxSendSGE) else {
                    throw fakeError("ibv_post_send", Errno.invalidArgument, "\(r.scatterGather.count) SGEs", failed: i)
                }
                if r.flags.contains(.inline) {
                    let total = r.scatterGather.reduce(UInt64(0)) { $0 + UInt64($1.length) }
                    guard total <= UInt64(capabilities.maxInlineData) else {
                        throw fakeError("ibv_post_send", Errno.invalidArgument, "\(total) inline bytes", failed: i)
                    }
                }
                guard type != .ud || r.addressHandle is FakeAH else { throw fakeError("ibv_post_send", Errno.invalidArgument, "UD needs an AH", failed: i) }
            }
            for i in 0..<requests.count {
                let r = requests[i]
                guard current == .readyToSend else {
                    sendCQ.push(completion(r, .workRequestFlushed, opcode: .send), solicited: false)
                    continue
                }
                execute(r, &s)
            }
        }
    }

    private func flushReceives() {
        receiveQueue.drain { r in
            receiveCQ.push(FFProtocol.WorkCompletion(wrID: r.id, status: .workRequestFlushed, opcode: .receive, qpNum: number), solicited: false)
        }
    }

    private func completion(_ r: BackendSendWR, _ status: WCStatus, opcode: WCOpcode, bytes: UInt32 = 0) -> FFProtocol.WorkCompletion {
        FFProtocol.WorkCompletion(wrID: r.id, status: status, opcode: opcode, byteLength: bytes, qpNum: number)
    }

    // MARK: - Execution (world.lock held)

    private enum Failure: Error { case status(WCStatus) }

    private func execute(_ r: BackendSendWR, _ s: inout FakeWorld.State) {
        let opcode: WCOpcode
        switch r.operation {
        case .send, .sendWithImmediate: opcode = .send
        case .rdmaWrite, .rdmaWriteWithImmediate: opcode = .rdmaWrite
        case .rdmaRead: opcode = .rdmaRead
        case .compareAndSwap: opcode = .compareAndSwap
        case .fetchAndAdd: opcode = .fetchAndAdd
        }
        var status = WCStatus.success
        var bytes: UInt32 = 0
        do {
            bytes = try perform(r, &s)
        } catch Failure.status(let failed) {
            status = failed
        } catch {
            status = .general
        }
        if status == .success {
            if signalAll || r.flags.contains(.signaled) { sendCQ.push(completion(r, .success, opcode: opcode, bytes: bytes), solicited: false) }
            return
        }
        sendCQ.push(completion(r, status, opcode: opcode), solicited: false)
        // An RC error moves the QP to ERR, as the device does.
        if type == .rc {
            current = .error
            flushReceives()
        }
    }

    /// The peer QP of `r`, in a state that receives.
    private func peer(_ r: BackendSendWR, _ s: inout FakeWorld.State) -> FakeQP? {
        let qpn = type == .ud ? r.remoteQPN : destinationQPN
        guard let peer = s.qps[qpn]?.object, peer.type == type,
              peer.current == .readyToReceive || peer.current == .readyToSend else { return nil }
        if type == .ud && peer.qkey != r.remoteQKey { return nil }
        // A connected QP takes packets only from the QP it is connected to.
        if type != .ud && peer.destinationQPN != number { return nil }
        return peer
    }

    /// Local bytes of an SGE: a registered MR of this QP's PD, or (inline) router memory the session owns.
    private func local(_ e: ScatterGatherElement, inline: Bool, write: Bool, _ s: inout FakeWorld.State) throws -> UnsafeMutableRawBufferPointer {
        if inline && !write, e.lkey == 0, let base = UnsafeMutableRawPointer(bitPattern: UInt(e.address)) {
            return UnsafeMutableRawBufferPointer(start: base, count: Int(e.length))
        }
        guard let mr = s.mrsByLKey[e.lkey]?.object, mr.pd === pd, !write || mr.access.contains(.localWrite),
              let bytes = mr.bytes(at: e.address, length: UInt64(e.length)) else { throw Failure.status(.localProtectionError) }
        return bytes
    }

    /// Checks every SGE of `r`'s gather list and returns the payload's length.
    private func gatherLength(_ r: BackendSendWR, _ s: inout FakeWorld.State) throws -> Int {
        var total = 0
        for i in 0..<r.scatterGather.count { total += try local(r.scatterGather[i], inline: r.flags.contains(.inline), write: false, &s).count }
        return total
    }

    /// Copies `r`'s payload (checked by `gatherLength`) to `target`.
    private func gather(_ r: BackendSendWR, into target: UnsafeMutableRawPointer, _ s: inout FakeWorld.State) throws {
        var offset = 0
        for i in 0..<r.scatterGather.count {
            let source = try local(r.scatterGather[i], inline: r.flags.contains(.inline), write: false, &s)
            if let base = source.baseAddress { (target + offset).copyMemory(from: base, byteCount: source.count) }
            offset += source.count
        }
    }

    private func remote(_ peer: FakeQP, address: UInt64, rkey: UInt32, length: UInt64, need: Verbs.AccessFlags,
                        _ s: inout FakeWorld.State) throws -> UnsafeMutableRawBufferPointer {
        guard let mr = s.mrsByRKey[rkey]?.object, mr.pd === peer.pd, mr.access.contains(need), peer.access.contains(need),
              let bytes = mr.bytes(at: address, length: length) else { throw Failure.status(.remoteAccessError) }
        return bytes
    }

    /// The peer's next receive (from its SRQ if it has one).
    private func takeReceive(_ peer: FakeQP) -> FakeReceiveQueue.Entry? {
        if let srq = peer.srq { return srq.queue.popFirst() }
        return peer.receiveQueue.popFirst()
    }

    /// SGE `index` of a receive `takeReceive(peer)` returned.
    private func receiveSGE(_ peer: FakeQP, _ receive: FakeReceiveQueue.Entry, _ index: Int) -> ScatterGatherElement {
        if let srq = peer.srq { return srq.queue.sge(receive, index) }
        return peer.receiveQueue.sge(receive, index)
    }

    /// Delivers `r`'s payload of `length` bytes (a UD receive gets the 40-byte GRH first) into the peer's next receive,
    /// copying from the gather list straight into the receive's scatter list; the receive completes there.
    private func deliver(_ r: BackendSendWR, length: Int, to peer: FakeQP, immediate: UInt32?, opcode: WCOpcode, solicited: Bool,
                         _ s: inout FakeWorld.State) throws {
        guard let receive = takeReceive(peer) else { throw Failure.status(type == .rc ? .rnrRetryExceeded : .success) }
        let prefix = type == .ud ? 40 : 0
        let total = prefix + length
        var flags: WCFlags = immediate == nil ? [] : .withImmediate
        if type == .ud { flags.insert(.grh) }
        let inline = r.flags.contains(.inline)
        var landed = 0
        var source = 0, sourceOffset = 0
        var status = WCStatus.success
        for t in 0..<receive.sgeCount where landed < total {
            guard let target = try? peer.local(receiveSGE(peer, receive, t), inline: false, write: true, &s) else { status = .localProtectionError; break }
            var at = 0
            while at < target.count, landed < total {
                let n: Int
                if landed < prefix {
                    n = min(prefix - landed, target.count - at)
                    (target.baseAddress! + at).initializeMemory(as: UInt8.self, repeating: 0, count: n)
                } else {
                    var bytes = try local(r.scatterGather[source], inline: inline, write: false, &s)
                    while bytes.count == sourceOffset {
                        source += 1
                        sourceOffset = 0
                        bytes = try local(r.scatterGather[source], inline: inline, write: false, &s)
                    }
                    n = min(bytes.count - sourceOffset, target.count - at, total - landed)
                    (target.baseAddress! + at).copyMemory(from: bytes.baseAddress! + sourceOffset, byteCount: n)
                    sourceOffset += n
                }
                at += n
                landed += n
            }
        }
        if status == .success && landed < total { status = .localLengthError }
        peer.receiveCQ.push(FFProtocol.WorkCompletion(wrID: receive.id, status: status, opcode: opcode, byteLength: UInt32(clamping: total),
                                                      immData: (immediate ?? 0).bigEndian, qpNum: peer.number, sourceQP: number, flags: flags),
                            solicited: solicited)
        if status != .success { throw Failure.status(type == .rc ? .remoteInvalidRequest : .success) }
    }

    /// Runs one request; returns the byte count of its completion. A `Failure.status(.success)` is a message UC or UD
    /// lost (no receive posted), which completes successfully at the sender.
    private func perform(_ r: BackendSendWR, _ s: inout FakeWorld.State) throws -> UInt32 {
        guard let peer = peer(r, &s) else {
            if type == .rc { throw Failure.status(.retryExceeded) }
            _ = try gatherLength(r, &s)
            return 0
        }
        let solicited = r.flags.contains(.solicited)
        switch r.operation {
        case .send, .sendWithImmediate:
            let length = try gatherLength(r, &s)
            var immediate: UInt32?
            if case .sendWithImmediate(let imm) = r.operation { immediate = imm }
            try deliver(r, length: length, to: peer, immediate: immediate, opcode: .receive, solicited: solicited, &s)
            return UInt32(clamping: length)
        case .rdmaWrite(let address, let rkey), .rdmaWriteWithImmediate(let address, let rkey, _):
            guard type != .ud else { throw Failure.status(.localQPOperationError) }
            let length = try gatherLength(r, &s)
            let target = try remote(peer, address: address, rkey: rkey, length: UInt64(length), need: .remoteWrite, &s)
            if let base = target.baseAddress { try gather(r, into: base, &s) }
            if case .rdmaWriteWithImmediate(_, _, let imm) = r.operation {
                // The receive that a write-with-immediate consumes carries no payload; byte_len is the write's length.
                guard let receive = takeReceive(peer) else { throw Failure.status(type == .rc ? .rnrRetryExceeded : .success) }
                peer.receiveCQ.push(FFProtocol.WorkCompletion(wrID: receive.id, status: .success, opcode: .receiveRDMAWithImmediate,
                                                              byteLength: UInt32(clamping: length), immData: imm.bigEndian,
                                                              qpNum: peer.number, sourceQP: number, flags: .withImmediate),
                                    solicited: solicited)
            }
            return UInt32(clamping: length)
        case .rdmaRead(let address, let rkey):
            guard type == .rc else { throw Failure.status(.localQPOperationError) }
            let total = r.scatterGather.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            let source = try remote(peer, address: address, rkey: rkey, length: total, need: .remoteRead, &s)
            var offset = 0
            for e in r.scatterGather {
                let target = try local(e, inline: false, write: true, &s)
                if !target.isEmpty { target.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: target.count) }
                offset += target.count
            }
            return UInt32(clamping: total)
        case .compareAndSwap(let address, let rkey, _, _), .fetchAndAdd(let address, let rkey, _):
            guard type == .rc else { throw Failure.status(.localQPOperationError) }
            guard r.scatterGather.count == 1, r.scatterGather[0].length == 8, address % 8 == 0 else {
                throw Failure.status(.localLengthError)
            }
            let word = try remote(peer, address: address, rkey: rkey, length: 8, need: .remoteAtomic, &s)
            let result = try local(r.scatterGather[0], inline: false, write: true, &s)
            let old = word.loadUnaligned(as: UInt64.self)
            switch r.operation {
            case .compareAndSwap(_, _, let compare, let swap): if old == compare { word.storeBytes(of: swap, as: UInt64.self) }
            case .fetchAndAdd(_, _, let add): word.storeBytes(of: old &+ add, as: UInt64.self)
            default: break
            }
            result.storeBytes(of: old, as: UInt64.self)
            return 8
        }
    }
}
