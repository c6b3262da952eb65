import FFProtocol
import FFRouterAPI
import FFSystem

/// Every verbs object one client session owns, by the handles the client was given. Handles are numbered
/// per session, so a client can only ever name its own objects: any other number is EBADF. Destroying an
/// object that others still use is EBUSY, as with real verbs (the backend objects would otherwise keep the
/// parent alive silently).
final class ObjectTable {
    struct MREntry { let mr: any BackendMR; let pd: UInt32; let pinnedBytes: UInt64 }
    struct CQEntry { let cq: any BackendCQ; let channel: UInt32?; let entries: UInt64 }
    struct QPEntry {
        let qp: any BackendQP; let pd: UInt32; let sendCQ: UInt32; let recvCQ: UInt32; let srq: UInt32?; let workRequests: UInt64
        /// The Q_Key last set (UD), which query_qp reports (udaddy answers with its own QP's).
        var qkey: UInt32 = 0
    }
    struct SRQEntry { let srq: any BackendSRQ; let pd: UInt32; let workRequests: UInt64 }
    struct AHEntry { let ah: any BackendAH; let pd: UInt32 }

    /// Router descriptors one completion channel holds: the channel's own and the router's end of the event socket.
    static let descriptorsPerChannel = 2

    private var nextHandle: UInt32 = 1
    var pds: [UInt32: any BackendPD] = [:]
    var mrs: [UInt32: MREntry] = [:]
    var channels: [UInt32: CompletionForwarder] = [:]
    var cqs: [UInt32: CQEntry] = [:]
    var qps: [UInt32: QPEntry] = [:]
    var srqs: [UInt32: SRQEntry] = [:]
    var ahs: [UInt32: AHEntry] = [:]

    /// A fresh handle, never reused within the session (0 is never a handle: the wire uses it for "none").
    func allocate() -> UInt32 {
        if nextHandle == 0 { nextHandle = 1 }
        defer { nextHandle &+= 1 }
        return nextHandle
    }

    /// Objects by kind, for status and metrics.
    var counts: ObjectCounts {
        ObjectCounts(pd: pds.count, mr: mrs.count, compChannel: channels.count, cq: cqs.count, qp: qps.count, srq: srqs.count, ah: ahs.count)
    }

    /// What the session holds, for its limits.
    var usage: SessionUsage {
        SessionUsage(descriptors: channels.count * Self.descriptorsPerChannel,
                     pinnedBytes: mrs.values.reduce(0) { $0 &+ $1.pinnedBytes },
                     workRequests: qps.values.reduce(0) { $0 &+ $1.workRequests } &+ srqs.values.reduce(0) { $0 &+ $1.workRequests },
                     cqEntries: cqs.values.reduce(0) { $0 &+ $1.entries })
    }

    /// Why `pd` cannot be deallocated yet, if it cannot.
    func usersOfPD(_ pd: UInt32) -> String? {
        let mr = mrs.values.filter { $0.pd == pd }.count, qp = qps.values.filter { $0.pd == pd }.count
        let srq = srqs.values.filter { $0.pd == pd }.count, ah = ahs.values.filter { $0.pd == pd }.count
        return mr + qp + srq + ah == 0 ? nil : "PD \(pd) still has \(mr) MR, \(qp) QP, \(srq) SRQ, \(ah) AH"
    }

    /// Why `cq` cannot be destroyed yet, if it cannot.
    func usersOfCQ(_ cq: UInt32) -> String? {
        let n = qps.values.filter { $0.sendCQ == cq || $0.recvCQ == cq }.count
        return n == 0 ? nil : "CQ \(cq) is used by \(n) QP"
    }

    /// Why `srq` cannot be destroyed yet, if it cannot.
    func usersOfSRQ(_ srq: UInt32) -> String? {
        let n = qps.values.filter { $0.srq == srq }.count
        return n == 0 ? nil : "SRQ \(srq) is used by \(n) QP"
    }

    /// Why `channel` cannot be destroyed yet, if it cannot.
    func usersOfChannel(_ channel: UInt32) -> String? {
        let n = cqs.values.filter { $0.channel == channel }.count
        return n == 0 ? nil : "completion channel \(channel) is used by \(n) CQ"
    }

    /// Destroys everything in dependency order: QPs, then AHs and SRQs, then MRs, CQs, channels, PDs.
    func removeAll() {
        qps.removeAll()
        ahs.removeAll()
        srqs.removeAll()
        mrs.removeAll()
        cqs.removeAll()
        for forwarder in channels.values { forwarder.stop() }
        channels.removeAll()
        pds.removeAll()
    }
}

