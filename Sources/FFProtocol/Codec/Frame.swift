/// The fixed 24-byte header that starts every datagram.
///
/// Layout (little-endian): magic u32 @0, version u16 @4, kind u16 @6, flags u16 @8, fdCount u8 @10,
/// reserved u8 @11, bodyLength u32 @12, requestID u64 @16. Frozen for every protocol version.
public struct WireHeader: Sendable, Equatable {
    /// Header size in bytes.
    public static let size = 24
    /// `"FFRP"` read as a little-endian `u32`.
    public static let magic: UInt32 = 0x5052_4646

    /// Protocol version the message is written in.
    public var version: UInt16
    /// Message kind.
    public var kind: MessageKind
    /// Descriptors sent with the datagram (SCM_RIGHTS).
    public var descriptorCount: UInt8
    /// Body length in bytes.
    public var bodyLength: UInt32
    /// Caller-chosen id, echoed in the reply.
    public var requestID: UInt64

    /// Creates a header.
    public init(version: UInt16, kind: MessageKind, descriptorCount: UInt8, bodyLength: UInt32, requestID: UInt64) {
        self.version = version
        self.kind = kind
        self.descriptorCount = descriptorCount
        self.bodyLength = bodyLength
        self.requestID = requestID
    }

    /// Decodes and validates the header of a whole datagram, including that the body length matches.
    ///
    /// A router uses this alone when the body is malformed, to echo `requestID` in its EPROTO reply.
    public static func decode(_ bytes: [UInt8],
        supported: ClosedRange<UInt16> = ProtocolVersion.supported) throws(WireError) -> WireHeader {
        guard bytes.count <= WireLimits.maxMessageSize else {
            throw WireError(.messageTooLarge(size: bytes.count), field: "header", offset: 0)
        }
        var r = WireReader(bytes)
        let magic = try r.u32("header.magic")
        guard magic == WireHeader.magic else { throw WireError(.badMagic(magic), field: "header.magic", offset: 0) }
        let version = try r.u16("header.version")
        let rawKind = try r.u16("header.kind")
        let flags = try r.u16("header.flags")
        let fdCount = try r.u8("header.fdCount")
        try r.reserved(1, "header.reserved")
        let bodyLength = try r.u32("header.bodyLength")
        let requestID = try r.u64("header.requestID")
        guard let kind = MessageKind(rawValue: rawKind) else {
            throw WireError(.unknownKind(rawKind), field: "header.kind", offset: 6)
        }
        guard version >= 1, kind.isVersionIndependent || supported.contains(version) else {
            throw WireError(.unsupportedVersion(version), field: "header.version", offset: 4)
        }
        guard flags == 0 else { throw WireError(.nonZeroReserved, field: "header.flags", offset: 8) }
        let counts = kind.descriptorCounts
        guard counts.contains(fdCount) else {
            let expected = fdCount < counts.lowerBound ? counts.lowerBound : counts.upperBound
            throw WireError(.wrongDescriptorCount(expected: expected, actual: fdCount), field: "header.fdCount",
                            offset: 10)
        }
        guard Int(bodyLength) == bytes.count - WireHeader.size else {
            throw WireError(.lengthMismatch(declared: bodyLength, actual: bytes.count - WireHeader.size),
                            field: "header.bodyLength", offset: 12)
        }
        return WireHeader(version: version, kind: kind, descriptorCount: fdCount, bodyLength: bodyLength,
                          requestID: requestID)
    }

    /// Appends the 24 header bytes.
    public func encode(to w: inout WireWriter) {
        w.u32(WireHeader.magic)
        w.u16(version)
        w.u16(kind.rawValue)
        w.u16(0)
        w.u8(descriptorCount)
        w.reserved(1)
        w.u32(bodyLength)
        w.u64(requestID)
    }
}

/// One datagram: header fields plus a typed body. This is the module's entry point.
///
/// ```swift
/// let bytes = try Frame(requestID: 7, message: Message(AllocPDRequest())).encode()  // send as one datagram
/// let frame = try Frame.decode(received)                              // throws WireError
/// // compare frame.descriptorCount with the number of SCM_RIGHTS descriptors received
/// ```
public struct Frame: Sendable, Equatable {
    /// Protocol version written in the header (the negotiated one; hello uses the client's max).
    public var version: UInt16
    /// Request id; a reply carries its request's id.
    public var requestID: UInt64
    /// The body.
    public var message: Message

    /// Creates a frame.
    public init(version: UInt16 = ProtocolVersion.current, requestID: UInt64, message: Message) {
        self.version = version
        self.requestID = requestID
        self.message = message
    }

    /// The header kind.
    public var kind: MessageKind { message.kind }

    /// Descriptors that must accompany this datagram (0 or 1; 1…64 for `regMRSegments`).
    public var descriptorCount: UInt8 { message.descriptorCount }

    /// Encodes header + body into one datagram; throws if a field or the size is out of bounds.
    public func encode() throws(WireError) -> [UInt8] {
        guard version >= 1 else { throw WireError(.unsupportedVersion(version), field: "header.version", offset: 4) }
        var body = WireWriter(capacity: 128)
        try message.encodeBody(to: &body)
        let size = WireHeader.size + body.bytes.count
        guard size <= WireLimits.maxMessageSize else {
            throw WireError(.messageTooLarge(size: size), field: "frame", offset: 0)
        }
        var w = WireWriter(capacity: size)
        WireHeader(version: version, kind: kind, descriptorCount: descriptorCount, bodyLength: UInt32(body.bytes.count),
                   requestID: requestID)
            .encode(to: &w)
        w.raw(body.bytes)
        return w.bytes
    }

    /// Decodes and validates one whole datagram; any defect is a `WireError`, never a crash.
    public static func decode(_ bytes: [UInt8],
                              supported: ClosedRange<UInt16> = ProtocolVersion.supported) throws(WireError) -> Frame {
        let header = try WireHeader.decode(bytes, supported: supported)
        var r = WireReader(bytes, start: WireHeader.size)
        let message = try Message.decodeBody(kind: header.kind, from: &r)
        try r.finish("\(header.kind)")
        guard message.descriptorCount == header.descriptorCount else {
            throw WireError(.wrongDescriptorCount(expected: message.descriptorCount, actual: header.descriptorCount),
                            field: "header.fdCount", offset: 10)
        }
        return Frame(version: header.version, requestID: header.requestID, message: message)
    }
}
