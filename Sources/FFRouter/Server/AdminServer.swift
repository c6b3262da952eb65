import FFSystem
import Foundation
import Logging

/// The router's admin socket: a client sends `status` and gets the router's state as one JSON datagram.
/// `ffctl router status` is its client. Anything else is answered with an `{"error": …}` object.
public final class AdminServer: Sendable {
    private let path: String
    private let router: Router
    private let logger: Logger

    /// An admin socket at `path` for `router`.
    public init(path: String, router: Router, logger: Logger) {
        self.path = path
        self.router = router
        self.logger = logger
    }

    /// Serves until cancelled, then removes the socket file.
    public func run() async throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let listener = try SeqPacketSocket.listen(path: path, mode: 0o600)
        defer { listener.close(); unlink(path) }
        logger.info("admin socket ready", metadata: ["path": "\(path)"])
        while !Task.isCancelled {
            let connection: SeqPacketSocket
            do {
                connection = try await listener.nextConnection()
            } catch is CancellationError {
                return
            }
            // One request per connection, answered at once: no task per client needed.
            guard let request = try? connection.receive(timeoutMilliseconds: 2000) else { connection.close(); continue }
            let command = String(decoding: request.bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let reply = Self.answer(command, status: router.status)
            try? connection.send(reply)
            connection.close()
        }
    }

    static func answer(_ command: String, status: RouterStatus) -> [UInt8] {
        guard command == "status" else {
            return Array(#"{"error":"unknown admin command; the only command is status"}"#.utf8)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(status))) ?? Array(#"{"error":"status not encodable"}"#.utf8)
    }

    /// Asks the router behind `path` for its status (what `ffctl router status` does).
    public static func requestStatus(path: String) throws -> RouterStatus {
        let socket = try SeqPacketSocket.connect(path: path)
        defer { socket.close() }
        try socket.send(Array("status".utf8))
        guard let reply = try socket.receive(timeoutMilliseconds: 5000) else {
            throw SystemError(operation: "recvmsg", errno: ECONNRESET, detail: "\(path): the router closed the admin connection")
        }
        return try JSONDecoder().decode(RouterStatus.self, from: Data(reply.bytes))
    }
}
