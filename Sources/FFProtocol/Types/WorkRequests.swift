/// One scatter/gather element (`struct ibv_sge`): an address in the app's own virtual address space.
public struct ScatterGatherEntry: WireCodable {
    /// Start address (inside a registered MR, app's virtual address = iova).
    public var address: UInt64
    /// Length in bytes.
    public var length: UInt32
    /// Local key of the MR.
    public var lkey: UInt32

    /// Creates an element.
    public init(address: UInt64, length: UInt32, lkey: UInt32) {
        self.address = address
        self.length = length
        self.lkey = lkey
    }

    /// Appends 16 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u64(address)
        w.u32(length)
        w.u32(lkey)
    }

    /// Reads 16 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        address = try r.u64("sge.address")
        length = try r.u32("sge.length")
        lkey = try r.u32("sge.lkey")
    }
}

/// A send work request (`struct ibv_send_wr`), the subset FreeFlow supports.
///
/// With `.inline` in `flags` the payload travels in `inlineData` (the client gathers the SGEs) and
/// `sgList` is empty; without it `inlineData` is empty.
public struct SendWorkRequest: WireCodable {
    /// Caller's cookie, returned in the completion.
    public var wrID: UInt64
    /// Operation.
    public var opcode: SendOpcode
    /// Send flags.
    public var flags: SendFlags
    /// Immediate data: the 32 bits of verbs' `__be32 imm_data`, copied verbatim.
    public var immData: UInt32
    /// RDMA/atomic target address (peer's virtual address).
    public var remoteAddress: UInt64
    /// RDMA/atomic target rkey.
    public var rkey: UInt32
    /// Atomic compare value (CMP_AND_SWP) or addend (FETCH_AND_ADD).
    public var compareAdd: UInt64
    /// Atomic swap value.
    public var swap: UInt64
    /// UD destination address handle; nil for connected QPs.
    public var addressHandle: AHHandle?
    /// UD destination QP number, 24 bits.
    public var remoteQPN: UInt32
    /// UD destination Q_Key.
    public var remoteQKey: UInt32
    /// Gather list (at most `WireLimits.maxSGEPerWR`).
    public var sgList: [ScatterGatherEntry]
    /// Inline payload (at most `WireLimits.maxInlineData` bytes), only with `.inline`.
    public var inlineData: [UInt8]

    /// Creates a send work request.
    public init(wrID: UInt64, opcode: SendOpcode, flags: SendFlags = [.signaled], immData: UInt32 = 0,
                remoteAddress: UInt64 = 0, rkey: UInt32 = 0, compareAdd: UInt64 = 0, swap: UInt64 = 0,
                addressHandle: AHHandle? = nil, remoteQPN: UInt32 = 0, remoteQKey: UInt32 = 0,
                sgList: [ScatterGatherEntry] = [], inlineData: [UInt8] = []) {
        self.wrID = wrID
        self.opcode = opcode
        self.flags = flags
        self.immData = immData
        self.remoteAddress = remoteAddress
        self.rkey = rkey
        self.compareAdd = compareAdd
        self.swap = swap
        self.addressHandle = addressHandle
        self.remoteQPN = remoteQPN
        self.remoteQKey = remoteQKey
        self.sgList = sgList
        self.inlineData = inlineData
    }

    /// Appends 64 fixed bytes, the SGEs, then the inline bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u64(wrID)
        w.u32(opcode.rawValue)
        try w.options(flags, supported: .supported, "sendWR.flags")
        w.u32(immData)
        w.u32(rkey)
        w.u64(remoteAddress)
        w.u64(compareAdd)
        w.u64(swap)
        try w.optionalHandle(addressHandle, "sendWR.addressHandle")
        try w.bounded(remoteQPN, 0...0xFFFFFF, "sendWR.remoteQPN")
        w.u32(remoteQKey)
        let inline = flags.contains(.inline)
        try w.count16(sgList.count, max: inline ? 0 : WireLimits.maxSGEPerWR, "sendWR.sgeCount")
        try w.count16(inlineData.count, max: inline ? WireLimits.maxInlineData : 0, "sendWR.inlineLength")
        for sge in sgList { try sge.encode(to: &w) }
        w.raw(inlineData)
    }

    /// Reads one send work request; the SGE/inline split must agree with the `.inline` flag.
    public init(from r: inout WireReader) throws(WireError) {
        wrID = try r.u64("sendWR.wrID")
        opcode = try r.enumeration(SendOpcode.self, "sendWR.opcode")
        flags = try r.options(SendFlags.self, supported: .supported, "sendWR.flags")
        immData = try r.u32("sendWR.immData")
        rkey = try r.u32("sendWR.rkey")
        remoteAddress = try r.u64("sendWR.remoteAddress")
        compareAdd = try r.u64("sendWR.compareAdd")
        swap = try r.u64("sendWR.swap")
        addressHandle = try r.optionalHandle(AHHandle.self, "sendWR.addressHandle")
        remoteQPN = try r.bounded(UInt32.self, 0...0xFFFFFF, "sendWR.remoteQPN")
        remoteQKey = try r.u32("sendWR.remoteQKey")
        let inline = flags.contains(.inline)
        let sgeCount = try r.count16(max: inline ? 0 : WireLimits.maxSGEPerWR, "sendWR.sgeCount")
        let inlineLength = try r.count16(max: inline ? WireLimits.maxInlineData : 0, "sendWR.inlineLength")
        var list: [ScatterGatherEntry] = []
        list.reserveCapacity(sgeCount)
        for _ in 0..<sgeCount { list.append(try ScatterGatherEntry(from: &r)) }
        sgList = list
        inlineData = try r.raw(inlineLength, "sendWR.inlineData")
    }
}

/// A receive work request (`struct ibv_recv_wr`).
public struct ReceiveWorkRequest: WireCodable {
    /// Caller's cookie, returned in the completion.
    public var wrID: UInt64
    /// Scatter list (at most `WireLimits.maxSGEPerWR`).
    public var sgList: [ScatterGatherEntry]

    /// Creates a receive work request.
    public init(wrID: UInt64, sgList: [ScatterGatherEntry]) {
        self.wrID = wrID
        self.sgList = sgList
    }

    /// Appends 16 fixed bytes, then the SGEs.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u64(wrID)
        try w.count16(sgList.count, max: WireLimits.maxSGEPerWR, "recvWR.sgeCount")
        w.reserved(6)
        for sge in sgList { try sge.encode(to: &w) }
    }

    /// Reads one receive work request.
    public init(from r: inout WireReader) throws(WireError) {
        wrID = try r.u64("recvWR.wrID")
        let n = try r.count16(max: WireLimits.maxSGEPerWR, "recvWR.sgeCount")
        try r.reserved(6, "recvWR.reserved")
        var list: [ScatterGatherEntry] = []
        list.reserveCapacity(n)
        for _ in 0..<n { list.append(try ScatterGatherEntry(from: &r)) }
        sgList = list
    }
}

/// A work completion (`struct ibv_wc`), every field.
public struct WorkCompletion: WireCodable {
    /// The completed request's cookie.
    public var wrID: UInt64
    /// Outcome.
    public var status: WCStatus
    /// Operation (see `WCOpcode` for failed completions).
    public var opcode: WCOpcode
    /// Vendor error syndrome.
    public var vendorError: UInt32
    /// Bytes transferred (receives).
    public var byteLength: UInt32
    /// Immediate data (verbatim `__be32`) or invalidated rkey, per `flags`.
    public var immData: UInt32
    /// Local QP number.
    public var qpNum: UInt32
    /// Source QP number (UD).
    public var sourceQP: UInt32
    /// Completion flags.
    public var flags: WCFlags
    /// P_Key index (GSI).
    public var pkeyIndex: UInt16
    /// Source LID.
    public var sourceLID: UInt16
    /// Service level.
    public var serviceLevel: UInt8
    /// Destination LID path bits.
    public var dlidPathBits: UInt8

    /// Creates a completion.
    public init(wrID: UInt64, status: WCStatus, opcode: WCOpcode, vendorError: UInt32 = 0, byteLength: UInt32 = 0,
                immData: UInt32 = 0, qpNum: UInt32 = 0, sourceQP: UInt32 = 0, flags: WCFlags = [],
                pkeyIndex: UInt16 = 0, sourceLID: UInt16 = 0, serviceLevel: UInt8 = 0, dlidPathBits: UInt8 = 0) {
        self.wrID = wrID
        self.status = status
        self.opcode = opcode
        self.vendorError = vendorError
        self.byteLength = byteLength
        self.immData = immData
        self.qpNum = qpNum
        self.sourceQP = sourceQP
        self.flags = flags
        self.pkeyIndex = pkeyIndex
        self.sourceLID = sourceLID
        self.serviceLevel = serviceLevel
        self.dlidPathBits = dlidPathBits
    }

    /// Appends 48 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        w.u64(wrID)
        w.u32(status.rawValue)
        w.u32(opcode.rawValue)
        w.u32(vendorError)
        w.u32(byteLength)
        w.u32(immData)
        w.u32(qpNum)
        w.u32(sourceQP)
        try w.options(flags, supported: .supported, "wc.flags")
        w.u16(pkeyIndex)
        w.u16(sourceLID)
        w.u8(serviceLevel)
        w.u8(dlidPathBits)
        w.reserved(2)
    }

    /// Reads 48 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        wrID = try r.u64("wc.wrID")
        status = try r.enumeration(WCStatus.self, "wc.status")
        opcode = try r.enumeration(WCOpcode.self, "wc.opcode")
        vendorError = try r.u32("wc.vendorError")
        byteLength = try r.u32("wc.byteLength")
        immData = try r.u32("wc.immData")
        qpNum = try r.u32("wc.qpNum")
        sourceQP = try r.u32("wc.sourceQP")
        flags = try r.options(WCFlags.self, supported: .supported, "wc.flags")
        pkeyIndex = try r.u16("wc.pkeyIndex")
        sourceLID = try r.u16("wc.sourceLID")
        serviceLevel = try r.u8("wc.serviceLevel")
        dlidPathBits = try r.u8("wc.dlidPathBits")
        try r.reserved(2, "wc.reserved")
    }
}
