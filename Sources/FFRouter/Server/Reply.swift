import FFProtocol

/// A reply to send: the message and the descriptors that travel with it.
struct Reply {
    var message: Message
    var descriptors: [Int32] = []
    /// The request this answers; set by `Session.handle`.
    var requestID: UInt64 = 0
    /// Runs once the reply is sent (or could not be): releases what only had to live until then.
    var afterSend: (() -> Void)?
    /// The router closes the connection once this reply is sent (docs/protocol.md: after refusing a hello
    /// for a version mismatch).
    var closeAfterSend = false

    /// The datagram to send.
    func encode() throws -> [UInt8] { try Frame(requestID: requestID, message: message).encode() }
}
