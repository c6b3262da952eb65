import CFFClientShim
import FFClient
import FFProtocol

/// Posting and polling for one session: the one interface the shared-memory fast path will replace. Each
/// call returns 0 or an errno, and on a failed post sets `bad` to the first request not posted.
protocol ShimDataPath: Sendable {
    func postSend(qp: QPHandle, qpType: UInt32, _ first: UnsafeMutablePointer<ibv_send_wr>?,
                  bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_send_wr>?>?) -> Int32
    func postReceive(qp: QPHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                     bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32
    func postSRQReceive(srq: SRQHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                        bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32
    func poll(cq: CQHandle, entries: Int32, into completions: UnsafeMutablePointer<ibv_wc>?,
              count: UnsafeMutablePointer<Int32>?) -> Int32
}

/// Version 1's data path: every post and poll is one request on the control socket. Long chains go in
/// posts of `WireLimits`' 32 requests, as docs/protocol.md says the client library splits them.
struct SocketDataPath: ShimDataPath {
    let connection: RouterConnection
    private static let batch = 32
    private static let maxPoll: Int32 = 256

    func postSend(qp: QPHandle, qpType: UInt32, _ first: UnsafeMutablePointer<ibv_send_wr>?,
                  bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_send_wr>?>?) -> Int32 {
        post(first, bad: bad, next: { $0.pointee.next },
             convert: { wr throws(ClientError) in
                 try Self.sendRequest(wr.pointee, qpType: qpType)
             }) { requests throws(ClientError) in
            try self.connection.call(PostSendRequest(qp: qp, requests: requests)).0
        }
    }

    func postReceive(qp: QPHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                     bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32 {
        post(first, bad: bad, next: { $0.pointee.next },
             convert: { wr throws(ClientError) in
                 try Self.receiveRequest(wr.pointee)
             }) { requests throws(ClientError) in
            try self.connection.call(PostRecvRequest(target: qp, requests: requests)).0
        }
    }

    func postSRQReceive(srq: SRQHandle, _ first: UnsafeMutablePointer<ibv_recv_wr>?,
                        bad: UnsafeMutablePointer<UnsafeMutablePointer<ibv_recv_wr>?>?) -> Int32 {
        post(first, bad: bad, next: { $0.pointee.next },
             convert: { wr throws(ClientError) in
                 try Self.receiveRequest(wr.pointee)
             }) { requests throws(ClientError) in
            try self.connection.call(PostRecvRequest(target: srq, requests: requests)).0
        }
    }

    func poll(cq: CQHandle, entries: Int32, into completions: UnsafeMutablePointer<ibv_wc>?,
              count: UnsafeMutablePointer<Int32>?) -> Int32 {
        guard let completions, let count else { return Errno.invalidArgument }
        let asked = UInt32(min(max(entries, 1), Self.maxPoll))
        return errnoOf { () throws(ClientError) in
            let r = try connection.call(PollCQRequest(cq: cq, maxEntries: asked)).0
            guard r.completions.count <= Int(asked) else {
                throw .protocolViolation("expected at most \(asked) completions for poll_cq")
            }
            for (i, c) in r.completions.enumerated() { completions[i].fill(from: c) }
            count.pointee = Int32(r.completions.count)
        }
    }

    /// Walks a chain of work requests in batches; on failure sets `bad` to the request that failed (or
    /// the first of the batch, when the router refused the whole post).
    private func post<WR, Request>(_ first: UnsafeMutablePointer<WR>?,
                                   bad: UnsafeMutablePointer<UnsafeMutablePointer<WR>?>?,
                                   next: (UnsafeMutablePointer<WR>) -> UnsafeMutablePointer<WR>?,
                                   convert: (UnsafeMutablePointer<WR>) throws(ClientError) -> Request,
                                   send: ([Request]) throws(ClientError) -> PostReply) -> Int32 {
        var cursor = first
        while let start = cursor {
            var pointers: [UnsafeMutablePointer<WR>] = []
            var requests: [Request] = []
            var walk: UnsafeMutablePointer<WR>? = start
            while let wr = walk, requests.count < Self.batch {
                do throws(ClientError) {
                    requests.append(try convert(wr))
                } catch {
                    // Nothing of this batch went out yet; the ones before it did.
                    bad?.pointee = wr
                    return error.errno
                }
                pointers.append(wr)
                walk = next(wr)
            }
            do throws(ClientError) {
                let result = try send(requests)
                if result.errno != 0 {
                    let index = Int(result.failedIndex)
                    bad?.pointee = index < pointers.count ? pointers[index] : start
                    return result.errno
                }
            } catch {
                bad?.pointee = start
                return error.errno
            }
            cursor = walk
        }
        return 0
    }

    private static func scatterGather(_ list: UnsafeMutablePointer<ibv_sge>?, count: Int32) throws(ClientError)
        -> [ScatterGatherEntry] {
        guard count > 0 else { return [] }
        guard let list, count <= 32 else { throw invalid("num_sge \(count)") }
        return (0..<Int(count)).map {
            ScatterGatherEntry(address: list[$0].addr, length: list[$0].length, lkey: list[$0].lkey)
        }
    }

    static func sendRequest(_ wr: ibv_send_wr, qpType: UInt32) throws(ClientError) -> SendWorkRequest {
        guard let opcode = SendOpcode(rawValue: numericCast(wr.opcode.rawValue)) else {
            throw .router(ErrorReply(errno: 95, reason: "send opcode \(wr.opcode.rawValue) is not supported"))
        }
        let flags = SendFlags(rawValue: wr.send_flags)
        var request = SendWorkRequest(wrID: wr.wr_id, opcode: opcode, flags: flags, immData: wr.imm_data)
        let entries = try scatterGather(wr.sg_list, count: wr.num_sge)
        if flags.contains(.inline) {
            // Inline data need not be registered: gather it here, the router could not read it.
            var payload: [UInt8] = []
            for sge in entries {
                guard payload.count + Int(sge.length) <= 512 else { throw invalid("inline data over 512 bytes") }
                if sge.length > 0, let base = UnsafeRawPointer(bitPattern: UInt(sge.address)) {
                    payload.append(contentsOf: UnsafeRawBufferPointer(start: base, count: Int(sge.length)))
                }
            }
            request.inlineData = payload
        } else {
            request.sgList = entries
        }
        switch opcode {
        case .rdmaWrite, .rdmaWriteWithImmediate, .rdmaRead:
            request.remoteAddress = wr.wr.rdma.remote_addr
            request.rkey = wr.wr.rdma.rkey
        case .atomicCompareAndSwap, .atomicFetchAndAdd:
            request.remoteAddress = wr.wr.atomic.remote_addr
            request.rkey = wr.wr.atomic.rkey
            request.compareAdd = wr.wr.atomic.compare_add
            request.swap = wr.wr.atomic.swap
        case .send, .sendWithImmediate:
            break
        }
        if qpType == IBV_QPT_UD.rawValue {
            guard let ah = wr.wr.ud.ah else { throw invalid("UD send without an address handle") }
            request.addressHandle = AHHandle(rawValue: ah.pointee.handle)
            request.remoteQPN = wr.wr.ud.remote_qpn
            request.remoteQKey = wr.wr.ud.remote_qkey
        }
        return request
    }

    static func receiveRequest(_ wr: ibv_recv_wr) throws(ClientError) -> ReceiveWorkRequest {
        ReceiveWorkRequest(wrID: wr.wr_id, sgList: try scatterGather(wr.sg_list, count: wr.num_sge))
    }
}

extension ibv_wc {
    mutating func fill(from c: WorkCompletion) {
        self = ibv_wc()
        wr_id = c.wrID
        status = ibv_wc_status(rawValue: numericCast(c.status.rawValue))
        opcode = ibv_wc_opcode(rawValue: numericCast(c.opcode.rawValue))
        vendor_err = c.vendorError
        byte_len = c.byteLength
        imm_data = c.immData
        qp_num = c.qpNum
        src_qp = c.sourceQP
        wc_flags = c.flags.rawValue
        pkey_index = c.pkeyIndex
        slid = c.sourceLID
        sl = c.serviceLevel
        dlid_path_bits = c.dlidPathBits
    }
}
