import FFSystem
import Foundation

/// A refused admin request: the errno that says what kind of failure, and a sentence for the operator.
public struct AdminFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// EINVAL (bad argument), EEXIST, ENOENT, EACCES (not root), ESHUTDOWN (router stopping), EBUSY, EPROTO.
    public var errno: Int32
    /// What went wrong.
    public var message: String

    /// A failure with `errno` and `message`.
    public init(errno: Int32, _ message: String) {
        self.errno = errno
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// One admin request, a JSON object on one line (docs/router.md, "Admin API").
public struct AdminRequest: Sendable, Codable, Equatable {
    /// What to do.
    public enum Command: String, Sendable, Codable {
        /// The router's status.
        case status
        /// Add a pod (`pod`).
        case podAdd = "pod-add"
        /// Remove a pod (`id`: uid, namespace/name or a --pod name).
        case podRemove = "pod-remove"
        /// The served pods.
        case podList = "pod-list"
    }

    /// The command.
    public var command: Command
    /// The pod to add.
    public var pod: PodSpec?
    /// The pod to remove.
    public var id: String?

    /// A request.
    public init(command: Command, pod: PodSpec? = nil, id: String? = nil) {
        self.command = command
        self.pod = pod
        self.id = id
    }
}

/// The answer to an admin request, a JSON object read to end of file: `error` (with `errno`) when refused,
/// else the fields of the command.
public struct AdminResponse: Sendable, Codable, Equatable {
    /// Why the request was refused.
    public var error: String?
    /// The errno of the refusal.
    public var errno: Int32?
    /// `status`: the router's state.
    public var status: RouterStatus?
    /// `pod-list`: the served pods.
    public var pods: [PodStatus]?
    /// `pod-add`, `pod-remove`: the pod.
    public var pod: PodStatus?
    /// `pod-add`: false when the same pod was already served.
    public var created: Bool?
    /// `pod-remove`: sessions closed (objects destroyed).
    public var closedSessions: Int?
    /// `pod-remove`: sessions still closing when the router stopped waiting (a verbs call in progress).
    public var sessionsStillClosing: Int?

    /// An empty response.
    public init() {}

    /// A refusal.
    public init(_ failure: AdminFailure) {
        error = failure.message
        errno = failure.errno
    }
}

/// The client side of the admin socket (what `ffctl router …` uses): one connection per request, the
/// request as a line, the response read to end of file, so a status of any size arrives whole.
public struct AdminClient: Sendable {
    /// The admin socket.
    public var path: String
    /// Bound on the whole exchange.
    public var timeoutMilliseconds: Int

    /// A client of the router behind `path`.
    public init(path: String, timeoutMilliseconds: Int = 30_000) {
        self.path = path
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// The router's status.
    public func status() throws -> RouterStatus {
        try require(exchange(AdminRequest(command: .status)).status, "status")
    }

    /// The served pods.
    public func listPods() throws -> [PodStatus] {
        try require(exchange(AdminRequest(command: .podList)).pods, "pods")
    }

    /// Adds `pod`; `created` is false when it was already served.
    public func addPod(_ pod: PodSpec) throws -> (pod: PodStatus, created: Bool) {
        let response = try exchange(AdminRequest(command: .podAdd, pod: pod))
        return (try require(response.pod, "pod"), response.created ?? true)
    }

    /// Removes the pod `id` (uid, namespace/name or a --pod name) and closes its sessions.
    public func removePod(_ id: String) throws -> (pod: PodStatus, closedSessions: Int, stillClosing: Int) {
        let response = try exchange(AdminRequest(command: .podRemove, id: id))
        return (try require(response.pod, "pod"), response.closedSessions ?? 0, response.sessionsStillClosing ?? 0)
    }

    /// Sends `request` and returns the response; a refusal is thrown as `AdminFailure`.
    public func exchange(_ request: AdminRequest) throws -> AdminResponse {
        let deadline = Poll.nowMilliseconds() + Int64(timeoutMilliseconds)
        let socket = try StreamSocket.connect(path: path)
        defer { socket.close() }
        do {
            try socket.write(Array(try JSONEncoder().encode(request)) + [UInt8(ascii: "\n")], deadline: deadline)
        } catch let error as SystemError where error.errno == EPIPE || error.errno == ECONNRESET {
            // The router answered (a refusal) and closed before reading the request: its answer is still there.
        }
        socket.shutdownWrite()
        let bytes = try socket.readToEnd(maxBytes: 256 << 20, deadline: deadline)
        guard !bytes.isEmpty else {
            throw SystemError(operation: "recv", errno: ECONNRESET,
                              detail: "\(path): the router closed the admin connection without an answer")
        }
        let response: AdminResponse
        do {
            response = try JSONDecoder().decode(AdminResponse.self, from: Data(bytes))
        } catch {
            throw AdminFailure(errno: EPROTO,
                               "\(path): the router's answer (\(bytes.count) bytes) is not an admin response: \(error)")
        }
        if let message = response.error { throw AdminFailure(errno: response.errno ?? EIO, message) }
        return response
    }

    private func require<T>(_ value: T?, _ field: String) throws -> T {
        guard let value else { throw AdminFailure(errno: EPROTO, "\(path): the router's answer has no \(field)") }
        return value
    }
}
