import FFProtocol
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
    private var current: Verbs.QPState = .reset
    private var access: Verbs.AccessFlags = []
    private var qkey: UInt32 = 0
    private var destinationQPN: UInt32 = 0
    private var receiveQueue: [Verbs.ReceiveWorkRequest] = []

    init(world: FakeWorld, pd: FakePD, configuration c: BackendQPConfiguration, sendCQ: FakeCQ, receiveCQ: FakeCQ, srq: FakeSRQ?) {
        self.world = world
        self.pd = pd
        type = c.type
        capabilities = Self.granted(c.capabilities)
        signalAll = c.signalAll
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.srq = srq
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
            if to == .reset { receiveQueue.removeAll() }
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

    func postReceive(_ requests: [Verbs.ReceiveWorkRequest]) throws {
        try world.locked { _ in
            guard srq == nil else { throw fakeError("ibv_post_recv", Errno.invalidArgument, "QP \(number) receives through its SRQ", failed: 0) }
            guard current != .reset else { throw fakeError("ibv_post_recv", Errno.invalidArgument, "QP \(number) is in RESET", failed: 0) }
            for (i, r) in requests.enumerated() {
                guard r.scatterGather.count <= Int(capabilities.maxReceiveSGE) else {
                    throw fakeError("ibv_post_recv", Errno.invalidArgument, "\(r.scatterGather.count) SGEs", failed: i)
                }
                guard receiveQueue.count < Int(capabilities.maxReceiveWorkRequests) else {
                    throw fakeError("ibv_post_recv", Errno.outOfMemory, "receive queue full", failed: i)
                }
                receiveQueue.append(r)
            }
            if current == .error { flushReceives() }
        }
    }

    func postSend(_ requests: [BackendSendRequest]) throws {
        try world.locked { s in
            guard current == .readyToSend || current == .error else {
                throw fakeError("ibv_post_send", Errno.invalidArgument, "QP \(number) is in \(current)", failed: 0)
            }
            guard requests.count <= Int(capabilities.maxSendWorkRequests) else {
                throw fakeError("ibv_post_send", Errno.outOfMemory, "send queue full", failed: Int(capabilities.maxSendWorkRequests))
            }
            for (i, r) in requests.enumerated() {
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
            for r in requests {
                guard current == .readyToSend else {
                    sendCQ.push(completion(r, .workRequestFlushed, opcode: .send), solicited: false)
                    continue
                }
                execute(r, &s)
            }
        }
    }

    private func flushReceives() {
        for r in receiveQueue {
            receiveCQ.push(FFProtocol.WorkCompletion(wrID: r.id, status: .workRequestFlushed, opcode: .receive, qpNum: number), solicited: false)
        }
        receiveQueue.removeAll()
    }

    private func completion(_ r: BackendSendRequest, _ status: WCStatus, opcode: WCOpcode, bytes: UInt32 = 0) -> FFProtocol.WorkCompletion {
        FFProtocol.WorkCompletion(wrID: r.id, status: status, opcode: opcode, byteLength: bytes, qpNum: number)
    }

    // MARK: - Execution (world.lock held)

    private enum Failure: Error { case status(WCStatus) }

    private func execute(_ r: BackendSendRequest, _ s: inout FakeWorld.State) {
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
    private func peer(_ r: BackendSendRequest, _ s: inout FakeWorld.State) -> FakeQP? {
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

    private func gather(_ r: BackendSendRequest, _ s: inout FakeWorld.State) throws -> [UInt8] {
        var payload: [UInt8] = []
        for e in r.scatterGather {
            payload.append(contentsOf: try local(e, inline: r.flags.contains(.inline), write: false, &s))
        }
        return payload
    }

    private func remote(_ peer: FakeQP, address: UInt64, rkey: UInt32, length: UInt64, need: Verbs.AccessFlags,
                        _ s: inout FakeWorld.State) throws -> UnsafeMutableRawBufferPointer {
        guard let mr = s.mrsByRKey[rkey]?.object, mr.pd === peer.pd, mr.access.contains(need), peer.access.contains(need),
              let bytes = mr.bytes(at: address, length: length) else { throw Failure.status(.remoteAccessError) }
        return bytes
    }

    private func takeReceive(_ peer: FakeQP) -> Verbs.ReceiveWorkRequest? {
        if let srq = peer.srq { return srq.queue.isEmpty ? nil : srq.queue.removeFirst() }
        return peer.receiveQueue.isEmpty ? nil : peer.receiveQueue.removeFirst()
    }

    /// Delivers `payload` into the peer's next receive; the receive completes there.
    private func deliver(_ payload: [UInt8], to peer: FakeQP, immediate: UInt32?, opcode: WCOpcode, solicited: Bool,
                         _ s: inout FakeWorld.State) throws {
        guard let receive = takeReceive(peer) else { throw Failure.status(type == .rc ? .rnrRetryExceeded : .success) }
        // A UD receive starts with the 40-byte GRH.
        let landing = type == .ud ? [UInt8](repeating: 0, count: 40) + payload : payload
        var flags: WCFlags = immediate == nil ? [] : .withImmediate
        if type == .ud { flags.insert(.grh) }
        var offset = 0
        var status = WCStatus.success
        for e in receive.scatterGather where offset < landing.count {
            guard let target = try? peer.local(e, inline: false, write: true, &s) else { status = .localProtectionError; break }
            let n = min(target.count, landing.count - offset)
            landing.withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
        }
        if status == .success && offset < landing.count { status = .localLengthError }
        peer.receiveCQ.push(FFProtocol.WorkCompletion(wrID: receive.id, status: status, opcode: opcode, byteLength: UInt32(clamping: landing.count),
                                                      immData: (immediate ?? 0).bigEndian, qpNum: peer.number, sourceQP: number, flags: flags),
                            solicited: solicited)
        if status != .success { throw Failure.status(type == .rc ? .remoteInvalidRequest : .success) }
    }

    /// Runs one request; returns the byte count of its completion. A `Failure.status(.success)` is a message UC or UD
    /// lost (no receive posted), which completes successfully at the sender.
    private func perform(_ r: BackendSendRequest, _ s: inout FakeWorld.State) throws -> UInt32 {
        guard let peer = peer(r, &s) else {
            if type == .rc { throw Failure.status(.retryExceeded) }
            _ = try gather(r, &s)
            return 0
        }
        let solicited = r.flags.contains(.solicited)
        switch r.operation {
        case .send, .sendWithImmediate:
            let payload = try gather(r, &s)
            var immediate: UInt32?
            if case .sendWithImmediate(let imm) = r.operation { immediate = imm }
            try deliver(payload, to: peer, immediate: immediate, opcode: .receive, solicited: solicited, &s)
            return UInt32(clamping: payload.count)
        case .rdmaWrite(let address, let rkey), .rdmaWriteWithImmediate(let address, let rkey, _):
            guard type != .ud else { throw Failure.status(.localQPOperationError) }
            let payload = try gather(r, &s)
            let target = try remote(peer, address: address, rkey: rkey, length: UInt64(payload.count), need: .remoteWrite, &s)
            payload.withUnsafeBytes { if !$0.isEmpty { target.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            if case .rdmaWriteWithImmediate(_, _, let imm) = r.operation {
                // The receive that a write-with-immediate consumes carries no payload; byte_len is the write's length.
                guard let receive = takeReceive(peer) else { throw Failure.status(type == .rc ? .rnrRetryExceeded : .success) }
                peer.receiveCQ.push(FFProtocol.WorkCompletion(wrID: receive.id, status: .success, opcode: .receiveRDMAWithImmediate,
                                                              byteLength: UInt32(clamping: payload.count), immData: imm.bigEndian,
                                                              qpNum: peer.number, sourceQP: number, flags: .withImmediate),
                                    solicited: solicited)
            }
            return UInt32(clamping: payload.count)
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
