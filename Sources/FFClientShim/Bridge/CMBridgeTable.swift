import CFFClientShim
import FFClient
import FFProtocol
import FFSystem

/// The librdmacm layer's bridge table (Sources/CFFClientShim/include/ffshim_cm_bridge.h): each call is one
/// `cmCall` over the session of the connection manager's context.
nonisolated(unsafe) private let cmTable: UnsafeMutablePointer<ffshim_cm_bridge> = {
    let pointer = UnsafeMutablePointer<ffshim_cm_bridge>.allocate(capacity: 1)
    pointer.initialize(to: makeCMBridge())
    return pointer
}()

/// The table for the C layer; made once, kept for the life of the process.
@_cdecl("ffshim_swift_cm_bridge")
public func ffshimSwiftCMBridge() -> UnsafePointer<ffshim_cm_bridge> { UnsafePointer(cmTable) }

private func address(_ networkOrder: UInt32) -> IPv4Address {
    withUnsafeBytes(of: networkOrder) { IPv4Address($0[0], $0[1], $0[2], $0[3]) }
}

private func networkOrder(_ address: IPv4Address) -> UInt32 {
    var value: UInt32 = 0
    withUnsafeMutableBytes(of: &value) { for (i, b) in address.bytes.enumerated() { $0[i] = b } }
    return value
}

private func id(_ raw: UInt32) throws(ClientError) -> CMIDHandle {
    guard raw != 0 else { throw invalid("no cm id") }
    return CMIDHandle(rawValue: raw)
}

private func parameters(_ p: UnsafePointer<ffshim_cm_params>?) throws(ClientError) -> CMConnectionParameters {
    guard let p = p?.pointee else { throw invalid("no connection parameters") }
    guard p.retry_count <= 7, p.rnr_retry_count <= 7 else { throw invalid("retry counts above 7") }
    var data: [UInt8] = []
    if p.private_data_len > 0, let bytes = p.private_data {
        data = Array(UnsafeRawBufferPointer(start: bytes, count: Int(p.private_data_len)))
    }
    guard p.qp_num <= 0xFF_FFFF else { throw invalid("QP number \(p.qp_num)") }
    return CMConnectionParameters(id: try id(p.id), qpNum: p.qp_num, responderResources: p.responder_resources,
                                  initiatorDepth: p.initiator_depth, retryCount: p.retry_count,
                                  rnrRetryCount: p.rnr_retry_count,
                                  flowControl: p.flow_control != 0, srq: p.srq != 0, privateData: data)
}

extension ShimSession {
    /// One connection-manager call and its reply.
    func cm(_ request: CMRequest) throws(ClientError) -> CMReply {
        try connection.call(request).0
    }
}

private func makeCMBridge() -> ffshim_cm_bridge {
    var b = ffshim_cm_bridge()
    b.create_channel = { session, channel, fd in
        withSession(session) { s throws(ClientError) in
            let (handle, descriptors) = try s.connection.call(CMCreateChannelRequest())
            let descriptor = descriptors[0]
            channel?.pointee = handle.rawValue
            // The C layer's rdma_event_channel owns it from here (closed in rdma_destroy_event_channel).
            fd?.pointee = descriptor.release()
        }
    }
    b.create_id = { session, channel, space, handle in
        withSession(session) { s throws(ClientError) in
            guard channel != 0, let portSpace = CMPortSpace(rawValue: space) else {
                throw invalid("port space \(space) (TCP, UDP, IB and IPoIB are served)")
            }
            let reply = try s.cm(.createID(channel: CMChannelHandle(rawValue: channel), portSpace: portSpace))
            handle?.pointee = reply.id?.rawValue ?? 0
        }
    }
    b.destroy_id = { session, raw in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.destroyID(try id(raw))) }
    }
    b.bind = { session, raw, addr, port, boundAddress, boundPort in
        withSession(session) { s throws(ClientError) in
            let reply = try s.cm(.bind(try id(raw), address: address(addr), port: port))
            boundAddress?.pointee = networkOrder(reply.address)
            boundPort?.pointee = reply.port
        }
    }
    b.resolve_addr = { session, raw, source, destination, port, timeout, localAddress, localPort in
        withSession(session) { s throws(ClientError) in
            let reply = try s.cm(.resolveAddress(try id(raw), source: address(source),
                                                 destination: address(destination), port: port,
                                                 timeoutMilliseconds: timeout))
            localAddress?.pointee = networkOrder(reply.address)
            localPort?.pointee = reply.port
        }
    }
    b.resolve_route = { session, raw, timeout in
        withSession(session) { s throws(ClientError) in
            _ = try s.cm(.resolveRoute(try id(raw), timeoutMilliseconds: timeout))
        }
    }
    b.listen = { session, raw, backlog, boundAddress, boundPort in
        withSession(session) { s throws(ClientError) in
            let reply = try s.cm(.listen(try id(raw), backlog: max(0, backlog)))
            boundAddress?.pointee = networkOrder(reply.address)
            boundPort?.pointee = reply.port
        }
    }
    b.connect = { session, p in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.connect(try parameters(p))) }
    }
    b.accept = { session, p in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.accept(try parameters(p))) }
    }
    b.reject = { session, p in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.reject(try parameters(p))) }
    }
    b.disconnect = { session, raw in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.disconnect(try id(raw))) }
    }
    b.attach_qp = { session, raw, qp in
        withSession(session) { s throws(ClientError) in
            guard qp != 0 else { throw invalid("no QP") }
            _ = try s.cm(.attachQP(try id(raw), qp: QPHandle(rawValue: qp)))
        }
    }
    b.establish = { session, raw in
        withSession(session) { s throws(ClientError) in _ = try s.cm(.establish(try id(raw))) }
    }
    b.migrate = { session, raw, channel in
        withSession(session) { s throws(ClientError) in
            guard channel != 0 else { throw invalid("no event channel") }
            _ = try s.cm(.migrate(try id(raw), channel: CMChannelHandle(rawValue: channel)))
        }
    }
    b.destroy_channel = { session, channel in
        withSession(session) { s throws(ClientError) in
            guard channel != 0 else { throw invalid("no event channel") }
            _ = try s.cm(.destroyChannel(CMChannelHandle(rawValue: channel)))
        }
    }
    b.resolve_sender = { session, gid, source, receiver, vip in
        withSession(session) { s throws(ClientError) in
            guard let gid, let peer = GID(bytes: Array(UnsafeBufferPointer(start: gid, count: 16))) else {
                throw invalid("no GID")
            }
            guard source <= 0xFF_FFFF, receiver <= 0xFF_FFFF else { throw invalid("QP number above 24 bits") }
            let reply = try s.cm(.resolveSender(gid: peer, sourceQPN: source, receiverQPN: receiver))
            vip?.pointee = networkOrder(reply.address)
        }
    }
    b.decode_event = { bytes, length, out in
        guard let bytes, let out else { return Errno.invalidArgument }
        guard let event = try? CMEvent.decode(Array(UnsafeBufferPointer(start: bytes, count: length))) else {
            return Errno.protocolError
        }
        var e = ffshim_cm_event()
        e.id = event.id.rawValue
        e.listen_id = event.listenID?.rawValue ?? 0
        e.type = event.type.rawValue
        e.status = event.status
        e.local_addr = networkOrder(event.localAddress)
        e.remote_addr = networkOrder(event.remoteAddress)
        e.local_port = event.localPort
        e.remote_port = event.remotePort
        e.remote_qpn = event.remoteQPN
        e.qkey = event.qkey
        e.remote_psn = event.remotePSN
        e.local_psn = event.localPSN
        e.responder_resources = event.responderResources
        e.initiator_depth = event.initiatorDepth
        e.retry_count = event.retryCount
        e.rnr_retry_count = event.rnrRetryCount
        e.path_mtu = event.pathMTU
        e.private_data_len = UInt8(clamping: event.privateData.count)
        withUnsafeMutableBytes(of: &e.private_data) { buffer in
            for (i, byte) in event.privateData.prefix(buffer.count).enumerated() { buffer[i] = byte }
        }
        withUnsafeMutableBytes(of: &e.reason) { buffer in
            for (i, byte) in event.reason.utf8.prefix(buffer.count - 1).enumerated() { buffer[i] = byte }
        }
        out.pointee = e
        return 0
    }
    return b
}
