/// A request the client sends and the router answers: its type is the one definition of a verb on the wire.
///
/// The type declares its kind (the header's number and name), the body of its successful reply, and how many
/// descriptors travel with the request and with the reply. `MessageRegistry.requests` lists every request type
/// once; the codec, the router's handler table and the client's `call` all work from that. docs/protocol.md
/// ("Adding a verb") says what a new verb touches.
public protocol WireRequest: WireCodable {
    /// The body of the successful reply (kind `kind.replyKind`).
    associatedtype Reply: WireCodable
    /// This request's kind; its reply's is the same number with bit 15 set.
    static var kind: MessageKind { get }
    /// Descriptors that may travel with the request (SCM_RIGHTS); 0...0 unless the request carries memory.
    static var descriptors: ClosedRange<UInt8> { get }
    /// Descriptors that travel with the successful reply: 0, or 1 for replies that hand the client a file.
    static var replyDescriptors: UInt8 { get }
    /// Descriptors this request carries: within `descriptors`.
    var descriptorCount: UInt8 { get }
}

extension WireRequest {
    /// No descriptors.
    public static var descriptors: ClosedRange<UInt8> { 0...0 }
    /// No descriptors.
    public static var replyDescriptors: UInt8 { 0 }
    /// The fixed count, for requests whose count does not vary.
    public var descriptorCount: UInt8 { Self.descriptors.lowerBound }
}

/// The empty body: requests that name nothing (alloc_pd) and replies that say only "done" (dealloc_pd).
public struct EmptyBody: WireCodable {
    /// The empty body.
    public init() {}
    /// Appends nothing.
    public func encode(to w: inout WireWriter) throws(WireError) {}
    /// Reads nothing.
    public init(from r: inout WireReader) throws(WireError) {}
}

/// A handle that is a whole message body by itself (the reply to alloc_pd is a `PDHandle`): a valid `u32`.
public protocol WireHandle: ObjectHandle, WireCodable {
    /// The field name decode errors name.
    static var wireField: String { get }
}

extension WireHandle {
    /// Appends the handle (4 bytes); an invalid (0) handle is refused.
    public func encode(to w: inout WireWriter) throws(WireError) { try w.handle(self, Self.wireField) }
    /// Reads a valid handle (4 bytes).
    public init(from r: inout WireReader) throws(WireError) { self = try r.handle(Self.self, Self.wireField) }
}

extension PDHandle: WireHandle {
    /// `pd`.
    public static var wireField: String { "pd" }
}

extension CompChannelHandle: WireHandle {
    /// `channel`.
    public static var wireField: String { "channel" }
}

extension AHHandle: WireHandle {
    /// `ah`.
    public static var wireField: String { "ah" }
}

extension CMChannelHandle: WireHandle {
    /// `cm.channel`.
    public static var wireField: String { "cm.channel" }
}
