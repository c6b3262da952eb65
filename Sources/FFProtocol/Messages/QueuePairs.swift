/// create_qp: PD, CQs, optional SRQ, transport type and capacities (`struct ibv_qp_init_attr`).
public struct CreateQPRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CreateQPReply
    /// `createQP`.
    public static let kind = MessageKind(0x0030, "createQP")
    /// Protection domain.
    public var pd: PDHandle
    /// CQ for send completions.
    public var sendCQ: CQHandle
    /// CQ for receive completions.
    public var recvCQ: CQHandle
    /// Shared receive queue; nil for a private receive queue.
    public var srq: SRQHandle?
    /// Transport type.
    public var type: QPType
    /// Every send request generates a completion (`sq_sig_all`).
    public var signalAll: Bool
    /// Requested capacities.
    public var capabilities: QPCapabilities

    /// Creates the request.
    public init(pd: PDHandle, sendCQ: CQHandle, recvCQ: CQHandle, srq: SRQHandle? = nil, type: QPType, signalAll: Bool,
                capabilities: QPCapabilities) {
        self.pd = pd
        self.sendCQ = sendCQ
        self.recvCQ = recvCQ
        self.srq = srq
        self.type = type
        self.signalAll = signalAll
        self.capabilities = capabilities
    }

    /// Appends 44 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(pd, "createQP.pd")
        try w.handle(sendCQ, "createQP.sendCQ")
        try w.handle(recvCQ, "createQP.recvCQ")
        try w.optionalHandle(srq, "createQP.srq")
        w.u32(type.rawValue)
        w.bool(signalAll)
        w.reserved(3)
        try capabilities.encode(to: &w)
    }

    /// Reads 44 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        pd = try r.handle(PDHandle.self, "createQP.pd")
        sendCQ = try r.handle(CQHandle.self, "createQP.sendCQ")
        recvCQ = try r.handle(CQHandle.self, "createQP.recvCQ")
        srq = try r.optionalHandle(SRQHandle.self, "createQP.srq")
        type = try r.enumeration(QPType.self, "createQP.type")
        signalAll = try r.bool("createQP.signalAll")
        try r.reserved(3, "createQP.reserved")
        capabilities = try QPCapabilities(from: &r)
    }
}

/// create_qp's reply: handle, QP number and actual capacities.
public struct CreateQPReply: WireCodable {
    /// The new QP.
    public var qp: QPHandle
    /// The QP number peers address (24 bits), the real device's QPN.
    public var qpNum: UInt32
    /// Actual capacities.
    public var capabilities: QPCapabilities

    /// Creates the reply.
    public init(qp: QPHandle, qpNum: UInt32, capabilities: QPCapabilities) {
        self.qp = qp
        self.qpNum = qpNum
        self.capabilities = capabilities
    }

    /// Appends 28 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(qp, "createQPReply.qp")
        try w.bounded(qpNum, 0...0xFFFFFF, "createQPReply.qpNum")
        try capabilities.encode(to: &w)
    }

    /// Reads 28 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        qp = try r.handle(QPHandle.self, "createQPReply.qp")
        qpNum = try r.bounded(UInt32.self, 0...0xFFFFFF, "createQPReply.qpNum")
        capabilities = try QPCapabilities(from: &r)
    }
}

/// modify_qp: apply the masked attributes (the router translates a virtual destination GID to the physical one).
public struct ModifyQPRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `modifyQP`.
    public static let kind = MessageKind(0x0031, "modifyQP")
    /// The QP.
    public var qp: QPHandle
    /// Which attributes to apply; only `QPAttributeMask.supported` bits.
    public var mask: QPAttributeMask
    /// The attributes.
    public var attributes: QPAttributes

    /// Creates the request.
    public init(qp: QPHandle, mask: QPAttributeMask, attributes: QPAttributes) {
        self.qp = qp
        self.mask = mask
        self.attributes = attributes
    }

    /// Appends 80 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(qp, "modifyQP.qp")
        try w.options(mask, supported: .supported, "modifyQP.mask")
        try attributes.encode(to: &w)
    }

    /// Reads 80 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        qp = try r.handle(QPHandle.self, "modifyQP.qp")
        mask = try r.options(QPAttributeMask.self, supported: .supported, "modifyQP.mask")
        attributes = try QPAttributes(from: &r)
    }
}

/// query_qp: which attributes the client wants.
public struct QueryQPRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = QueryQPReply
    /// `queryQP`.
    public static let kind = MessageKind(0x0032, "queryQP")
    /// The QP.
    public var qp: QPHandle
    /// Requested attributes.
    public var mask: QPAttributeMask

    /// Creates the request.
    public init(qp: QPHandle, mask: QPAttributeMask) {
        self.qp = qp
        self.mask = mask
    }

    /// Appends 8 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(qp, "queryQP.qp")
        try w.options(mask, supported: .supported, "queryQP.mask")
    }

    /// Reads 8 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        qp = try r.handle(QPHandle.self, "queryQP.qp")
        mask = try r.options(QPAttributeMask.self, supported: .supported, "queryQP.mask")
    }
}

/// query_qp's reply: current attributes (destination GID virtual again), type and capacities.
public struct QueryQPReply: WireCodable {
    /// The attributes; fields outside the request's mask may be zero.
    public var attributes: QPAttributes
    /// Transport type.
    public var type: QPType
    /// Current capacities.
    public var capabilities: QPCapabilities

    /// Creates the reply.
    public init(attributes: QPAttributes, type: QPType, capabilities: QPCapabilities) {
        self.attributes = attributes
        self.type = type
        self.capabilities = capabilities
    }

    /// Appends 96 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try attributes.encode(to: &w)
        w.u32(type.rawValue)
        try capabilities.encode(to: &w)
    }

    /// Reads 96 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        attributes = try QPAttributes(from: &r)
        type = try r.enumeration(QPType.self, "queryQPReply.type")
        capabilities = try QPCapabilities(from: &r)
    }
}

/// create_srq: PD and size (`struct ibv_srq_init_attr`).
public struct CreateSRQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = CreateSRQReply
    /// `createSRQ`.
    public static let kind = MessageKind(0x0040, "createSRQ")
    /// Protection domain.
    public var pd: PDHandle
    /// Most outstanding receive requests, at least 1.
    public var maxWR: UInt32
    /// Most SGEs per request.
    public var maxSGE: UInt32
    /// Limit event threshold (0 = not armed).
    public var limit: UInt32

    /// Creates the request.
    public init(pd: PDHandle, maxWR: UInt32, maxSGE: UInt32, limit: UInt32 = 0) {
        self.pd = pd
        self.maxWR = maxWR
        self.maxSGE = maxSGE
        self.limit = limit
    }

    /// Appends 16 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(pd, "createSRQ.pd")
        try w.bounded(maxWR, 1...UInt32.max, "createSRQ.maxWR")
        try w.bounded(maxSGE, 0...UInt32(WireLimits.maxSGEPerWR), "createSRQ.maxSGE")
        w.u32(limit)
    }

    /// Reads 16 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        pd = try r.handle(PDHandle.self, "createSRQ.pd")
        maxWR = try r.bounded(UInt32.self, 1...UInt32.max, "createSRQ.maxWR")
        maxSGE = try r.bounded(UInt32.self, 0...UInt32(WireLimits.maxSGEPerWR), "createSRQ.maxSGE")
        limit = try r.u32("createSRQ.limit")
    }
}

/// create_srq's reply: handle and actual size.
public struct CreateSRQReply: WireCodable {
    /// The new SRQ.
    public var srq: SRQHandle
    /// Actual most outstanding requests.
    public var maxWR: UInt32
    /// Actual most SGEs per request.
    public var maxSGE: UInt32

    /// Creates the reply.
    public init(srq: SRQHandle, maxWR: UInt32, maxSGE: UInt32) {
        self.srq = srq
        self.maxWR = maxWR
        self.maxSGE = maxSGE
    }

    /// Appends 12 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(srq, "createSRQReply.srq")
        w.u32(maxWR)
        try w.bounded(maxSGE, 0...UInt32(WireLimits.maxSGEPerWR), "createSRQReply.maxSGE")
    }

    /// Reads 12 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        srq = try r.handle(SRQHandle.self, "createSRQReply.srq")
        maxWR = try r.u32("createSRQReply.maxWR")
        maxSGE = try r.bounded(UInt32.self, 0...UInt32(WireLimits.maxSGEPerWR), "createSRQReply.maxSGE")
    }
}

/// modify_srq: resize and/or arm the limit.
public struct ModifySRQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `modifySRQ`.
    public static let kind = MessageKind(0x0041, "modifySRQ")
    /// The SRQ.
    public var srq: SRQHandle
    /// Which fields apply.
    public var mask: SRQAttributeMask
    /// New size (with `.maxWR`).
    public var maxWR: UInt32
    /// New limit (with `.limit`).
    public var limit: UInt32

    /// Creates the request.
    public init(srq: SRQHandle, mask: SRQAttributeMask, maxWR: UInt32 = 0, limit: UInt32 = 0) {
        self.srq = srq
        self.mask = mask
        self.maxWR = maxWR
        self.limit = limit
    }

    /// Appends 16 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(srq, "modifySRQ.srq")
        try w.options(mask, supported: .supported, "modifySRQ.mask")
        w.u32(maxWR)
        w.u32(limit)
    }

    /// Reads 16 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        srq = try r.handle(SRQHandle.self, "modifySRQ.srq")
        mask = try r.options(SRQAttributeMask.self, supported: .supported, "modifySRQ.mask")
        maxWR = try r.u32("modifySRQ.maxWR")
        limit = try r.u32("modifySRQ.limit")
    }
}

/// create_ah: an address handle for UD sends; the destination GID is virtual.
public struct CreateAHRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = AHHandle
    /// `createAH`.
    public static let kind = MessageKind(0x0050, "createAH")
    /// Protection domain.
    public var pd: PDHandle
    /// Address vector.
    public var attributes: AHAttributes

    /// Creates the request.
    public init(pd: PDHandle, attributes: AHAttributes) {
        self.pd = pd
        self.attributes = attributes
    }

    /// Appends 36 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.handle(pd, "createAH.pd")
        try attributes.encode(to: &w)
    }

    /// Reads 36 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        pd = try r.handle(PDHandle.self, "createAH.pd")
        attributes = try AHAttributes(from: &r)
    }
}

/// destroy_qp: a `QPHandle`.
public struct DestroyQPRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `destroyQP`.
    public static let kind = MessageKind(0x0033, "destroyQP")
    /// The queue pair.
    public var qp: QPHandle
    /// Creates the request.
    public init(qp: QPHandle) { self.qp = qp }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(qp, "qp") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { qp = try r.handle(QPHandle.self, "qp") }
}

/// destroy_srq: an `SRQHandle`.
public struct DestroySRQRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `destroySRQ`.
    public static let kind = MessageKind(0x0042, "destroySRQ")
    /// The shared receive queue.
    public var srq: SRQHandle
    /// Creates the request.
    public init(srq: SRQHandle) { self.srq = srq }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(srq, "srq") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { srq = try r.handle(SRQHandle.self, "srq") }
}

/// destroy_ah: an `AHHandle`.
public struct DestroyAHRequest: WireRequest {
    /// The successful reply's body.
    public typealias Reply = EmptyBody
    /// `destroyAH`.
    public static let kind = MessageKind(0x0051, "destroyAH")
    /// The address handle.
    public var ah: AHHandle
    /// Creates the request.
    public init(ah: AHHandle) { self.ah = ah }
    /// Appends the handle (4 bytes).
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(ah, "ah") }
    /// Reads the handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { ah = try r.handle(AHHandle.self, "ah") }
}
