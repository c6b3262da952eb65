/// Every message body, one case per kind. The kind is implied by the case.
public enum Message: Sendable, Equatable {
    /// Session opening.
    case hello(Hello)
    /// Session accepted.
    case helloReply(HelloReply)
    /// Any request failed.
    case error(ErrorReply)
    /// Ask for device attributes.
    case queryDevice
    /// Device attributes.
    case queryDeviceReply(DeviceAttributes)
    /// Ask for port attributes.
    case queryPort(QueryPortRequest)
    /// Port attributes.
    case queryPortReply(PortAttributes)
    /// Ask for a GID.
    case queryGID(QueryGIDRequest)
    /// The GID (virtual).
    case queryGIDReply(GID)
    /// Allocate a PD.
    case allocPD
    /// The new PD.
    case allocPDReply(PDHandle)
    /// Free a PD.
    case deallocPD(PDHandle)
    /// PD freed.
    case deallocPDReply
    /// Register memory (1 descriptor: the memfd).
    case regMR(RegMRRequest)
    /// The new MR.
    case regMRReply(RegMRReply)
    /// Deregister memory.
    case deregMR(MRHandle)
    /// MR deregistered.
    case deregMRReply
    /// Register memory over several memfds (`descriptorCount` descriptors).
    case regMRSegments(RegMRSegmentsRequest)
    /// The new MR.
    case regMRSegmentsReply(RegMRReply)
    /// Create a completion channel.
    case createCompChannel
    /// The new channel (1 descriptor: the event fd).
    case createCompChannelReply(CompChannelHandle)
    /// Destroy a completion channel.
    case destroyCompChannel(CompChannelHandle)
    /// Channel destroyed.
    case destroyCompChannelReply
    /// Create a CQ.
    case createCQ(CreateCQRequest)
    /// The new CQ.
    case createCQReply(CreateCQReply)
    /// Destroy a CQ.
    case destroyCQ(CQHandle)
    /// CQ destroyed.
    case destroyCQReply
    /// Arm a CQ.
    case reqNotifyCQ(ReqNotifyCQRequest)
    /// CQ armed.
    case reqNotifyCQReply
    /// Create a QP.
    case createQP(CreateQPRequest)
    /// The new QP.
    case createQPReply(CreateQPReply)
    /// Modify a QP.
    case modifyQP(ModifyQPRequest)
    /// QP modified.
    case modifyQPReply
    /// Query a QP.
    case queryQP(QueryQPRequest)
    /// QP attributes.
    case queryQPReply(QueryQPReply)
    /// Destroy a QP.
    case destroyQP(QPHandle)
    /// QP destroyed.
    case destroyQPReply
    /// Create an SRQ.
    case createSRQ(CreateSRQRequest)
    /// The new SRQ.
    case createSRQReply(CreateSRQReply)
    /// Modify an SRQ.
    case modifySRQ(ModifySRQRequest)
    /// SRQ modified.
    case modifySRQReply
    /// Destroy an SRQ.
    case destroySRQ(SRQHandle)
    /// SRQ destroyed.
    case destroySRQReply
    /// Create an address handle.
    case createAH(CreateAHRequest)
    /// The new AH.
    case createAHReply(AHHandle)
    /// Destroy an address handle.
    case destroyAH(AHHandle)
    /// AH destroyed.
    case destroyAHReply
    /// Post send work requests.
    case postSend(PostSendRequest)
    /// Send post outcome.
    case postSendReply(PostReply)
    /// Post receive work requests to a QP.
    case postRecv(PostRecvRequest<QPHandle>)
    /// Receive post outcome.
    case postRecvReply(PostReply)
    /// Post receive work requests to an SRQ.
    case postSRQRecv(PostRecvRequest<SRQHandle>)
    /// SRQ receive post outcome.
    case postSRQRecvReply(PostReply)
    /// Poll a CQ.
    case pollCQ(PollCQRequest)
    /// Completions.
    case pollCQReply(PollCQReply)
    /// map_ring (fast path).
    case mapRing(MapRingRequest)
    /// map_ring's reply.
    case mapRingReply(MapRingReply)
    /// Create an rdma_cm event channel.
    case cmCreateChannel
    /// The new event channel (1 descriptor: its event datagrams).
    case cmCreateChannelReply(CMChannelHandle)
    /// Any other rdma_cm call.
    case cmCall(CMRequest)
    /// The call's outcome.
    case cmCallReply(CMReply)

    /// The header kind of this message.
    public var kind: MessageKind {
        switch self {
        case .hello: .hello
        case .helloReply: .helloReply
        case .error: .error
        case .queryDevice: .queryDevice
        case .queryDeviceReply: .queryDeviceReply
        case .queryPort: .queryPort
        case .queryPortReply: .queryPortReply
        case .queryGID: .queryGID
        case .queryGIDReply: .queryGIDReply
        case .allocPD: .allocPD
        case .allocPDReply: .allocPDReply
        case .deallocPD: .deallocPD
        case .deallocPDReply: .deallocPDReply
        case .regMR: .regMR
        case .regMRReply: .regMRReply
        case .deregMR: .deregMR
        case .deregMRReply: .deregMRReply
        case .regMRSegments: .regMRSegments
        case .regMRSegmentsReply: .regMRSegmentsReply
        case .createCompChannel: .createCompChannel
        case .createCompChannelReply: .createCompChannelReply
        case .destroyCompChannel: .destroyCompChannel
        case .destroyCompChannelReply: .destroyCompChannelReply
        case .createCQ: .createCQ
        case .createCQReply: .createCQReply
        case .destroyCQ: .destroyCQ
        case .destroyCQReply: .destroyCQReply
        case .reqNotifyCQ: .reqNotifyCQ
        case .reqNotifyCQReply: .reqNotifyCQReply
        case .createQP: .createQP
        case .createQPReply: .createQPReply
        case .modifyQP: .modifyQP
        case .modifyQPReply: .modifyQPReply
        case .queryQP: .queryQP
        case .queryQPReply: .queryQPReply
        case .destroyQP: .destroyQP
        case .destroyQPReply: .destroyQPReply
        case .createSRQ: .createSRQ
        case .createSRQReply: .createSRQReply
        case .modifySRQ: .modifySRQ
        case .modifySRQReply: .modifySRQReply
        case .destroySRQ: .destroySRQ
        case .destroySRQReply: .destroySRQReply
        case .createAH: .createAH
        case .createAHReply: .createAHReply
        case .destroyAH: .destroyAH
        case .destroyAHReply: .destroyAHReply
        case .postSend: .postSend
        case .postSendReply: .postSendReply
        case .postRecv: .postRecv
        case .postRecvReply: .postRecvReply
        case .postSRQRecv: .postSRQRecv
        case .postSRQRecvReply: .postSRQRecvReply
        case .pollCQ: .pollCQ
        case .pollCQReply: .pollCQReply
        case .mapRing: .mapRing
        case .mapRingReply: .mapRingReply
        case .cmCreateChannel: .cmCreateChannel
        case .cmCreateChannelReply: .cmCreateChannelReply
        case .cmCall: .cmCall
        case .cmCallReply: .cmCallReply
        }
    }

    /// Descriptors that travel with this message (SCM_RIGHTS): the kind's fixed count, or the request's own.
    public var descriptorCount: UInt8 {
        if case .regMRSegments(let r) = self { return r.descriptorCount }
        return kind.descriptorCounts.lowerBound
    }

    /// Appends the body (no header).
    public func encodeBody(to w: inout WireWriter) throws(WireError) {
        switch self {
        case .hello(let m): try m.encode(to: &w)
        case .helloReply(let m): try m.encode(to: &w)
        case .error(let m): try m.encode(to: &w)
        case .queryDeviceReply(let m): try m.encode(to: &w)
        case .queryPort(let m): try m.encode(to: &w)
        case .queryPortReply(let m): try m.encode(to: &w)
        case .queryGID(let m): try m.encode(to: &w)
        case .queryGIDReply(let m): try m.encode(to: &w)
        case .allocPDReply(let h), .deallocPD(let h): try w.handle(h, "pd")
        case .regMR(let m): try m.encode(to: &w)
        case .regMRReply(let m), .regMRSegmentsReply(let m): try m.encode(to: &w)
        case .deregMR(let h): try w.handle(h, "mr")
        case .regMRSegments(let m): try m.encode(to: &w)
        case .createCompChannelReply(let h), .destroyCompChannel(let h): try w.handle(h, "channel")
        case .createCQ(let m): try m.encode(to: &w)
        case .createCQReply(let m): try m.encode(to: &w)
        case .destroyCQ(let h): try w.handle(h, "cq")
        case .reqNotifyCQ(let m): try m.encode(to: &w)
        case .createQP(let m): try m.encode(to: &w)
        case .createQPReply(let m): try m.encode(to: &w)
        case .modifyQP(let m): try m.encode(to: &w)
        case .queryQP(let m): try m.encode(to: &w)
        case .queryQPReply(let m): try m.encode(to: &w)
        case .destroyQP(let h): try w.handle(h, "qp")
        case .createSRQ(let m): try m.encode(to: &w)
        case .createSRQReply(let m): try m.encode(to: &w)
        case .modifySRQ(let m): try m.encode(to: &w)
        case .destroySRQ(let h): try w.handle(h, "srq")
        case .createAH(let m): try m.encode(to: &w)
        case .createAHReply(let h), .destroyAH(let h): try w.handle(h, "ah")
        case .postSend(let m): try m.encode(to: &w)
        case .postRecv(let m): try m.encode(to: &w)
        case .postSRQRecv(let m): try m.encode(to: &w)
        case .postSendReply(let m), .postRecvReply(let m), .postSRQRecvReply(let m): try m.encode(to: &w)
        case .pollCQ(let m): try m.encode(to: &w)
        case .pollCQReply(let m): try m.encode(to: &w)
        case .mapRing(let m): try m.encode(to: &w)
        case .mapRingReply(let m): try m.encode(to: &w)
        case .cmCreateChannelReply(let h): try w.handle(h, "cm.channel")
        case .cmCall(let m): try m.encode(to: &w)
        case .cmCallReply(let m): try m.encode(to: &w)
        case .cmCreateChannel: break
        case .queryDevice, .allocPD, .deallocPDReply, .deregMRReply, .createCompChannel, .destroyCompChannelReply,
             .destroyCQReply, .reqNotifyCQReply, .modifyQPReply, .destroyQPReply, .modifySRQReply, .destroySRQReply,
             .destroyAHReply:
            break
        }
    }

    /// Reads the body of a message of `kind`; the caller checks that the body was consumed.
    public static func decodeBody(kind: MessageKind, from r: inout WireReader) throws(WireError) -> Message {
        switch kind {
        case .hello: .hello(try Hello(from: &r))
        case .helloReply: .helloReply(try HelloReply(from: &r))
        case .error: .error(try ErrorReply(from: &r))
        case .queryDevice: .queryDevice
        case .queryDeviceReply: .queryDeviceReply(try DeviceAttributes(from: &r))
        case .queryPort: .queryPort(try QueryPortRequest(from: &r))
        case .queryPortReply: .queryPortReply(try PortAttributes(from: &r))
        case .queryGID: .queryGID(try QueryGIDRequest(from: &r))
        case .queryGIDReply: .queryGIDReply(try GID(from: &r))
        case .allocPD: .allocPD
        case .allocPDReply: .allocPDReply(try r.handle(PDHandle.self, "pd"))
        case .deallocPD: .deallocPD(try r.handle(PDHandle.self, "pd"))
        case .deallocPDReply: .deallocPDReply
        case .regMR: .regMR(try RegMRRequest(from: &r))
        case .regMRReply: .regMRReply(try RegMRReply(from: &r))
        case .deregMR: .deregMR(try r.handle(MRHandle.self, "mr"))
        case .deregMRReply: .deregMRReply
        case .regMRSegments: .regMRSegments(try RegMRSegmentsRequest(from: &r))
        case .regMRSegmentsReply: .regMRSegmentsReply(try RegMRReply(from: &r))
        case .createCompChannel: .createCompChannel
        case .createCompChannelReply: .createCompChannelReply(try r.handle(CompChannelHandle.self, "channel"))
        case .destroyCompChannel: .destroyCompChannel(try r.handle(CompChannelHandle.self, "channel"))
        case .destroyCompChannelReply: .destroyCompChannelReply
        case .createCQ: .createCQ(try CreateCQRequest(from: &r))
        case .createCQReply: .createCQReply(try CreateCQReply(from: &r))
        case .destroyCQ: .destroyCQ(try r.handle(CQHandle.self, "cq"))
        case .destroyCQReply: .destroyCQReply
        case .reqNotifyCQ: .reqNotifyCQ(try ReqNotifyCQRequest(from: &r))
        case .reqNotifyCQReply: .reqNotifyCQReply
        case .createQP: .createQP(try CreateQPRequest(from: &r))
        case .createQPReply: .createQPReply(try CreateQPReply(from: &r))
        case .modifyQP: .modifyQP(try ModifyQPRequest(from: &r))
        case .modifyQPReply: .modifyQPReply
        case .queryQP: .queryQP(try QueryQPRequest(from: &r))
        case .queryQPReply: .queryQPReply(try QueryQPReply(from: &r))
        case .destroyQP: .destroyQP(try r.handle(QPHandle.self, "qp"))
        case .destroyQPReply: .destroyQPReply
        case .createSRQ: .createSRQ(try CreateSRQRequest(from: &r))
        case .createSRQReply: .createSRQReply(try CreateSRQReply(from: &r))
        case .modifySRQ: .modifySRQ(try ModifySRQRequest(from: &r))
        case .modifySRQReply: .modifySRQReply
        case .destroySRQ: .destroySRQ(try r.handle(SRQHandle.self, "srq"))
        case .destroySRQReply: .destroySRQReply
        case .createAH: .createAH(try CreateAHRequest(from: &r))
        case .createAHReply: .createAHReply(try r.handle(AHHandle.self, "ah"))
        case .destroyAH: .destroyAH(try r.handle(AHHandle.self, "ah"))
        case .destroyAHReply: .destroyAHReply
        case .postSend: .postSend(try PostSendRequest(from: &r))
        case .postSendReply: .postSendReply(try PostReply(from: &r))
        case .postRecv: .postRecv(try PostRecvRequest<QPHandle>(from: &r))
        case .postRecvReply: .postRecvReply(try PostReply(from: &r))
        case .postSRQRecv: .postSRQRecv(try PostRecvRequest<SRQHandle>(from: &r))
        case .postSRQRecvReply: .postSRQRecvReply(try PostReply(from: &r))
        case .pollCQ: .pollCQ(try PollCQRequest(from: &r))
        case .pollCQReply: .pollCQReply(try PollCQReply(from: &r))
        case .mapRing: .mapRing(try MapRingRequest(from: &r))
        case .mapRingReply: .mapRingReply(try MapRingReply(from: &r))
        case .cmCreateChannel: .cmCreateChannel
        case .cmCreateChannelReply: .cmCreateChannelReply(try r.handle(CMChannelHandle.self, "cm.channel"))
        case .cmCall: .cmCall(try CMRequest(from: &r))
        case .cmCallReply: .cmCallReply(try CMReply(from: &r))
        }
    }
}
