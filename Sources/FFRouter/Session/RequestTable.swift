import FFProtocol
import FFSystem

/// A handler's answer when the reply carries more than its body: descriptors for the client, and what to release
/// once they are sent.
struct Answer<Body: WireCodable> {
    /// The reply's body.
    var body: Body
    /// Descriptors sent with the reply (the request type's `replyDescriptors` of them).
    var descriptors: [Int32] = []
    /// Runs once the reply is sent (or could not be).
    var afterSend: (() -> Void)?
}

/// The router's handlers, one per request type, keyed by kind: each decoded request goes to the handler registered
/// for its type, and its reply is built from the type's own `Reply`, so a handler cannot answer with the wrong
/// kind. A request kind with no handler is refused here, whatever it is; `MessageRegistry` says which kinds exist.
struct RequestTable<Context: AnyObject>: Sendable {
    /// Runs one request.
    typealias Handler = @Sendable (Context, Message, [OwnedDescriptor]) throws -> Reply

    private var handlers: [UInt16: Handler] = [:]

    /// Registers the handler of `R`; its result is the reply's body.
    mutating func on<R: WireRequest>(_: R.Type,
                                     _ body: @escaping @Sendable (Context, R, [OwnedDescriptor]) throws -> R.Reply) {
        on(R.self, answer: { context, request, descriptors in Answer(body: try body(context, request, descriptors)) })
    }

    /// Registers the handler of `R` whose reply carries descriptors.
    mutating func on<R: WireRequest>(_: R.Type,
                                     answer body: @escaping @Sendable (Context, R, [OwnedDescriptor]) throws -> Answer<R.Reply>) {
        precondition(handlers[R.kind.rawValue] == nil, "\(R.kind) has two handlers")
        handlers[R.kind.rawValue] = { context, message, descriptors in
            guard let request = message.request(R.self) else {
                throw ErrorReply(errno: Errno.protocolError, reason: "\(message.kind) is not a \(R.kind)")
            }
            let answer = try body(context, request, descriptors)
            return Reply(message: .reply(to: R.self, answer.body), descriptors: answer.descriptors, afterSend: answer.afterSend)
        }
    }

    /// Runs `message`'s handler; a reply, or a request no handler serves, is refused with EPROTO / EOPNOTSUPP.
    func run(_ context: Context, _ message: Message, descriptors: [OwnedDescriptor]) throws -> Reply {
        guard message.kind.isRequest else {
            throw ErrorReply(errno: Errno.protocolError, reason: "\(message.kind) is a reply, not a request")
        }
        guard let handler = handlers[message.kind.rawValue] else {
            throw ErrorReply(errno: Errno.notSupported, reason: "\(message.kind) is not served by this router")
        }
        return try handler(context, message, descriptors)
    }

    /// The kinds that have a handler.
    var kinds: Set<MessageKind> { Set(handlers.keys.compactMap { MessageKind(rawValue: $0) }) }
}
