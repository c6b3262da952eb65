import FFProtocol
import FFRouterAPI
import FFSystem
import Foundation
import Logging
import Synchronization

/// The acceptor thread's resources: its wake event (pods added or removed, stop) and a reserve descriptor
/// that lets it shed connections when the process is out of descriptors.
final class Acceptor: Sendable {
    let wake: WakeEvent
    /// Opens when the acceptor thread has ended.
    let finished = Latch()
    /// Freed on EMFILE to accept and refuse a connection the router cannot serve.
    let reserve = DescriptorReserve()
    /// Rate-limits the line that says connections wait because not even the reserve was left.
    let waitingLog = Mutex(RateLimitedLog(intervalMilliseconds: 10_000))

    init() throws(SystemError) {
        wake = try WakeEvent()
    }

    func close() {
        reserve.close()
        wake.close()
    }
}

/// Why a connection was refused, as the `reason` label of `ffrouter_refused_connections_total`.
enum RefusalReason: String, CaseIterable {
    case descriptors
    case podLimit = "pod_limit"
    case threads
    /// A connection on the client socket whose process maps to no pod with a vip on this node.
    case unidentified
}

extension Router {
    /// The acceptor thread: polls every pod listener and the wake event; accepts, refuses cleanly when out of
    /// descriptors (the client reads end of file) and starts a session thread per connection.
    func acceptLoop(_ acceptor: Acceptor) {
        var refusalLog = RateLimitedLog(intervalMilliseconds: 10_000)
        // While out of descriptors without a reserve, listeners are not polled (they would stay readable
        // and spin this thread) until this time.
        var pausedUntil: Int64 = 0
        let identity = options.clientSocket.map { PeerPodIdentity(procRoot: $0.procRoot, directory: $0.directory, nodeIP: device.nodeIP) }
        var nextIdentityCheck: Int64 = 0
        while true {
            let polled = state.withLock { s -> ([PodEntry], SeqPacketSocket?)? in
                for retired in s.retired { retired.close() }
                s.retired = []
                return s.phase == .running ? (Array(s.pods.values), s.clientListener) : nil
            }
            guard let polled else { break }
            let (listeners, clientListener) = polled
            if let identity, Poll.nowMilliseconds() >= nextIdentityCheck {
                checkIdentifiedPods(identity)
                nextIdentityCheck = Poll.nowMilliseconds() + Int64(max(1, options.clientSocket?.checkIntervalMilliseconds ?? 500))
            }
            let paused = Poll.nowMilliseconds() < pausedUntil
            var fds = [pollfd(fd: acceptor.wake.descriptor, events: Int16(POLLIN), revents: 0)]
            if !paused { fds += listeners.map { pollfd(fd: $0.listener.descriptor, events: Int16(POLLIN), revents: 0) } }
            if !paused, let clientListener { fds.append(pollfd(fd: clientListener.descriptor, events: Int16(POLLIN), revents: 0)) }
            var timeout: Int32 = paused ? Poll.timeout(until: pausedUntil) : -1
            if identity != nil {
                let untilCheck = Poll.timeout(until: nextIdentityCheck)
                timeout = timeout < 0 ? untilCheck : min(timeout, untilCheck)
            }
            do {
                try Poll.wait(&fds, timeoutMilliseconds: timeout)
            } catch {
                logger.error("acceptor poll failed", metadata: ["error": "\(error)"])
                pausedUntil = Poll.nowMilliseconds() + 100
                continue
            }
            if fds[0].revents != 0 { acceptor.wake.drain() }
            for (index, entry) in listeners.enumerated() where !paused && fds[index + 1].revents != 0 {
                // A bounded batch per listener, so that one pod's connection storm cannot starve another's.
                for _ in 0..<64 {
                    let connection: SeqPacketSocket
                    do {
                        guard let accepted = try entry.listener.accept() else { break }
                        connection = accepted
                    } catch where error.errno == EMFILE || error.errno == ENFILE {
                        outOfDescriptors(entry.listener, pod: entry.pod, error, acceptor: acceptor, log: &refusalLog, pausedUntil: &pausedUntil)
                        break
                    } catch {
                        logger.error("accept failed", metadata: ["pod": "\(entry.pod.displayName)", "error": "\(error)"])
                        break
                    }
                    admit(connection, pod: entry.pod, acceptor: acceptor, log: &refusalLog)
                }
            }
            if !paused, let clientListener, let identity, fds[fds.count - 1].revents != 0 {
                acceptClients(clientListener, identity: identity, acceptor: acceptor, log: &refusalLog, pausedUntil: &pausedUntil)
            }
        }
        acceptor.finished.open()
    }

    /// Accepting failed with EMFILE or ENFILE: refuses one pending connection with the reserve descriptor (counted and
    /// logged as refused), or, with no descriptor to do even that, stops polling the listeners for 100 ms (the clients
    /// wait in the backlog) and says so.
    func outOfDescriptors(_ listener: SeqPacketSocket, pod: PodDeclaration?, _ error: SystemError, acceptor: Acceptor,
                          log: inout RateLimitedLog, pausedUntil: inout Int64) {
        let outcome = acceptor.reserve.shed(listener) {
            refused(.descriptors, pod: pod, log: &log, why: "out of descriptors (\(error))")
        }
        guard outcome == .waiting else { return }
        pausedUntil = Poll.nowMilliseconds() + 100
        if let suppressed = acceptor.waitingLog.withLock({ $0.shouldLog() }) {
            logger.warning("out of descriptors, not even one to refuse a connection with: connections wait in the backlog",
                           metadata: ["error": "\(error)", "socket": "\(listener.path)", "pauses_not_logged": "\(suppressed)"])
        }
    }

    /// Registers the connection and starts its session thread, or refuses it (pod at its connection limit,
    /// no descriptor for its wake event, no thread). A connection on a pod's socket is that pod's while the pod is
    /// served; an `identified` one (the client socket) is the pod its process belongs to.
    func admit(_ connection: SeqPacketSocket, pod: PodDeclaration, credentials known: PeerCredentials? = nil, identified: Bool = false,
               acceptor: Acceptor, log: inout RateLimitedLog) {
        let wake: WakeEvent
        do {
            wake = try WakeEvent()
        } catch {
            refused(.descriptors, pod: pod, log: &log, why: "no descriptor for the session (\(error))")
            connection.close()
            return
        }
        let credentials = known ?? (try? connection.peerCredentials()) ?? PeerCredentials(pid: 0, uid: 0, gid: 0)
        let limit = options.maxConnectionsPerPod
        let admitted = state.withLock { s -> SessionConnection? in
            guard s.phase == .running, identified || s.pods[pod.key]?.pod == pod else { return nil }
            if limit > 0 && s.connectionsPerPod[pod.key, default: 0] >= limit { return nil }
            let id = s.nextSession
            s.nextSession += 1
            s.sessionsTotal += 1
            let identity = ClientIdentity(pod: pod.displayName, vip: pod.vip.description, pid: credentials.pid, uid: credentials.uid)
            let admitted = SessionConnection(context: SessionContext(id: id, identity: identity, vip: pod.vip, pod: pod), socket: connection,
                                             wake: wake)
            s.connections[id] = admitted
            s.connectionsPerPod[pod.key, default: 0] += 1
            if identified { s.identified[id] = pod }
            return admitted
        }
        guard let admitted else {
            let serving = state.withLock { $0.phase == .running && (identified || $0.pods[pod.key] != nil) }
            if serving { refused(.podLimit, pod: pod, log: &log, why: "the pod has \(limit) connections (--max-connections-per-pod)") }
            connection.close()
            wake.close()
            return
        }
        metrics.sessions.increment()
        do {
            try NamedThread.start(name: "ffr-s\(admitted.context.id)", stackBytes: options.sessionStackBytes) { self.serve(admitted) }
        } catch {
            state.withLock { s in
                s.connections[admitted.context.id] = nil
                s.identified[admitted.context.id] = nil
                s.connectionsPerPod[pod.key, default: 1] -= 1
            }
            refused(.threads, pod: pod, log: &log, why: "no thread for the session (\(error))")
            connection.close()
            wake.close()
        }
    }

    /// Counts a refused connection and logs it (rate-limited); `pod` is nil on the client socket before identification.
    /// Called before the connection is closed, so that a client that has read the end of file finds its refusal counted.
    func refused(_ reason: RefusalReason, pod: PodDeclaration?, log: inout RateLimitedLog, why: String, pid: Int32? = nil) {
        let total = state.withLock { s in s.refusedConnections += 1; return s.refusedConnections }
        metrics.refused(reason)
        if let suppressed = log.shouldLog() {
            var metadata: Logger.Metadata = ["reason": "\(why)", "refused_total": "\(total)", "refusals_not_logged": "\(suppressed)"]
            if let pod { metadata["pod"] = "\(pod.displayName)" }
            if let pid { metadata["pid"] = "\(pid)" }
            logger.warning("connection refused", metadata: metadata)
        }
    }
}

/// At most one log line per interval; counts what it held back.
struct RateLimitedLog {
    let intervalMilliseconds: Int64
    private var last: Int64 = .min
    private var suppressed = 0

    init(intervalMilliseconds: Int64) { self.intervalMilliseconds = intervalMilliseconds }

    /// The number of events not logged since the last line, when this one should be logged; nil otherwise.
    mutating func shouldLog() -> Int? {
        let now = Poll.nowMilliseconds()
        guard last == .min || now - last >= intervalMilliseconds else { suppressed += 1; return nil }
        defer { last = now; suppressed = 0 }
        return suppressed
    }
}
