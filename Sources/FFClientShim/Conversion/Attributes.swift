import CFFClientShim
import FFClient
import FFProtocol

// Conversions between libibverbs' structs and the protocol's types. A value the protocol cannot carry is
// EINVAL, as a real device would refuse it; fields a mask does not select are never read.

extension ibv_device_attr {
    /// Fills every field the protocol carries; the rest (EE, multicast, FMR, MW) stay 0: the virtual
    /// device has none.
    mutating func fill(from a: DeviceAttributes) {
        self = ibv_device_attr()
        withUnsafeMutableBytes(of: &fw_ver) { buffer in
            let bytes = Array(a.firmwareVersion.utf8.prefix(buffer.count - 1))
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        node_guid = a.nodeGUID.bigEndian
        sys_image_guid = a.systemImageGUID.bigEndian
        max_mr_size = a.maxMRSize
        page_size_cap = a.pageSizeCap
        vendor_id = a.vendorID
        vendor_part_id = a.vendorPartID
        hw_ver = a.hardwareVersion
        device_cap_flags = a.deviceCapFlags
        atomic_cap = ibv_atomic_cap(rawValue: numericCast(a.atomicCap.rawValue))
        max_qp = a.maxQP
        max_qp_wr = a.maxQPWR
        max_sge = a.maxSGE
        max_sge_rd = a.maxSGERead
        max_cq = a.maxCQ
        max_cqe = a.maxCQE
        max_mr = a.maxMR
        max_pd = a.maxPD
        max_qp_rd_atom = a.maxQPReadAtomic
        max_res_rd_atom = a.maxResourceReadAtomic
        max_qp_init_rd_atom = a.maxQPInitReadAtomic
        max_ah = a.maxAH
        max_srq = a.maxSRQ
        max_srq_wr = a.maxSRQWR
        max_srq_sge = a.maxSRQSGE
        max_pkeys = a.maxPkeys
        local_ca_ack_delay = a.localCAAckDelay
        phys_port_cnt = a.physicalPortCount
    }
}

extension ibv_port_attr {
    mutating func fill(from a: PortAttributes) {
        self = ibv_port_attr()
        state = ibv_port_state(rawValue: numericCast(a.state.rawValue))
        max_mtu = ibv_mtu(rawValue: numericCast(a.maxMTU.rawValue))
        active_mtu = ibv_mtu(rawValue: numericCast(a.activeMTU.rawValue))
        gid_tbl_len = a.gidTableLength
        port_cap_flags = a.portCapFlags
        max_msg_sz = a.maxMessageSize
        bad_pkey_cntr = a.badPkeyCounter
        qkey_viol_cntr = a.qkeyViolationCounter
        pkey_tbl_len = a.pkeyTableLength
        lid = a.lid
        sm_lid = a.smLID
        lmc = a.lmc
        max_vl_num = a.maxVLNum
        sm_sl = a.smSL
        subnet_timeout = a.subnetTimeout
        init_type_reply = a.initTypeReply
        active_width = a.activeWidth
        active_speed = a.activeSpeed
        phys_state = a.physicalState
        link_layer = a.linkLayer.rawValue
        flags = a.flags
        port_cap_flags2 = a.portCapFlags2
    }
}

extension GID {
    init(_ gid: ibv_gid) {
        var copy = gid
        self = withUnsafeBytes(of: &copy) { GID(bytes: Array($0))! }
    }

    func store(into gid: inout ibv_gid) {
        withUnsafeMutableBytes(of: &gid) { $0.copyBytes(from: bytes) }
    }
}

extension AHAttributes {
    init(_ ah: ibv_ah_attr) {
        let route = ah.is_global != 0
            ? GlobalRoute(destinationGID: GID(ah.grh.dgid), flowLabel: ah.grh.flow_label,
                          sourceGIDIndex: ah.grh.sgid_index,
                          hopLimit: ah.grh.hop_limit, trafficClass: ah.grh.traffic_class)
            : nil
        self.init(globalRoute: route, destinationLID: ah.dlid, serviceLevel: ah.sl, sourcePathBits: ah.src_path_bits,
                  staticRate: ah.static_rate, port: ah.port_num)
    }

    func store(into ah: inout ibv_ah_attr) {
        ah = ibv_ah_attr()
        if let route = globalRoute {
            ah.is_global = 1
            route.destinationGID.store(into: &ah.grh.dgid)
            ah.grh.flow_label = route.flowLabel
            ah.grh.sgid_index = route.sourceGIDIndex
            ah.grh.hop_limit = route.hopLimit
            ah.grh.traffic_class = route.trafficClass
        }
        ah.dlid = destinationLID
        ah.sl = serviceLevel
        ah.src_path_bits = sourcePathBits
        ah.static_rate = staticRate
        ah.port_num = port
    }
}

extension QPCapabilities {
    init(_ cap: ibv_qp_cap) {
        self.init(maxSendWR: cap.max_send_wr, maxRecvWR: cap.max_recv_wr, maxSendSGE: cap.max_send_sge,
                  maxRecvSGE: cap.max_recv_sge, maxInlineData: cap.max_inline_data)
    }

    var verbs: ibv_qp_cap {
        ibv_qp_cap(max_send_wr: maxSendWR, max_recv_wr: maxRecvWR, max_send_sge: maxSendSGE, max_recv_sge: maxRecvSGE,
                   max_inline_data: maxInlineData)
    }
}

extension QPAttributes {
    /// The fields `mask` selects, from the application's attributes; the others keep valid defaults
    /// (the protocol validates all of them).
    init(_ attr: ibv_qp_attr, mask: QPAttributeMask) throws(ClientError) {
        self.init()
        if mask.contains(.state) {
            guard let value = QPState(rawValue: numericCast(attr.qp_state.rawValue)) else {
                throw invalid("qp_state \(attr.qp_state.rawValue)")
            }
            state = value
        }
        if mask.contains(.pathMTU) {
            guard let value = MTU(rawValue: numericCast(attr.path_mtu.rawValue)) else {
                throw invalid("path_mtu \(attr.path_mtu.rawValue)")
            }
            pathMTU = value
        }
        if mask.contains(.qkey) { qkey = attr.qkey }
        if mask.contains(.rqPSN) { rqPSN = attr.rq_psn }
        if mask.contains(.sqPSN) { sqPSN = attr.sq_psn }
        if mask.contains(.destQPN) { destQPN = attr.dest_qp_num }
        if mask.contains(.accessFlags) { accessFlags = AccessFlags(rawValue: attr.qp_access_flags) }
        if mask.contains(.pkeyIndex) { pkeyIndex = attr.pkey_index }
        if mask.contains(.maxReadAtomic) { maxReadAtomic = attr.max_rd_atomic }
        if mask.contains(.maxDestReadAtomic) { maxDestReadAtomic = attr.max_dest_rd_atomic }
        if mask.contains(.minRNRTimer) { minRNRTimer = attr.min_rnr_timer }
        if mask.contains(.port) { port = attr.port_num }
        if mask.contains(.timeout) { timeout = attr.timeout }
        if mask.contains(.retryCount) { retryCount = attr.retry_cnt }
        if mask.contains(.rnrRetry) { rnrRetry = attr.rnr_retry }
        if mask.contains(.addressVector) { addressVector = AHAttributes(attr.ah_attr) }
    }

    func store(into attr: inout ibv_qp_attr) {
        attr.qp_state = ibv_qp_state(rawValue: numericCast(state.rawValue))
        attr.cur_qp_state = attr.qp_state
        attr.path_mtu = ibv_mtu(rawValue: numericCast(pathMTU.rawValue))
        attr.qkey = qkey
        attr.rq_psn = rqPSN
        attr.sq_psn = sqPSN
        attr.dest_qp_num = destQPN
        attr.qp_access_flags = accessFlags.rawValue
        attr.pkey_index = pkeyIndex
        attr.max_rd_atomic = maxReadAtomic
        attr.max_dest_rd_atomic = maxDestReadAtomic
        attr.min_rnr_timer = minRNRTimer
        attr.port_num = port
        attr.timeout = timeout
        attr.retry_cnt = retryCount
        attr.rnr_retry = rnrRetry
        addressVector.store(into: &attr.ah_attr)
    }
}
