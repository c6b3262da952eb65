// Bit values equal libibverbs' constants of the same name; bits outside `supported` are decode errors.

/// Memory region / QP access rights (`enum ibv_access_flags`).
public struct AccessFlags: OptionSet, Sendable, Hashable {
    /// The raw bit mask, as in verbs.
    public var rawValue: UInt32
    /// Wraps a raw bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `IBV_ACCESS_LOCAL_WRITE`.
    public static let localWrite = AccessFlags(rawValue: 1 << 0)
    /// `IBV_ACCESS_REMOTE_WRITE`.
    public static let remoteWrite = AccessFlags(rawValue: 1 << 1)
    /// `IBV_ACCESS_REMOTE_READ`.
    public static let remoteRead = AccessFlags(rawValue: 1 << 2)
    /// `IBV_ACCESS_REMOTE_ATOMIC`.
    public static let remoteAtomic = AccessFlags(rawValue: 1 << 3)
    /// `IBV_ACCESS_RELAXED_ORDERING` (`IBV_ACCESS_OPTIONAL_FIRST`, `1 << 20`): a hint the router may drop.
    public static let relaxedOrdering = AccessFlags(rawValue: 1 << 20)
    /// Every bit the protocol accepts.
    public static let supported: AccessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic, .relaxedOrdering]
}

/// Send work request flags (`enum ibv_send_flags`).
public struct SendFlags: OptionSet, Sendable, Hashable {
    /// The raw bit mask, as in verbs.
    public var rawValue: UInt32
    /// Wraps a raw bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `IBV_SEND_FENCE`.
    public static let fence = SendFlags(rawValue: 1 << 0)
    /// `IBV_SEND_SIGNALED`.
    public static let signaled = SendFlags(rawValue: 1 << 1)
    /// `IBV_SEND_SOLICITED`.
    public static let solicited = SendFlags(rawValue: 1 << 2)
    /// `IBV_SEND_INLINE`: the payload travels in the message (`SendWorkRequest.inlineData`).
    public static let inline = SendFlags(rawValue: 1 << 3)
    /// Every bit the protocol accepts.
    public static let supported: SendFlags = [.fence, .signaled, .solicited, .inline]
}

/// Work completion flags (`enum ibv_wc_flags`).
public struct WCFlags: OptionSet, Sendable, Hashable {
    /// The raw bit mask, as in verbs.
    public var rawValue: UInt32
    /// Wraps a raw bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `IBV_WC_GRH`: the first 40 bytes of the receive buffer hold a GRH.
    public static let grh = WCFlags(rawValue: 1 << 0)
    /// `IBV_WC_WITH_IMM`: `immData` is valid.
    public static let withImmediate = WCFlags(rawValue: 1 << 1)
    /// `IBV_WC_IP_CSUM_OK`.
    public static let ipChecksumOK = WCFlags(rawValue: 1 << 2)
    /// `IBV_WC_WITH_INV`.
    public static let withInvalidate = WCFlags(rawValue: 1 << 3)
    /// Every bit the protocol accepts.
    public static let supported: WCFlags = [.grh, .withImmediate, .ipChecksumOK, .withInvalidate]
}

/// Which `QPAttributes` fields a modify/query applies to (`enum ibv_qp_attr_mask`).
public struct QPAttributeMask: OptionSet, Sendable, Hashable {
    /// The raw bit mask, as in verbs.
    public var rawValue: UInt32
    /// Wraps a raw bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `IBV_QP_STATE`.
    public static let state = QPAttributeMask(rawValue: 1 << 0)
    /// `IBV_QP_ACCESS_FLAGS`.
    public static let accessFlags = QPAttributeMask(rawValue: 1 << 3)
    /// `IBV_QP_PKEY_INDEX`.
    public static let pkeyIndex = QPAttributeMask(rawValue: 1 << 4)
    /// `IBV_QP_PORT`.
    public static let port = QPAttributeMask(rawValue: 1 << 5)
    /// `IBV_QP_QKEY`.
    public static let qkey = QPAttributeMask(rawValue: 1 << 6)
    /// `IBV_QP_AV`: the address vector (`ahAttributes`).
    public static let addressVector = QPAttributeMask(rawValue: 1 << 7)
    /// `IBV_QP_PATH_MTU`.
    public static let pathMTU = QPAttributeMask(rawValue: 1 << 8)
    /// `IBV_QP_TIMEOUT`.
    public static let timeout = QPAttributeMask(rawValue: 1 << 9)
    /// `IBV_QP_RETRY_CNT`.
    public static let retryCount = QPAttributeMask(rawValue: 1 << 10)
    /// `IBV_QP_RNR_RETRY`.
    public static let rnrRetry = QPAttributeMask(rawValue: 1 << 11)
    /// `IBV_QP_RQ_PSN`.
    public static let rqPSN = QPAttributeMask(rawValue: 1 << 12)
    /// `IBV_QP_MAX_QP_RD_ATOMIC`.
    public static let maxReadAtomic = QPAttributeMask(rawValue: 1 << 13)
    /// `IBV_QP_MIN_RNR_TIMER`.
    public static let minRNRTimer = QPAttributeMask(rawValue: 1 << 15)
    /// `IBV_QP_SQ_PSN`.
    public static let sqPSN = QPAttributeMask(rawValue: 1 << 16)
    /// `IBV_QP_MAX_DEST_RD_ATOMIC`.
    public static let maxDestReadAtomic = QPAttributeMask(rawValue: 1 << 17)
    /// `IBV_QP_DEST_QPN`.
    public static let destQPN = QPAttributeMask(rawValue: 1 << 20)
    /// Every bit the protocol accepts (alternate paths, path migration, resizing and rate limits are not).
    public static let supported: QPAttributeMask = [
        .state, .accessFlags, .pkeyIndex, .port, .qkey, .addressVector, .pathMTU, .timeout, .retryCount,
        .rnrRetry, .rqPSN, .maxReadAtomic, .minRNRTimer, .sqPSN, .maxDestReadAtomic, .destQPN,
    ]
}

/// Which SRQ attributes a modify applies to (`enum ibv_srq_attr_mask`).
public struct SRQAttributeMask: OptionSet, Sendable, Hashable {
    /// The raw bit mask, as in verbs.
    public var rawValue: UInt32
    /// Wraps a raw bit mask.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `IBV_SRQ_MAX_WR`: resize.
    public static let maxWR = SRQAttributeMask(rawValue: 1 << 0)
    /// `IBV_SRQ_LIMIT`: arm the limit event.
    public static let limit = SRQAttributeMask(rawValue: 1 << 1)
    /// Every bit the protocol accepts.
    public static let supported: SRQAttributeMask = [.maxWR, .limit]
}

/// Optional protocol features offered in a hello and granted in its reply.
///
/// Unknown bits are accepted in a hello (a newer client may offer more); a router grants only bits it
/// knows, so a reply with unknown bits is a decode error.
public struct Capabilities: OptionSet, Sendable, Hashable {
    /// The raw bit mask.
    public var rawValue: UInt64
    /// Wraps a raw bit mask.
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Reserved for the shared-memory data path (per-QP/CQ rings); no version-1 router grants it.
    public static let sharedMemoryRings = Capabilities(rawValue: 1 << 0)
    /// reg_mr over several memfds (`regMRSegments`): registrations that partly overlap earlier ones reuse their pages.
    public static let memorySegments = Capabilities(rawValue: 1 << 1)
    /// Every bit this codec knows.
    public static let known: Capabilities = [.sharedMemoryRings, .memorySegments]
}

extension WireReader {
    /// Reads an option set whose bits must lie within `supported`.
    public mutating func options<O: OptionSet>(_: O.Type, supported: O, _ field: String) throws(WireError) -> O
    where O.RawValue: FixedWidthInteger & UnsignedInteger {
        O(rawValue: try bits(O.RawValue.self, allowed: supported.rawValue, field))
    }
}

extension WireWriter {
    /// Appends an option set whose bits must lie within `supported`.
    public mutating func options<O: OptionSet>(_ v: O, supported: O, _ field: String) throws(WireError)
    where O.RawValue: FixedWidthInteger & UnsignedInteger {
        try bits(v.rawValue, allowed: supported.rawValue, field)
    }
}
