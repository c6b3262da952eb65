import FFRouterAPI
import FFSystem
import Foundation
import Logging
import Synchronization

/// The router's admin socket (docs/router.md, "Admin API"): a Unix stream socket, mode 0600, that serves
/// only root and the router's own user (checked with SO_PEERCRED as well, in case the mode is loosened).
/// Each connection carries one JSON request line and gets one JSON response, then end of file. `ffctl
/// router status` and `ffctl router pod …` are its clients; the device plugin calls `pod-add`/`pod-remove`.
///
/// It runs on its own threads and never on the router's: an acceptor thread, and one short-lived thread per
/// request (at most `maxConcurrentRequests`), each bounded by deadlines, so a stalled admin client holds only
/// its own thread for a few seconds.
public final class AdminServer: Sendable {
    private let path: String
    private let router: Router
    private let logger: Logger
    private let active = Mutex<Int>(0)
    /// Requests served at once; more are answered EBUSY.
    static let maxConcurrentRequests = 8
    /// How long a client has to send its request line.
    static let requestMilliseconds: Int64 = 5000
    /// How long a client has to read the response.
    static let responseMilliseconds: Int64 = 10_000

    /// An admin socket at `path` for `router`.
    public init(path: String, router: Router, logger: Logger) {
        self.path = path
        self.router = router
        self.logger = logger
    }

    /// Serves until the task is cancelled, then removes the socket file. The task only waits.
    public func run() async throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let listener = try StreamSocket.listen(path: path, mode: 0o600)
        let wake = try WakeEvent()
        let finished = Latch()
        defer { listener.close(); wake.close(); unlink(path) }
        try NamedThread.start(name: "ffr-admin", stackBytes: 512 * 1024) { self.acceptLoop(listener, wake: wake, finished: finished) }
        logger.info("admin socket ready", metadata: ["path": "\(path)"])
        let cancelled = Latch()
        await withTaskCancellationHandler { await cancelled.wait() } onCancel: { cancelled.open() }
        wake.signal()
        await finished.wait()
    }

    /// Whether a peer with `uid` may use the admin socket of a router running as `routerUID`.
    static func permits(peerUID uid: UInt32, routerUID: UInt32) -> Bool { uid == 0 || uid == routerUID }

    private func acceptLoop(_ listener: StreamSocket, wake: WakeEvent, finished: Latch) {
        defer { finished.open() }
        let reserve = DescriptorReserve()
        var refusalLog = RateLimitedLog(intervalMilliseconds: 10_000)
        // While out of descriptors without a reserve, the listener is not polled (it would stay readable and spin
        // this thread) until this time.
        var pausedUntil: Int64 = 0
        var fds = [pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0), pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0)]
        while true {
            let paused = Poll.nowMilliseconds() < pausedUntil
            fds[0].revents = 0
            fds[1].revents = 0
            fds[1].fd = paused ? -1 : listener.descriptor
            do {
                try Poll.wait(&fds, timeoutMilliseconds: paused ? Poll.timeout(until: pausedUntil) : -1)
            } catch {
                logger.error("admin poll failed", metadata: ["error": "\(error)"])
                return
            }
            if fds[0].revents != 0 { return }
            guard fds[1].revents != 0 else { continue }
            for _ in 0..<16 {
                let connection: StreamSocket
                do {
                    guard let accepted = try listener.accept() else { break }
                    connection = accepted
                } catch {
                    // Out of descriptors: refuse one connection with the reserve's slot (the client reads end of file),
                    // or wait a moment when there is no reserve either.
                    let outcome = error.errno == EMFILE || error.errno == ENFILE ? reserve.shed(listener) : nil
                    if outcome == .waiting { pausedUntil = Poll.nowMilliseconds() + 100 }
                    if outcome != .nothingPending, let suppressed = refusalLog.shouldLog() {
                        let what = outcome == .refused ? "refused: out of descriptors" : "failed"
                        logger.warning("admin connection \(what)", metadata: ["error": "\(error)", "not_logged": "\(suppressed)"])
                    }
                    break
                }
                dispatch(connection)
            }
        }
    }

    /// Checks the peer and hands the connection to a request thread, or refuses it at once.
    private func dispatch(_ connection: StreamSocket) {
        let peer = try? connection.peerCredentials()
        let routerUID = geteuid()
        guard let peer, Self.permits(peerUID: peer.uid, routerUID: routerUID) else {
            logger.warning("admin request refused: peer is not root", metadata: ["uid": "\(peer.map { "\($0.uid)" } ?? "unknown")",
                                                                                  "pid": "\(peer.map { "\($0.pid)" } ?? "unknown")"])
            refuse(connection, AdminFailure(errno: EACCES, "permission denied: the admin socket serves uid 0 and the router's uid \(routerUID) only, "
                                            + "not uid \(peer.map { "\($0.uid)" } ?? "unknown")"))
            return
        }
        let admitted = active.withLock { count -> Bool in
            guard count < Self.maxConcurrentRequests else { return false }
            count += 1
            return true
        }
        guard admitted else {
            refuse(connection, AdminFailure(errno: EBUSY, "the router is serving \(Self.maxConcurrentRequests) admin requests already; retry"))
            return
        }
        do {
            try NamedThread.start(name: "ffr-admin-req", stackBytes: 512 * 1024) {
                self.serveRequest(connection)
                self.active.withLock { $0 -= 1 }
            }
        } catch {
            active.withLock { $0 -= 1 }
            refuse(connection, AdminFailure(errno: EAGAIN, "no thread for the admin request: \(error)"))
        }
    }

    private func refuse(_ connection: StreamSocket, _ failure: AdminFailure) {
        // A fresh connection's socket buffer takes a short answer without waiting. The request is read (for
        // at most 100 ms) before closing: closing a Unix stream socket with unread data resets the peer,
        // which would lose the answer.
        let deadline = Poll.nowMilliseconds() + 100
        try? connection.write(Self.encode(AdminResponse(failure)), deadline: deadline)
        connection.shutdownWrite()
        _ = try? connection.readLine(maxBytes: 64 * 1024, deadline: deadline)
        connection.close()
    }

    private func serveRequest(_ connection: StreamSocket) {
        defer { connection.close() }
        let line: [UInt8]
        do {
            line = try connection.readLine(maxBytes: 64 * 1024, deadline: Poll.nowMilliseconds() + Self.requestMilliseconds)
        } catch {
            logger.warning("admin request not read", metadata: ["error": "\(error)"])
            try? connection.write(Self.encode(AdminResponse(AdminFailure(errno: error.errno, "request not read: \(error)"))),
                                  deadline: Poll.nowMilliseconds() + 100)
            return
        }
        let response = respond(to: line)
        do {
            try connection.write(Self.encode(response), deadline: Poll.nowMilliseconds() + Self.responseMilliseconds)
        } catch {
            logger.warning("admin response not delivered", metadata: ["error": "\(error)"])
        }
    }

    /// The response to one request line: a JSON `AdminRequest`, or the bare word `status`.
    func respond(to line: [UInt8]) -> AdminResponse {
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let request: AdminRequest
        if text == "status" {
            request = AdminRequest(command: .status)
        } else {
            do {
                request = try JSONDecoder().decode(AdminRequest.self, from: Data(text.utf8))
            } catch {
                return AdminResponse(AdminFailure(errno: EINVAL, "not an admin request (a JSON object with command status, pod-add, pod-remove "
                                                  + "or pod-list): \(error)"))
            }
        }
        var response = AdminResponse()
        do throws(AdminFailure) {
            switch request.command {
            case .status:
                response.status = router.status
            case .podList:
                response.pods = router.pods
            case .podAdd:
                guard let spec = request.pod else { throw AdminFailure(errno: EINVAL, "pod-add needs a pod {name, namespace, uid, vip}") }
                (response.pod, response.created) = try router.addPod(spec)
            case .podRemove:
                guard let id = request.id, !id.isEmpty else { throw AdminFailure(errno: EINVAL, "pod-remove needs an id (uid, namespace/name or --pod name)") }
                let removed = try router.removePod(id)
                (response.pod, response.closedSessions, response.sessionsStillClosing) = (removed.pod, removed.closed, removed.stillClosing)
            }
        } catch {
            return AdminResponse(error)
        }
        return response
    }

    static func encode(_ response: AdminResponse) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(response))) ?? Array(#"{"error":"response not encodable","errno":5}"#.utf8)
    }

    /// Asks the router behind `path` for its status (what `ffctl router status` does).
    public static func requestStatus(path: String) throws -> RouterStatus { try AdminClient(path: path).status() }
}
