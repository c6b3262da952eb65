import FFProtocol
import FFRouterAPI
import FFSystem
import Foundation
import Logging
import Synchronization

/// Why a session ended: the last thing its log line says.
enum CloseReason: Sendable, CustomStringConvertible {
    case clientClosed
    case refusedHello
    case slowClient(queuedReplies: Int, milliseconds: Int)
    case podRemoved
    case routerStopping
    case failed(String)

    var description: String {
        switch self {
        case .clientClosed: "the client closed its connection"
        case .refusedHello: "its hello was refused (no common protocol version)"
        case .slowClient(let queued, let ms): "it did not read its replies for \(ms) ms (\(queued) replies queued)"
        case .podRemoved: "its pod was removed"
        case .routerStopping: "the router is stopping"
        case .failed(let why): why
        }
    }
}

/// One client connection as the other threads see it: its identity, what to poll to wake its thread, its
/// published counters and a latch that opens once its session is closed. Everything else (the session
/// handler, the outbound queue) belongs to the session thread alone.
final class SessionConnection: Sendable {
    let context: SessionContext
    let socket: SeqPacketSocket
    let wake: WakeEvent
    /// Opens when the session is closed (objects destroyed) and the thread is about to end.
    let finished = Latch()
    private let stop = Mutex<CloseReason?>(nil)
    private let published: Mutex<SessionCounters>

    init(context: SessionContext, socket: SeqPacketSocket, wake: WakeEvent) {
        self.context = context
        self.socket = socket
        self.wake = wake
        published = Mutex(SessionCounters(objects: ObjectCounts(), requests: 0, errors: 0))
    }

    /// Asks the session thread to close the session. Called under the router's state lock while the
    /// connection is registered, so `wake` is still open.
    func requestStop(_ reason: CloseReason) {
        stop.withLock { if $0 == nil { $0 = reason } }
        wake.signal()
    }

    var stopRequest: CloseReason? { stop.withLock { $0 } }

    /// The counters as of the last answered request.
    var counters: SessionCounters { published.withLock { $0 } }

    func publish(_ counters: SessionCounters) { published.withLock { $0 = counters } }
}

/// A reply waiting for room in the client's socket buffer.
private struct Outbound {
    let bytes: [UInt8]
    let descriptors: [Int32]
    let afterSend: (() -> Void)?
    let closeAfterSend: Bool
}

extension Router {
    /// The session thread: owns the session handler; polls the client socket and its wake event; answers
    /// requests into a bounded outbound queue that it flushes without blocking. While replies are queued and
    /// the client reads none of them for the reply timeout, it disconnects the client. Ends by closing the
    /// session (destroying its objects), whatever the reason.
    func serve(_ connection: SessionConnection) {
        let handler = makeSession(connection.context)
        let identity = connection.context.identity
        logger.info("client connected", metadata: ["session": "\(connection.context.id)", "pod": "\(identity.pod)", "pid": "\(identity.pid)"])
        let socket = connection.socket
        let depth = max(1, options.replyQueueDepth)
        let replyTimeout = Int64(max(1, options.replyTimeoutMilliseconds))
        var queue: [Outbound] = []
        queue.reserveCapacity(depth)
        var reading = true
        var endOfInput = CloseReason.clientClosed
        var lastProgress = Poll.nowMilliseconds()
        var fds = [pollfd(fd: socket.descriptor, events: 0, revents: 0), pollfd(fd: connection.wake.descriptor, events: Int16(POLLIN), revents: 0)]

        /// Sends queued replies until the socket buffer is full; nil to go on, or why the session ends.
        func flush() -> CloseReason? {
            while let next = queue.first {
                do {
                    guard try socket.trySend(next.bytes, descriptors: next.descriptors) else { return nil }
                } catch {
                    return error.errno == EPIPE || error.errno == ECONNRESET ? .clientClosed : .failed("reply not delivered: \(error)")
                }
                queue.removeFirst()
                next.afterSend?()
                lastProgress = Poll.nowMilliseconds()
                if next.closeAfterSend { return .refusedHello }
            }
            return nil
        }

        let reason: CloseReason
        serving: while true {
            if let stop = connection.stopRequest { reason = stop; break }
            if !reading && queue.isEmpty { reason = endOfInput; break }
            var events: Int32 = 0
            if reading && queue.count < depth { events |= Int32(POLLIN) }
            if !queue.isEmpty { events |= Int32(POLLOUT) }
            fds[0].events = Int16(events)
            fds[0].revents = 0
            fds[1].revents = 0
            do {
                try Poll.wait(&fds, timeoutMilliseconds: queue.isEmpty ? -1 : Poll.timeout(until: lastProgress + replyTimeout))
            } catch {
                reason = .failed("\(error)")
                break
            }
            if fds[1].revents != 0 {
                connection.wake.drain()
                continue
            }
            if !queue.isEmpty {
                if let end = flush() { reason = end; break }
                if !queue.isEmpty && Poll.nowMilliseconds() >= lastProgress + replyTimeout {
                    reason = .slowClient(queuedReplies: queue.count, milliseconds: Int(replyTimeout))
                    break
                }
            }
            // A bounded batch, so that a client streaming requests cannot keep its own replies from going out.
            var budget = 16
            while reading && queue.count < depth && budget > 0 {
                budget -= 1
                let received: Received
                do {
                    received = try socket.receive(maxBytes: WireLimits.maxMessageSize + 1, maxDescriptors: WireLimits.maxMRSegments)
                } catch {
                    reason = .failed("receive failed: \(error)")
                    break serving
                }
                switch received {
                case .wouldBlock:
                    budget = 0
                case .endOfFile:
                    reading = false
                case .datagram(let datagram):
                    let reply = handler.handle(datagram)
                    connection.publish(handler.counters)
                    let bytes: [UInt8]
                    do {
                        bytes = try reply.encode()
                    } catch {
                        // A reply the wire cannot carry is a router bug; the client gets EIO for that request and goes on.
                        reply.afterSend?()
                        let failure = Reply(message: .error(ErrorReply(errno: EIO, reason: ErrorReply.fit("router reply not encodable: \(error)"))),
                                            requestID: reply.requestID)
                        guard let encoded = try? failure.encode() else {
                            reason = .failed("reply not encodable: \(error)")
                            break serving
                        }
                        if queue.isEmpty { lastProgress = Poll.nowMilliseconds() }
                        queue.append(Outbound(bytes: encoded, descriptors: [], afterSend: nil, closeAfterSend: false))
                        continue serving
                    }
                    if queue.isEmpty { lastProgress = Poll.nowMilliseconds() }
                    queue.append(Outbound(bytes: bytes, descriptors: reply.descriptors, afterSend: reply.afterSend,
                                          closeAfterSend: reply.closeAfterSend))
                    if reply.closeAfterSend {
                        reading = false
                        endOfInput = .refusedHello
                    }
                    if let end = flush() { reason = end; break serving }
                }
            }
        }

        socket.close()
        handler.close()
        for leftover in queue { leftover.afterSend?() }
        let metadata: Logger.Metadata = ["session": "\(connection.context.id)", "pod": "\(identity.pod)", "pid": "\(identity.pid)",
                                         "reason": "\(reason)"]
        if case .slowClient = reason {
            logger.warning("slow client disconnected; its session is closed and its objects destroyed", metadata: metadata)
            metrics.slowClientsDisconnected.increment()
        } else {
            logger.info("client disconnected; session closed", metadata: metadata)
        }
        state.withLock { s in
            s.connections[connection.context.id] = nil
            s.connectionsPerPod[connection.context.pod.key, default: 1] -= 1
            if s.connectionsPerPod[connection.context.pod.key] == 0 { s.connectionsPerPod[connection.context.pod.key] = nil }
            if case .slowClient = reason { s.slowClientsDisconnected += 1 }
        }
        connection.wake.close()
        connection.finished.open()
    }
}
