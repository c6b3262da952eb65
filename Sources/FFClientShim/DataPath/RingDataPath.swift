import CFFClientShim
import FFClient
import FFProtocol
import FFSystem
import Glibc
import Synchronization

/// The shared-memory fast path (protocol capability `sharedMemoryRings`, docs/shim.md "Fast path"): posts are
/// written into the QP's or SRQ's ring and polls read the CQ's ring, in this process, with no system call and no
/// allocation; the router's data-path thread moves them to and from the device. A post rings the session's doorbell
/// only when the router says it sleeps. Each ring has its own lock (verbs lets threads share a QP or CQ).
final class RingDataPath: ShimDataPath, @unchecked Sendable {
    // @unchecked: the tables are behind mutexes; each ring's indices behind its own.
    final class SendQueue: @unchecked Sendable {
        let producer: Mutex<RingProducer>
        let sgeCapacity: Int
        let inlineCapacity: Int
        init(_ memory: RingMemory, receive: Bool) {
            producer = Mutex(RingProducer(memory))
            sgeCapacity = receive ? RingSlots.receiveSGECapacity(slotSize: memory.slotSize)
                                  : RingSlots.sendSGECapacity(slotSize: memory.slotSize)
            inlineCapacity = receive ? 0 : RingSlots.sendInlineCapacity(slotSize: memory.slotSize)
        }
    }

    /// A QP's or SRQ's rings in this process.
    final class Queues: @unchecked Sendable {
        let mapping: SharedMemory
        let sleep: RingSleepFlag
        let send: SendQueue?
        let receive: SendQueue?
        init(mapping: SharedMemory, send: SendQueue?, receive: SendQueue?) {
            self.mapping = mapping
            sleep = RingSleepFlag(base: mapping.bytes.baseAddress!)
            self.send = send
            self.receive = receive
        }
    }

    /// A CQ's completion ring in this process.
    final class Completions: @unchecked Sendable {
        let mapping: SharedMemory
        let sleep: RingSleepFlag
        let consumer: Mutex<(ring: RingConsumer, emptyPolls: Int)>
        init(mapping: SharedMemory, ring: RingMemory) {
            self.mapping = mapping
            sleep = RingSleepFlag(base: mapping.bytes.baseAddress!)
            consumer = Mutex((RingConsumer(ring), 0))
        }
    }

    let connection: RouterConnection
    private let doorbell: OwnedDescriptor
    /// Empty polls of one CQ in a row after which a poll yields the CPU.
    static let emptyPollsBeforeYield = 1024
    private let qps = Mutex<[UInt32: Queues]>([:])
    private let srqs = Mutex<[UInt32: Queues]>([:])
    private let cqs = Mutex<[UInt32: Completions]>([:])

    /// The fast path of a session the router granted it: maps the session's doorbell.
    init(connection: RouterConnection) throws(ClientError) {
        self.connection = connection
        doorbell = try connection.call(MapRingRequest(target: .doorbell, handle: 0)).1[0]
    }

    /// Whether the fast path is wanted: not when `FFCLIENT_FASTPATH=0` (docs/shim.md).
    static let wanted: Bool = {
        guard let value = getenv("FFCLIENT_FASTPATH") else { return true }
        return String(cString: value) != "0"
    }()

    private func map(_ target: RingTarget, _ handle: UInt32) throws(ClientError) -> (SharedMemory, [RingDescriptor]) {
        let (r, descriptors) = try connection.call(MapRingRequest(target: target, handle: handle))
        let fd = descriptors[0]
        guard let size = Int(exactly: r.size), size > 0 else {
            throw .protocolViolation("map_ring reply without a mapping")
        }
        let memory: SharedMemory
        do {
            memory = try SharedMemory(mapping: fd, offset: 0, length: size)
        } catch {
            throw .transport(error)
        }
        guard let rings = RingMapLayout.readControl(memory.bytes.baseAddress!, size: size) else {
            throw .protocolViolation("ring mapping of \(target) \(handle) has no valid layout")
        }
        return (memory, rings)
    }

    /// Maps a new CQ's completion ring.
    func addCQ(_ handle: UInt32) throws(ClientError) {
        let (memory, rings) = try map(.cq, handle)
        guard rings.count == 1, rings[0].kind == .completion, rings[0].slotSize >= RingSlots.completionSlotSize else {
            throw .protocolViolation("CQ ring layout")
        }
        let entry = Completions(mapping: memory, ring: RingMemory(base: memory.bytes.baseAddress!, rings[0]))
        cqs.withLock { $0[handle] = entry }
    }

    /// Maps a new QP's send ring and (without an SRQ) receive ring.
    func addQP(_ handle: UInt32, hasSRQ: Bool) throws(ClientError) {
        let (memory, rings) = try map(.qp, handle)
        guard rings.count == (hasSRQ ? 1 : 2), rings[0].kind == .send, hasSRQ || rings[1].kind == .receive else {
            throw .protocolViolation("QP ring layout")
        }
        let base = memory.bytes.baseAddress!
        let entry = Queues(mapping: memory, send: SendQueue(RingMemory(base: base, rings[0]), receive: false),
                           receive: hasSRQ ? nil : SendQueue(RingMemory(base: base, rings[1]), receive: true))
        qps.withLock { $0[handle] = entry }
    }

    /// Maps a new SRQ's receive ring.
    func addSRQ(_ handle: UInt32) throws(ClientError) {
        let (memory, rings) = try map(.srq, handle)
        guard rings.count == 1, rings[0].kind == .receive else { throw .protocolViolation("SRQ ring layout") }
        let entry = Queues(mapping: memory, send: nil, receive: SendQueue(RingMemory(base: memory.bytes.baseAddress!,
            rings[0]), receive: true))
        srqs.withLock { $0[handle] = entry }
    }

    /// Unmaps a destroyed CQ's ring.
    func removeCQ(_ handle: UInt32) { _ = cqs.withLock { $0.removeValue(forKey: handle) } }
    /// Unmaps a destroyed QP's rings.
    func removeQP(_ handle: UInt32) { _ = qps.withLock { $0.removeValue(forKey: handle) } }
    /// Unmaps a destroyed SRQ's ring.
    func removeSRQ(_ handle: UInt32) { _ = srqs.withLock { $0.removeValue(forKey: handle) } }

    @inline(__always)
    private func ring(_ sleep: RingSleepFlag) {
        guard sleep.needsDoorbell() else { return }
        var one: UInt64 = 1
        _ = write(doorbell.rawValue, &one, 8)
    }

    // MARK: - ShimDataPath

    func postSend(qp: QPHandle, qpType: UInt32, _ first: UnsafeMutablePointer<ibv_send_wr>?,
                  bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_send_wr>?>?) -> Int32 {
        guard let queues = qps.withLock({ $0[qp.rawValue] }), let queue = queues.send else {
            bad?.pointee = first; return Errno.badHandle
        }
        let ud = qpType == IBV_QPT_UD.rawValue
        var cursor = first
        let error = queue.producer.withLock { p -> Int32 in
            var error: Int32 = 0
            while let wr = cursor {
                guard let slot = p.reserve() else { error = Errno.outOfMemory; break }
                error = Self.writeSend(wr.pointee, into: slot, ud: ud, queue: queue)
                if error != 0 { break }
                p.advance()
                cursor = wr.pointee.next
            }
            if p.publish() { ring(queues.sleep) }
            return error
        }
        if error != 0 { bad?.pointee = cursor }
        return error
    }

    func postReceive(qp: QPHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                     bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32 {
        guard let queues = qps.withLock({ $0[qp.rawValue] }), let queue = queues.receive else {
            bad?.pointee = first; return Errno.invalidArgument
        }
        return postReceive(queues, queue, first, bad: bad)
    }

    func postSRQReceive(srq: SRQHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                        bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32 {
        guard let queues = srqs.withLock({ $0[srq.rawValue] }), let queue = queues.receive else {
            bad?.pointee = first; return Errno.badHandle
        }
        return postReceive(queues, queue, first, bad: bad)
    }

    private func postReceive(_ queues: Queues, _ queue: SendQueue, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                             bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32 {
        var cursor = first
        let error = queue.producer.withLock { p -> Int32 in
            var error: Int32 = 0
            while let wr = cursor {
                guard let slot = p.reserve() else { error = Errno.outOfMemory; break }
                let w = wr.pointee
                guard w.num_sge >= 0, Int(w.num_sge) <= queue.sgeCapacity, w.num_sge == 0 || w.sg_list != nil else {
                    error = Errno.invalidArgument
                    break
                }
                RingSlots.writeReceive(slot, wrID: w.wr_id, sgeCount: UInt16(w.num_sge))
                for i in 0..<Int(w.num_sge) {
                    let sge = w.sg_list[i]
                    RingSlots.writeSGE(slot, fixed: 16, index: i, address: sge.addr, length: sge.length, lkey: sge.lkey)
                }
                p.advance()
                cursor = w.next
            }
            if p.publish() { ring(queues.sleep) }
            return error
        }
        if error != 0 { bad?.pointee = cursor }
        return error
    }

    func poll(cq: CQHandle, entries: Int32, into completions: UnsafeMutablePointer<ibv_wc>?,
              count: UnsafeMutablePointer<Int32>?) -> Int32 {
        guard let completions, let count else { return Errno.invalidArgument }
        guard let ring = cqs.withLock({ $0[cq.rawValue] }) else { return Errno.badHandle }
        count.pointee = ring.consumer.withLock { state -> Int32 in
            let available = state.ring.available()
            let n = min(available, Int(max(0, entries)))
            for i in 0..<n { completions[i].fill(raw: RingSlots.readCompletion(state.ring.slot(i))) }
            state.ring.release(n)
            // A full ring may have left completions with the router: tell it there is room if it sleeps.
            if n > 0, available == state.ring.memory.capacity { self.ring(ring.sleep) }
            // A program spinning on an empty CQ would keep the router (its "device", on the same cores) from running:
            // after many empty polls in a row it yields the CPU once. A poll that finds work never makes a system call.
            if n == 0 {
                state.emptyPolls &+= 1
                if state.emptyPolls >= Self.emptyPollsBeforeYield {
                    state.emptyPolls = 0
                    sched_yield()
                }
            } else {
                state.emptyPolls = 0
            }
            return Int32(n)
        }
        return 0
    }

    /// One send work request into its slot: 0 or the errno verbs gives for it.
    @inline(__always)
    private static func writeSend(_ w: ibv_send_wr, into slot: UnsafeMutableRawPointer, ud: Bool, queue: SendQueue)
        -> Int32 {
        guard SendOpcode(rawValue: numericCast(w.opcode.rawValue)) != nil else { return 95 }
        guard w.num_sge >= 0, w.num_sge == 0 || w.sg_list != nil else { return Errno.invalidArgument }
        let count = Int(w.num_sge)
        let inline = w.send_flags & IBV_SEND_INLINE.rawValue != 0
        var inlineLength = 0
        if inline {
            let payload = RingSlots.inlinePayload(slot)
            for i in 0..<count {
                let sge = w.sg_list[i]
                guard Int(sge.length) <= queue.inlineCapacity - inlineLength else { return Errno.invalidArgument }
                if sge.length > 0, let from = UnsafeRawPointer(bitPattern: UInt(sge.addr)) {
                    (payload + inlineLength).copyMemory(from: from, byteCount: Int(sge.length))
                }
                inlineLength += Int(sge.length)
            }
        } else {
            guard count <= queue.sgeCapacity else { return Errno.invalidArgument }
            for i in 0..<count {
                let sge = w.sg_list[i]
                RingSlots.writeSGE(slot, fixed: 64, index: i, address: sge.addr, length: sge.length, lkey: sge.lkey)
            }
        }
        var remoteAddress: UInt64 = 0, rkey: UInt32 = 0, compareAdd: UInt64 = 0, swap: UInt64 = 0
        switch w.opcode {
        case IBV_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_FETCH_AND_ADD:
            remoteAddress = w.wr.atomic.remote_addr
            rkey = w.wr.atomic.rkey
            compareAdd = w.wr.atomic.compare_add
            swap = w.wr.atomic.swap
        case IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_READ:
            remoteAddress = w.wr.rdma.remote_addr
            rkey = w.wr.rdma.rkey
        default:
            break
        }
        var ah: UInt32 = 0, remoteQPN: UInt32 = 0, remoteQKey: UInt32 = 0
        if ud {
            guard let handle = w.wr.ud.ah else { return Errno.invalidArgument }
            ah = handle.pointee.handle
            remoteQPN = w.wr.ud.remote_qpn
            remoteQKey = w.wr.ud.remote_qkey
        }
        RingSlots.writeSend(slot, wrID: w.wr_id, opcode: w.opcode.rawValue, flags: w.send_flags, immData: w.imm_data,
                            rkey: rkey,
                            remoteAddress: remoteAddress, compareAdd: compareAdd, swap: swap, addressHandle: ah,
                            remoteQPN: remoteQPN & 0xFF_FFFF, remoteQKey: remoteQKey,
                            sgeCount: inline ? 0 : UInt16(count), inlineLength: UInt16(inlineLength))
        return 0
    }
}

extension ibv_wc {
    /// Copies a completion slot's fields (written by the router with protocol values only).
    @inline(__always)
    mutating func fill(raw c: RingSlots.RawCompletion) {
        wr_id = c.wrID
        status = ibv_wc_status(rawValue: numericCast(c.status))
        opcode = ibv_wc_opcode(rawValue: numericCast(c.opcode))
        vendor_err = c.vendorError
        byte_len = c.byteLength
        imm_data = c.immData
        qp_num = c.qpNum
        src_qp = c.sourceQP
        wc_flags = c.flags
        pkey_index = c.pkeyIndex
        slid = c.sourceLID
        sl = c.serviceLevel
        dlid_path_bits = c.dlidPathBits
    }
}
