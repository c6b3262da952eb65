import FFProtocol
import Verbs

/// Conversions between the wire types (FFProtocol) and the verbs wrapper (Verbs). Enum and flag values are
/// libibverbs' on both sides, so most conversions are casts; the address vector is where virtual becomes
/// physical.
enum Translate {
    static func access(_ flags: FFProtocol.AccessFlags) -> Verbs.AccessFlags { Verbs.AccessFlags(rawValue: flags.rawValue) }

    static func capabilities(_ c: FFProtocol.QPCapabilities) -> Verbs.QPCapabilities {
        Verbs.QPCapabilities(maxSendWorkRequests: c.maxSendWR, maxReceiveWorkRequests: c.maxRecvWR, maxSendSGE: c.maxSendSGE,
                             maxReceiveSGE: c.maxRecvSGE, maxInlineData: c.maxInlineData)
    }

    static func capabilities(_ c: Verbs.QPCapabilities) -> FFProtocol.QPCapabilities {
        FFProtocol.QPCapabilities(maxSendWR: c.maxSendWorkRequests, maxRecvWR: c.maxReceiveWorkRequests, maxSendSGE: c.maxSendSGE,
                                  maxRecvSGE: c.maxReceiveSGE, maxInlineData: c.maxInlineData)
    }

    static func sge(_ e: ScatterGatherEntry) -> ScatterGatherElement {
        ScatterGatherElement(address: e.address, length: e.length, lkey: e.lkey)
    }

    static func receive(_ r: FFProtocol.ReceiveWorkRequest) -> Verbs.ReceiveWorkRequest {
        Verbs.ReceiveWorkRequest(id: r.wrID, scatterGather: r.sgList.map(sge))
    }

    /// A send work request as the backend takes it, with its AH resolved. An inline payload is copied to `inline` (router
    /// memory with room for it, which the device reads at post time) and becomes the one SGE: the device never reads
    /// an inline SGE from the client's addresses.
    static func send(_ w: FFProtocol.SendWorkRequest, addressHandle: (any BackendAH)?, inline: UnsafeMutableRawPointer) -> BackendSendRequest {
        var sges = w.sgList.map(sge)
        if !w.inlineData.isEmpty {
            w.inlineData.withUnsafeBytes { inline.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            sges = [ScatterGatherElement(address: UInt64(UInt(bitPattern: inline)), length: UInt32(w.inlineData.count), lkey: 0)]
        }
        return BackendSendRequest(id: w.wrID, operation: operation(w), scatterGather: sges, flags: Verbs.SendFlags(rawValue: w.flags.rawValue),
                                  addressHandle: addressHandle, remoteQPN: w.remoteQPN, remoteQKey: w.remoteQKey)
    }

    /// The wire's immediate is the raw `__be32` bits; Verbs takes the value in host order.
    static func operation(_ r: FFProtocol.SendWorkRequest) -> SendOperation {
        operation(r.opcode, immData: r.immData, remoteAddress: r.remoteAddress, rkey: r.rkey, compareAdd: r.compareAdd, swap: r.swap)
    }

    /// The operation of a send with these wire fields (a decoded ring slot has them without the request value).
    static func operation(_ opcode: SendOpcode, immData: UInt32, remoteAddress: UInt64, rkey: UInt32, compareAdd: UInt64, swap: UInt64) -> SendOperation {
        let immediate = UInt32(bigEndian: immData)
        switch opcode {
        case .send: return .send
        case .sendWithImmediate: return .sendWithImmediate(immediate)
        case .rdmaWrite: return .rdmaWrite(remoteAddress: remoteAddress, rkey: rkey)
        case .rdmaWriteWithImmediate: return .rdmaWriteWithImmediate(remoteAddress: remoteAddress, rkey: rkey, immediate: immediate)
        case .rdmaRead: return .rdmaRead(remoteAddress: remoteAddress, rkey: rkey)
        case .atomicCompareAndSwap: return .compareAndSwap(remoteAddress: remoteAddress, rkey: rkey, compare: compareAdd, swap: swap)
        case .atomicFetchAndAdd: return .fetchAndAdd(remoteAddress: remoteAddress, rkey: rkey, add: compareAdd)
        }
    }

    /// A completion as the client sees it. ibv_poll_cq(3) leaves the opcode of a failed completion undefined;
    /// the wire accepts only known opcodes, so an unknown one is sent as IBV_WC_SEND.
    static func completion(_ wc: Verbs.WorkCompletion) -> FFProtocol.WorkCompletion {
        FFProtocol.WorkCompletion(
            wrID: wc.workRequestID,
            status: WCStatus(rawValue: wc.status.rawValue) ?? .general,
            opcode: WCOpcode(rawValue: wc.opcode.rawValue) ?? .send,
            vendorError: wc.vendorError, byteLength: wc.byteLength,
            immData: (wc.immediate ?? 0).bigEndian,
            qpNum: wc.qpNumber, sourceQP: wc.sourceQP,
            flags: WCFlags(rawValue: wc.flags).intersection(.supported),
            pkeyIndex: wc.pkeyIndex, sourceLID: wc.sourceLID, serviceLevel: wc.serviceLevel, dlidPathBits: wc.destinationLIDPathBits)
    }

    static func mtu(_ m: FFProtocol.MTU) -> Verbs.MTU { Verbs.MTU(rawValue: m.rawValue) ?? .mtu1024 }
}
