/// A value with a fixed little-endian wire layout, validated field by field on decode and on encode.
public protocol WireCodable: Sendable, Equatable {
    /// Appends this value's layout; throws if a bound or range would make the decoder refuse it.
    func encode(to writer: inout WireWriter) throws(WireError)
    /// Reads and validates this value's layout.
    init(from reader: inout WireReader) throws(WireError)
}

/// The limits every encoder and decoder enforces; see docs/protocol.md, "Limits".
public enum WireLimits {
    /// Largest datagram, header included (one SOCK_SEQPACKET message).
    public static let maxMessageSize = 65_536
    /// Longest client name in a hello, in UTF-8 bytes.
    public static let maxClientNameLength = 64
    /// Longest error reason, in UTF-8 bytes.
    public static let maxReasonLength = 512
    /// Longest firmware version string (verbs' `fw_ver` is a 64-byte C string, NUL included).
    public static let maxFirmwareVersionLength = 63
    /// Most scatter/gather entries in one work request.
    public static let maxSGEPerWR = 32
    /// Most work requests in one post_send / post_recv / post_srq_recv.
    public static let maxWRsPerPost = 32
    /// Most inline payload bytes carried by one send work request.
    public static let maxInlineData = 512
    /// Most work completions one poll_cq may ask for or return.
    public static let maxWCsPerPoll = 256
    /// Most segments, and most descriptors, in one reg_mr over several memfds (`RegMRSegmentsRequest`).
    public static let maxMRSegments = 64
}
