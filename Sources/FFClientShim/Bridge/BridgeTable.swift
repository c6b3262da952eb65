import CFFClientShim
import FFClient
import FFProtocol
import FFSystem

/// The C layer's bridge table (Sources/CFFClientShim/include/ffshim_bridge.h). Each entry is a
/// @convention(c) closure, so the compiler checks it against the C declaration; each returns 0 or an errno.
nonisolated(unsafe) private let table: UnsafeMutablePointer<ffshim_bridge> = {
    let pointer = UnsafeMutablePointer<ffshim_bridge>.allocate(capacity: 1)
    pointer.initialize(to: makeBridge())
    return pointer
}()

/// The table for the C layer; made once, kept for the life of the process.
@_cdecl("ffshim_swift_bridge")
public func ffshimSwiftBridge() -> UnsafePointer<ffshim_bridge> { UnsafePointer(table) }

private func makeBridge() -> ffshim_bridge {
    var b = ffshim_bridge()
    b.probe = { path, guid, reason, reasonSize in
        do throws(ClientError) {
            let connection = try RouterConnection(path: String(cString: path!), name: "ffclient-probe")
            defer { connection.close() }
            let attributes = try connection.call(QueryDeviceRequest()).0
            guid?.pointee = attributes.nodeGUID
            return 0
        } catch {
            copyReason(reasonOf(error), to: reason, size: reasonSize)
            return error.errno
        }
    }
    b.open = { path, name, session, socket, reason, reasonSize in
        do throws(ClientError) {
            let shim = try ShimSession(path: String(cString: path!),
                                       name: name.map { String(cString: $0) } ?? "ffclient")
            session?.pointee = Unmanaged.passRetained(shim).toOpaque()
            socket?.pointee = shim.connection.descriptor
            return 0
        } catch {
            copyReason(reasonOf(error), to: reason, size: reasonSize)
            return error.errno
        }
    }
    b.close = { session in
        Unmanaged<ShimSession>.fromOpaque(session!).takeRetainedValue().connection.close()
    }
    b.query_device = { session, attr in
        withSession(session) { s throws(ClientError) in
            attr?.pointee.fill(from: try s.connection.call(QueryDeviceRequest()).0)
        }
    }
    b.query_port = { session, port, attr in
        withSession(session) { s throws(ClientError) in
            attr?.pointee.fill(from: try s.connection.queryPort(port))
        }
    }
    b.query_gid = { session, port, index, gid in
        withSession(session) { s throws(ClientError) in
            guard index >= 0 else { throw invalid("gid index \(index)") }
            try s.connection.queryGID(port: port, index: index).store(into: &gid!.pointee)
        }
    }
    b.alloc_pd = { session, pd in
        withSession(session) { s throws(ClientError) in pd?.pointee = try s.connection.allocatePD().rawValue }
    }
    b.dealloc_pd = { session, pd in
        withSession(session) { s throws(ClientError) in try s.connection.deallocatePD(PDHandle(rawValue: pd)) }
    }
    b.reg_mr = { session, pd, access, iova, length, memfd, offset, mr, lkey, rkey in
        withSession(session) { s throws(ClientError) in
            let request = RegMRRequest(pd: PDHandle(rawValue: pd), access: AccessFlags(rawValue: access), address: iova,
                                       length: length, memfdOffset: offset)
            let reply = try s.connection.call(request, descriptors: [memfd]).0
            mr?.pointee = reply.mr.rawValue
            lkey?.pointee = reply.lkey
            rkey?.pointee = reply.rkey
        }
    }
    b.reg_mr_segments = { session, pd, access, iova, length, segments, count, mr, lkey, rkey in
        withSession(session) { s throws(ClientError) in
            guard s.connection.session.capabilities.contains(.memorySegments) else {
                throw .router(ErrorReply(errno: Errno.notSupported,
                                         reason: "the router does not register memory over several memfds"))
            }
            guard let segments, count >= 1, count <= WireLimits.maxMRSegments else {
                throw invalid("\(count) memory segments")
            }
            // One descriptor per memfd, in the order the segments first name them.
            var descriptors: [Int32] = []
            var list: [MemorySegment] = []
            for segment in UnsafeBufferPointer(start: segments, count: Int(count)) {
                let index = descriptors.firstIndex(of: segment.memfd) ?? {
                    descriptors.append(segment.memfd); return descriptors.count - 1
                }()
                list.append(MemorySegment(descriptor: UInt8(index), memfdOffset: segment.offset,
                                          length: segment.length))
            }
            let request = RegMRSegmentsRequest(pd: PDHandle(rawValue: pd), access: AccessFlags(rawValue: access),
                                               address: iova, length: length,
                                               descriptorCount: UInt8(descriptors.count), segments: list)
            let reply = try s.connection.call(request, descriptors: descriptors).0
            mr?.pointee = reply.mr.rawValue
            lkey?.pointee = reply.lkey
            rkey?.pointee = reply.rkey
        }
    }
    b.dereg_mr = { session, mr in
        withSession(session) { s throws(ClientError) in try s.connection.deregisterMemory(MRHandle(rawValue: mr)) }
    }
    b.create_comp_channel = { session, channel, fd in
        withSession(session) { s throws(ClientError) in
            let (handle, descriptor) = try s.connection.createCompletionChannel()
            channel?.pointee = handle.rawValue
            // The C layer's ibv_comp_channel owns it from here (closed in ibv_destroy_comp_channel).
            fd?.pointee = descriptor.release()
        }
    }
    b.destroy_comp_channel = { session, channel in
        withSession(session) { s throws(ClientError) in
            try s.connection.destroyCompletionChannel(CompChannelHandle(rawValue: channel))
        }
    }
    b.create_cq = { session, cqe, channel, vector, cq, actual in
        withSession(session) { s throws(ClientError) in
            let request = CreateCQRequest(cqe: cqe, channel: channel == 0 ? nil : CompChannelHandle(rawValue: channel),
                                          compVector: vector)
            let reply = try s.connection.call(request).0
            do throws(ClientError) {
                try s.rings?.addCQ(reply.cq.rawValue)
            } catch {
                try? s.connection.destroyCQ(reply.cq)
                throw error
            }
            cq?.pointee = reply.cq.rawValue
            actual?.pointee = reply.cqe
        }
    }
    b.destroy_cq = { session, cq in
        withSession(session) { s throws(ClientError) in
            try s.connection.destroyCQ(CQHandle(rawValue: cq))
            s.rings?.removeCQ(cq)
        }
    }
    b.req_notify_cq = { session, cq, solicited in
        withSession(session) { s throws(ClientError) in
            try s.connection.requestNotification(CQHandle(rawValue: cq), solicitedOnly: solicited != 0)
        }
    }
    b.create_qp = { session, request, qp, qpNum, cap in
        withSession(session) { s throws(ClientError) in
            let r = request!.pointee
            guard let type = QPType(rawValue: r.qp_type) else {
                throw .router(ErrorReply(errno: 95, reason: "QP type \(r.qp_type) is not supported"))
            }
            let reply = try s.connection.createQP(CreateQPRequest(
                pd: PDHandle(rawValue: r.pd), sendCQ: CQHandle(rawValue: r.send_cq),
                recvCQ: CQHandle(rawValue: r.recv_cq),
                srq: r.srq == 0 ? nil : SRQHandle(rawValue: r.srq), type: type, signalAll: r.sq_sig_all != 0,
                capabilities: QPCapabilities(r.cap)))
            do throws(ClientError) {
                try s.rings?.addQP(reply.qp.rawValue, hasSRQ: r.srq != 0)
            } catch {
                try? s.connection.destroyQP(reply.qp)
                throw error
            }
            qp?.pointee = reply.qp.rawValue
            qpNum?.pointee = reply.qpNum
            cap?.pointee = reply.capabilities.verbs
        }
    }
    b.modify_qp = { session, qp, attr, mask in
        withSession(session) { s throws(ClientError) in
            let selected = QPAttributeMask(rawValue: UInt32(bitPattern: mask))
            try s.connection.modifyQP(QPHandle(rawValue: qp), mask: selected,
                                      attributes: try QPAttributes(attr!.pointee, mask: selected))
        }
    }
    b.query_qp = { session, qp, mask, attr, cap in
        withSession(session) { s throws(ClientError) in
            // The router reports every field; it only accepts the mask bits it knows (IBV_QP_CAP is not one).
            var selected = QPAttributeMask(rawValue: UInt32(bitPattern: mask)).intersection(.supported)
            if selected.isEmpty { selected = .state }
            let reply = try s.connection.queryQP(QPHandle(rawValue: qp), mask: selected)
            reply.attributes.store(into: &attr!.pointee)
            cap?.pointee = reply.capabilities.verbs
        }
    }
    b.destroy_qp = { session, qp in
        withSession(session) { s throws(ClientError) in
            try s.connection.destroyQP(QPHandle(rawValue: qp))
            s.rings?.removeQP(qp)
        }
    }
    b.create_srq = { session, pd, attr, srq in
        withSession(session) { s throws(ClientError) in
            let a = attr!.pointee
            let reply = try s.connection.createSRQ(CreateSRQRequest(pd: PDHandle(rawValue: pd), maxWR: a.max_wr,
                                                                    maxSGE: a.max_sge, limit: a.srq_limit))
            do throws(ClientError) {
                try s.rings?.addSRQ(reply.srq.rawValue)
            } catch {
                try? s.connection.destroySRQ(reply.srq)
                throw error
            }
            srq?.pointee = reply.srq.rawValue
            attr!.pointee.max_wr = reply.maxWR
            attr!.pointee.max_sge = reply.maxSGE
        }
    }
    b.modify_srq = { session, srq, attr, mask in
        withSession(session) { s throws(ClientError) in
            let a = attr!.pointee
            let request = ModifySRQRequest(srq: SRQHandle(rawValue: srq),
                                           mask: SRQAttributeMask(rawValue: UInt32(bitPattern: mask)),
                                           maxWR: a.max_wr, limit: a.srq_limit)
            _ = try s.connection.call(request)
        }
    }
    b.destroy_srq = { session, srq in
        withSession(session) { s throws(ClientError) in
            try s.connection.destroySRQ(SRQHandle(rawValue: srq))
            s.rings?.removeSRQ(srq)
        }
    }
    b.create_ah = { session, pd, attr, ah in
        withSession(session) { s throws(ClientError) in
            ah?.pointee = try s.connection.createAH(pd: PDHandle(rawValue: pd),
                                                    attributes: AHAttributes(attr!.pointee)).rawValue
        }
    }
    b.destroy_ah = { session, ah in
        withSession(session) { s throws(ClientError) in try s.connection.destroyAH(AHHandle(rawValue: ah)) }
    }
    b.post_send = { session, qp, qpType, wr, bad in
        onDataPath(session) { $0.postSend(qp: QPHandle(rawValue: qp), qpType: qpType, wr, bad: bad) }
    }
    b.post_recv = { session, qp, wr, bad in
        onDataPath(session) { $0.postReceive(qp: QPHandle(rawValue: qp), wr, bad: bad) }
    }
    b.post_srq_recv = { session, srq, wr, bad in
        onDataPath(session) { $0.postSRQReceive(srq: SRQHandle(rawValue: srq), wr, bad: bad) }
    }
    b.poll_cq = { session, cq, entries, wc, count in
        onDataPath(session) { $0.poll(cq: CQHandle(rawValue: cq), entries: entries, into: wc, count: count) }
    }
    return b
}
