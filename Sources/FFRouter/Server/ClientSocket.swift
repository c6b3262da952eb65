import FFProtocol
import FFSystem
import Foundation
import Logging

extension Router {
    /// Refusals answered at once; past this many, a refused connection is closed without an answer (the client reads end
    /// of file), so that clients that connect and never say hello cannot pile up threads.
    static let maxConcurrentRefusals = 64
    /// How long a refused client has to send its hello before its connection is closed without an answer.
    static let refusalHelloMilliseconds: Int32 = 5000

    /// Accepts a bounded batch on the shared client socket: each connection's process is identified (peer credentials →
    /// cgroup → pod UID → the pod's vip in the map) and served as that pod, or answered with the reason it is refused.
    func acceptClients(_ listener: SeqPacketSocket, identity: PeerPodIdentity, acceptor: Acceptor, log: inout RateLimitedLog,
                       pausedUntil: inout Int64) {
        for _ in 0..<64 {
            let connection: SeqPacketSocket
            do {
                guard let accepted = try listener.accept() else { return }
                connection = accepted
            } catch where error.errno == EMFILE || error.errno == ENFILE {
                outOfDescriptors(listener, pod: nil, error, acceptor: acceptor, log: &log, pausedUntil: &pausedUntil)
                return
            } catch {
                logger.error("accept failed", metadata: ["socket": "\(listener.path)", "error": "\(error)"])
                return
            }
            let credentials: PeerCredentials
            do {
                credentials = try connection.peerCredentials()
            } catch {
                refuse(connection, IdentityRefusal(errno: EACCES, reason: "no peer credentials: \(error)"), credentials: nil, log: &log)
                continue
            }
            switch identity.identify(credentials) {
            case .success(let pod):
                admit(connection, pod: pod, credentials: credentials, identified: true, acceptor: acceptor, log: &log)
            case .failure(let refusal):
                refuse(connection, refusal, credentials: credentials, log: &log)
            }
        }
    }

    /// Logs and counts the refusal, then answers the client's hello with it on a short-lived thread and closes the
    /// connection: the shim prints the reason.
    private func refuse(_ connection: SeqPacketSocket, _ refusal: IdentityRefusal, credentials: PeerCredentials?, log: inout RateLimitedLog) {
        refused(.unidentified, pod: nil, log: &log, why: refusal.reason, pid: credentials?.pid)
        let admitted = state.withLock { s in
            guard s.phase == .running, s.refusalsInProgress < Self.maxConcurrentRefusals else { return false }
            s.refusalsInProgress += 1
            return true
        }
        guard admitted else { connection.close(); return }
        do {
            try NamedThread.start(name: "ffr-refuse", stackBytes: options.sessionStackBytes) {
                Self.answerHello(connection, with: refusal)
                self.state.withLock { $0.refusalsInProgress -= 1 }
            }
        } catch {
            state.withLock { $0.refusalsInProgress -= 1 }
            connection.close()
        }
    }

    /// Waits (bounded) for the client's first message and answers it with `refusal`, then closes the connection.
    private static func answerHello(_ connection: SeqPacketSocket, with refusal: IdentityRefusal) {
        defer { connection.close() }
        guard let hello = try? connection.receive(timeoutMilliseconds: refusalHelloMilliseconds, maxBytes: WireLimits.maxMessageSize) else { return }
        let requestID = (try? WireHeader.decode(hello.bytes).requestID) ?? 0
        let reply = Reply(message: .error(ErrorReply(errno: refusal.errno, reason: ErrorReply.fit(refusal.reason))), requestID: requestID)
        guard let bytes = try? reply.encode() else { return }
        // A fresh connection's socket buffer is empty: the answer fits without waiting.
        _ = try? connection.trySend(bytes)
    }

    /// Ends the sessions of identified pods that the map no longer publishes on this node (deleted, finished, moved
    /// to another vip): like removing a runtime pod, their objects are destroyed. Runs on the acceptor thread, only
    /// when the map's revision moved since the last check.
    func checkIdentifiedPods(_ identity: PeerPodIdentity) {
        let revision = identity.directory.revision
        let sessions = state.withLock { s -> [UInt64: PodDeclaration]? in
            s.identified = s.identified.filter { s.connections[$0.key] != nil }
            guard revision != s.identifiedCheckedRevision else { return nil }
            s.identifiedCheckedRevision = revision
            return s.identified
        }
        guard let sessions, !sessions.isEmpty else { return }
        var pods: [String: PodDeclaration] = [:]
        for pod in sessions.values { pods[pod.uid] = pod }
        var gone: [String: String] = [:]
        for pod in pods.values {
            switch identity.directory.localPod(uid: pod.uid, nodeIP: identity.nodeIP) {
            case .found(let now) where now == pod: break
            case .found(let now): gone[pod.uid] = "the map now has pod \(now.displayName) with vip \(now.vip)"
            case .absent(let why): gone[pod.uid] = why
            case .notListed: break
            }
        }
        guard !gone.isEmpty else { return }
        let closed = state.withLock { s -> [(PodDeclaration, Int)] in
            var closed: [String: (PodDeclaration, Int)] = [:]
            for (id, pod) in s.identified where gone[pod.uid] != nil {
                guard let connection = s.connections[id] else { continue }
                connection.requestStop(.podRemoved)
                closed[pod.uid, default: (pod, 0)].1 += 1
            }
            return Array(closed.values)
        }
        for (pod, count) in closed {
            logger.info("pod left the map; closing its sessions", metadata: ["pod": "\(pod.displayName)", "uid": "\(pod.uid)", "vip": "\(pod.vip)",
                                                                            "sessions": "\(count)", "why": "\(gone[pod.uid] ?? "")"])
        }
    }
}
