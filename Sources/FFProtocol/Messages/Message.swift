/// One message body of any kind, as the codec reads it off the wire: a request, the reply to one, or an error.
///
/// Code that knows what it sent or serves works with the typed values (`request(_:)`, `reply(to:)`); this type
/// is what a frame carries between the socket and that code.
public struct Message: Sendable, Equatable, CustomStringConvertible {
    /// The header kind.
    public let kind: MessageKind
    /// The typed body (a `WireRequest`, its `Reply`, or an `ErrorReply`).
    public let body: any WireCodable
    /// Descriptors that travel with this message (SCM_RIGHTS).
    public let descriptorCount: UInt8

    /// A request.
    public init<R: WireRequest>(_ request: R) {
        kind = R.kind
        body = request
        descriptorCount = request.descriptorCount
    }

    /// The successful reply to a request of type `R`.
    public static func reply<R: WireRequest>(to _: R.Type, _ body: R.Reply) -> Message {
        Message(kind: R.replyKind, body: body, descriptorCount: R.replyDescriptors)
    }

    /// The error reply to any request.
    public static func error(_ reply: ErrorReply) -> Message { Message(kind: .error, body: reply, descriptorCount: 0) }

    private init(kind: MessageKind, body: any WireCodable, descriptorCount: UInt8) {
        self.kind = kind
        self.body = body
        self.descriptorCount = descriptorCount
    }

    /// The request, if this is one of type `R`.
    public func request<R: WireRequest>(_: R.Type) -> R? { kind == R.kind ? body as? R : nil }

    /// The reply body, if this is the successful reply to a request of type `R`.
    public func reply<R: WireRequest>(to _: R.Type) -> R.Reply? { kind == R.replyKind ? body as? R.Reply : nil }

    /// The error, if this is an error reply.
    public var errorReply: ErrorReply? { body as? ErrorReply }

    /// Appends the body (no header).
    public func encodeBody(to w: inout WireWriter) throws(WireError) { try body.encode(to: &w) }

    /// Reads the body of a message of `kind`; the caller checks that the body was consumed.
    public static func decodeBody(kind: MessageKind, from r: inout WireReader) throws(WireError) -> Message {
        guard let entry = MessageRegistry.entry(kind.rawValue) else {
            throw WireError(.unknownKind(kind.rawValue), field: "header.kind", offset: 6)
        }
        return try entry.decode(&r)
    }

    /// Same kind and equal bodies.
    public static func == (lhs: Message, rhs: Message) -> Bool {
        lhs.kind == rhs.kind && lhs.descriptorCount == rhs.descriptorCount && lhs.body.isEqual(to: rhs.body)
    }

    /// The kind and the body, for logs and test failures.
    public var description: String { "\(kind)(\(body))" }
}

extension WireCodable {
    /// Whether `other` is a value of this type equal to this one.
    func isEqual(to other: any WireCodable) -> Bool {
        guard let other = other as? Self else { return false }
        return self == other
    }
}
