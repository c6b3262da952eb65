/// The `kind` field of the header: which message the body holds.
///
/// A request's kind is declared once, by its type (`WireRequest.kind`); its reply's kind is the same number with
/// bit 15 set; `error` (0xFFFF) answers any request. `MessageRegistry` knows every kind. 0x0070...0x007F belong to
/// the shared-memory fast path: 0x0070 is map_ring, the rest are unassigned.
public struct MessageKind: RawRepresentable, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// The header's `u16`.
    public let rawValue: UInt16
    /// The name logs and error reasons print (the request's name, with `Reply` for its reply).
    public let name: String

    /// Declares a kind; only request types (and `error`) do this, each for its own number.
    public init(_ rawValue: UInt16, _ name: String) {
        self.rawValue = rawValue
        self.name = name
    }

    /// The registered kind with this number, or nil for a number no message has.
    public init?(rawValue: UInt16) {
        guard let kind = MessageRegistry.entry(rawValue)?.kind else { return nil }
        self = kind
    }

    /// Kinds are equal when their numbers are (the name only describes).
    public static func == (lhs: MessageKind, rhs: MessageKind) -> Bool { lhs.rawValue == rhs.rawValue }

    /// Hashes the number.
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    /// The name.
    public var description: String { name }

    /// `ErrorReply`, answering any request.
    public static let error = MessageKind(0xFFFF, "error")
    /// The hello handshake's request.
    public static var hello: MessageKind { Hello.kind }

    /// Kinds of the shared-memory fast path (0x0070 map_ring is assigned; the others are unknown).
    public static let reservedForSharedMemory: ClosedRange<UInt16> = 0x0070...0x007F

    /// Every registered kind: each request, its reply, and `error`.
    public static var allCases: [MessageKind] { MessageRegistry.kinds }

    /// Whether this kind is sent by the client.
    public var isRequest: Bool { rawValue & 0x8000 == 0 }

    /// The successful reply's kind for a request (its number with bit 15 set); nil for replies.
    public var replyKind: MessageKind? { isRequest ? MessageKind(rawValue: rawValue | 0x8000) ?? declaredReply : nil }

    /// The reply's kind as its request declares it: the number with bit 15 set, the name with `Reply`. Built once, at
    /// registration; afterwards the registered kind is looked up, so a reply does not build its name again.
    var declaredReply: MessageKind { MessageKind(rawValue | 0x8000, name + "Reply") }

    /// How many descriptors may travel with this kind (SCM_RIGHTS); the header's `fdCount` must lie in the range,
    /// and equal `Message.descriptorCount` once the body is read. Unregistered kinds carry none.
    public var descriptorCounts: ClosedRange<UInt8> { MessageRegistry.entry(rawValue)?.descriptors ?? 0...0 }

    /// Whether the body layout is frozen across all versions (hello and error), so a peer can read it
    /// before versions are agreed.
    public var isVersionIndependent: Bool { self == .hello || self == .error }
}
