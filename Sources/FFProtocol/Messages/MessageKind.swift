/// The `kind` field of the header: which message the body holds.
///
/// A reply's kind is its request's kind with bit 15 set; `error` (0xFFFF) answers any request.
/// 0x0070...0x007F belong to the shared-memory fast path: 0x0070 is map_ring, the rest are unassigned.
public enum MessageKind: UInt16, Sendable, CaseIterable {
    /// `Hello`.
    case hello = 0x0001
    /// query_device (empty body).
    case queryDevice = 0x0002
    /// `QueryPortRequest`.
    case queryPort = 0x0003
    /// `QueryGIDRequest`.
    case queryGID = 0x0004
    /// alloc_pd (empty body).
    case allocPD = 0x0010
    /// dealloc_pd (a `PDHandle`).
    case deallocPD = 0x0011
    /// `RegMRRequest` + 1 descriptor (the memfd).
    case regMR = 0x0012
    /// dereg_mr (an `MRHandle`).
    case deregMR = 0x0013
    /// `RegMRSegmentsRequest` + 1…64 descriptors (capability `memorySegments`).
    case regMRSegments = 0x0014
    /// create_comp_channel (empty body).
    case createCompChannel = 0x0020
    /// destroy_comp_channel (a `CompChannelHandle`).
    case destroyCompChannel = 0x0021
    /// `CreateCQRequest`.
    case createCQ = 0x0022
    /// destroy_cq (a `CQHandle`).
    case destroyCQ = 0x0023
    /// `ReqNotifyCQRequest`.
    case reqNotifyCQ = 0x0024
    /// `CreateQPRequest`.
    case createQP = 0x0030
    /// `ModifyQPRequest`.
    case modifyQP = 0x0031
    /// `QueryQPRequest`.
    case queryQP = 0x0032
    /// destroy_qp (a `QPHandle`).
    case destroyQP = 0x0033
    /// `CreateSRQRequest`.
    case createSRQ = 0x0040
    /// `ModifySRQRequest`.
    case modifySRQ = 0x0041
    /// destroy_srq (an `SRQHandle`).
    case destroySRQ = 0x0042
    /// `CreateAHRequest`.
    case createAH = 0x0050
    /// destroy_ah (an `AHHandle`).
    case destroyAH = 0x0051
    /// `PostSendRequest`.
    case postSend = 0x0060
    /// post_recv (`PostRecvRequest<QPHandle>`).
    case postRecv = 0x0061
    /// post_srq_recv (`PostRecvRequest<SRQHandle>`).
    case postSRQRecv = 0x0062
    /// `PollCQRequest`.
    case pollCQ = 0x0063
    /// `MapRingRequest` (shared-memory fast path; only in sessions granted `sharedMemoryRings`).
    case mapRing = 0x0070
    /// rdma_create_event_channel (empty body).
    case cmCreateChannel = 0x0090
    /// A `CMRequest` (every other rdma_cm call).
    case cmCall = 0x0091

    /// `HelloReply`.
    case helloReply = 0x8001
    /// `DeviceAttributes`.
    case queryDeviceReply = 0x8002
    /// `PortAttributes`.
    case queryPortReply = 0x8003
    /// A `GID`.
    case queryGIDReply = 0x8004
    /// A `PDHandle`.
    case allocPDReply = 0x8010
    /// Empty body.
    case deallocPDReply = 0x8011
    /// `RegMRReply`.
    case regMRReply = 0x8012
    /// Empty body.
    case deregMRReply = 0x8013
    /// `RegMRReply`.
    case regMRSegmentsReply = 0x8014
    /// A `CompChannelHandle` + 1 descriptor (the event fd).
    case createCompChannelReply = 0x8020
    /// Empty body.
    case destroyCompChannelReply = 0x8021
    /// `CreateCQReply`.
    case createCQReply = 0x8022
    /// Empty body.
    case destroyCQReply = 0x8023
    /// Empty body.
    case reqNotifyCQReply = 0x8024
    /// `CreateQPReply`.
    case createQPReply = 0x8030
    /// Empty body.
    case modifyQPReply = 0x8031
    /// `QueryQPReply`.
    case queryQPReply = 0x8032
    /// Empty body.
    case destroyQPReply = 0x8033
    /// `CreateSRQReply`.
    case createSRQReply = 0x8040
    /// Empty body.
    case modifySRQReply = 0x8041
    /// Empty body.
    case destroySRQReply = 0x8042
    /// An `AHHandle`.
    case createAHReply = 0x8050
    /// Empty body.
    case destroyAHReply = 0x8051
    /// `PostReply`.
    case postSendReply = 0x8060
    /// `PostReply`.
    case postRecvReply = 0x8061
    /// `PostReply`.
    case postSRQRecvReply = 0x8062
    /// `PollCQReply`.
    case pollCQReply = 0x8063
    /// `MapRingReply` + 1 descriptor (the ring memfd or the doorbell eventfd).
    case mapRingReply = 0x8070
    /// A `CMChannelHandle` + 1 descriptor (the event datagrams).
    case cmCreateChannelReply = 0x8090
    /// `CMReply`.
    case cmCallReply = 0x8091
    /// `ErrorReply`, answering any request.
    case error = 0xFFFF

    /// Kinds of the shared-memory fast path (0x0070 map_ring is assigned; the others are unknown).
    public static let reservedForSharedMemory: ClosedRange<UInt16> = 0x0070...0x007F

    /// Whether this kind is sent by the client.
    public var isRequest: Bool { rawValue & 0x8000 == 0 }

    /// The successful reply to this request; nil for replies.
    public var replyKind: MessageKind? {
        isRequest ? MessageKind(rawValue: rawValue | 0x8000) : nil
    }

    /// How many descriptors may travel with this kind (SCM_RIGHTS); the header's `fdCount` must lie in the range,
    /// and equal `Message.descriptorCount` once the body is read.
    public var descriptorCounts: ClosedRange<UInt8> {
        switch self {
        case .regMR, .createCompChannelReply, .cmCreateChannelReply, .mapRingReply: 1...1
        case .regMRSegments: 1...UInt8(WireLimits.maxMRSegments)
        default: 0...0
        }
    }

    /// Whether the body layout is frozen across all versions (hello and error), so a peer can read it
    /// before versions are agreed.
    public var isVersionIndependent: Bool { self == .hello || self == .error }
}
