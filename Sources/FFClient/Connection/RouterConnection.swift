import FFProtocol
import FFSystem
import Synchronization

/// Why a call to the router failed.
public enum ClientError: Error, Equatable, CustomStringConvertible {
    /// The router refused the request; `reply.errno` is what the verbs call returns.
    case router(ErrorReply)
    /// The socket failed (the router is gone, or did not answer in time).
    case transport(SystemError)
    /// The router sent something this client cannot accept (a decode error, a reply of the wrong kind).
    case protocolViolation(String)

    /// The errno a verbs call reports for this error.
    public var errno: Int32 {
        switch self {
        case .router(let reply): reply.errno
        case .transport(let error): error.errno
        case .protocolViolation: Errno.protocolError
        }
    }

    /// A one-line explanation.
    public var description: String {
        switch self {
        case .router(let reply): "router refused: \(reply.reason) (errno \(reply.errno))"
        case .transport(let error): "router connection: \(error)"
        case .protocolViolation(let what): "protocol violation: \(what)"
        }
    }
}

/// One client session with a router over its pod socket. Calls are synchronous, as the verbs API they
/// serve is, and one is in flight at a time: the router answers requests in order. Request ids grow with
/// every call, so the late reply to a call that timed out (an id below the current one) is recognised and
/// dropped by the next call instead of being taken for its answer.
public final class RouterConnection: Sendable {
    private let socket: SeqPacketSocket
    private let nextRequestID = Mutex<UInt64>(1)
    private let timeoutMilliseconds: Int32
    /// What the router said in its hello reply: version, session id, this pod's vip and virtual GID.
    public let session: HelloReply

    /// Connects to the router socket at `path` and says hello as `name`, offering `capabilities` (the router grants
    /// what it serves: `session.capabilities`).
    public init(path: String, name: String, capabilities: Capabilities = [],
                timeoutMilliseconds: Int32 = 30_000) throws(ClientError) {
        do {
            socket = try SeqPacketSocket.connect(path: path)
        } catch {
            throw .transport(error)
        }
        self.timeoutMilliseconds = timeoutMilliseconds
        let hello = Hello(minVersion: ProtocolVersion.supported.lowerBound,
                          maxVersion: ProtocolVersion.supported.upperBound,
                          capabilities: capabilities,
                          clientName: String(name.prefix(WireLimits.maxClientNameLength / 4)))
        let (reply, _) = try Self.exchange(socket: socket, requestID: 0, message: Message(hello), descriptors: [],
                                           timeout: timeoutMilliseconds)
        guard let answer = reply.reply(to: Hello.self) else {
            throw .protocolViolation("expected a hello reply, got \(reply.kind)")
        }
        guard ProtocolVersion.supported.contains(answer.version) else {
            throw .protocolViolation("router chose version \(answer.version), outside \(ProtocolVersion.supported)")
        }
        session = answer
    }

    /// Closes the connection; the router then destroys every object of this session.
    public func close() { socket.close() }

    /// The socket's descriptor, for a forked child to close its inherited copy without touching the
    /// session (libffclient's fork handler); -1 once closed.
    public var descriptor: Int32 { socket.descriptor }

    /// Sends `request` (with `descriptors`) and returns the body of the router's reply and the descriptors it
    /// carried: as many as `R.replyDescriptors` says. An error reply is thrown as `ClientError.router`; a reply of
    /// another kind, or with another number of descriptors, as `ClientError.protocolViolation`.
    public func call<R: WireRequest>(_ request: R, descriptors: [Int32] = []) throws(ClientError)
        -> (R.Reply, [OwnedDescriptor]) {
        let (reply, received) = try call(Message(request), descriptors: descriptors)
        guard let body = reply.reply(to: R.self) else {
            throw .protocolViolation("unexpected \(reply.kind) for \(R.kind)")
        }
        guard received.count == Int(R.replyDescriptors) else {
            throw .protocolViolation("\(reply.kind) carried \(received.count) descriptors, expected "
                                   + "\(R.replyDescriptors)")
        }
        return (body, received)
    }

    /// Sends any message and returns the router's reply as it came (an error reply is thrown as
    /// `ClientError.router`): for tools and tests that send what a typed call cannot, such as a reply kind.
    public func call(_ message: Message, descriptors: [Int32] = []) throws(ClientError)
        -> (Message, [OwnedDescriptor]) {
        // The id is taken under the same lock as the exchange, so ids go out in increasing order and
        // every reply with a lower id belongs to a call that is already over.
        try nextRequestID.withLock { next throws(ClientError) in
            let id = next
            next += 1
            return try Self.exchange(socket: socket, requestID: id, message: message, descriptors: descriptors,
                                     timeout: timeoutMilliseconds)
        }
    }

    private static func exchange(socket: SeqPacketSocket, requestID: UInt64, message: Message, descriptors: [Int32],
                                 timeout: Int32) throws(ClientError) -> (Message, [OwnedDescriptor]) {
        let bytes: [UInt8]
        do {
            bytes = try Frame(requestID: requestID, message: message).encode()
        } catch {
            throw .router(ErrorReply(errno: Errno.invalidArgument, reason: "request not encodable: \(error)"))
        }
        do {
            try socket.send(bytes, descriptors: descriptors)
        } catch {
            throw .transport(error)
        }
        let deadline = ContinuousClock.now + .milliseconds(timeout)
        while true {
            let datagram: Datagram?
            do {
                datagram = try socket.receive(timeoutMilliseconds: remainingMilliseconds(until: deadline))
            } catch {
                throw .transport(error)
            }
            guard let datagram else {
                throw .transport(SystemError(operation: "recvmsg", errno: 104,
                                             detail: "the router closed the connection"))
            }
            let frame: Frame
            do {
                frame = try Frame.decode(datagram.bytes)
            } catch {
                throw .protocolViolation("undecodable reply: \(error)")
            }
            // A late answer to a call that timed out: drop it (its descriptors close with it) and read on
            // within what is left of this call's time.
            if frame.requestID < requestID { continue }
            guard frame.requestID == requestID else {
                throw .protocolViolation("reply to request \(frame.requestID), expected \(requestID)")
            }
            if let reply = frame.message.errorReply { throw .router(reply) }
            return (frame.message, datagram.descriptors)
        }
    }

    /// Milliseconds left until `deadline`, 0 once it has passed (the receive then only takes what is waiting).
    private static func remainingMilliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        // Rounded up, so a call never gives up before its full time.
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
