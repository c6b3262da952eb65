import Dispatch
import FFProtocol
import FFSystem
import Glibc
import Logging
import Synchronization
import Verbs

/// The device's own rdma_cm on the node IP, which carries connects between pods of different nodes: one event
/// channel and one thread (`ffr-cm`) reading it, and one listening cm_id per port shared by every pod of the node
/// listening on that port (the router's header in the connect's private data names the pod, docs/rdma-cm.md).
/// The cm_ids have no QP: the pods' QPs are moved by their client libraries with what `rdma_init_qp_attr`
/// reports, and announced by number.
final class NodeConnectionManager: @unchecked Sendable {
    // @unchecked: `listeners` is guarded by its mutex, under which no call on the device is made; the channel is
    // used by the event thread and by callers of `newID` (librdmacm serializes on its own).
    let nodeIP: IPv4Address
    private let channel: EventChannel
    private let wake: WakeEvent
    private let logger: Logger
    private let listeners = Mutex<[Listener: Entry]>([:])

    /// A node listener: a port of the TCP (RC) or the UDP (UD, SIDR) port space.
    struct Listener: Hashable {
        var port: UInt16
        var datagram: Bool
    }

    /// The connection manager of the device on `nodeIP`.
    init(nodeIP: IPv4Address, logger: Logger) throws {
        self.nodeIP = nodeIP
        self.logger = logger
        channel = try EventChannel()
        wake = try WakeEvent()
    }

    /// Starts the thread that hands every event to `deliver` (on that thread).
    func start(_ deliver: @escaping @Sendable (ConnectionEvent) -> Void) throws {
        let channel = channel, wake = wake, logger = logger
        try NamedThread.start(name: "ffr-cm", stackBytes: 256 * 1024) {
            var descriptors = [pollfd(fd: channel.fileDescriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0)]
            while true {
                do {
                    _ = try Poll.wait(&descriptors, timeoutMilliseconds: -1)
                } catch {
                    logger.error("rdma_cm event thread stopped", metadata: ["error": "\(error)"])
                    return
                }
                if descriptors[1].revents != 0 { return }
                guard descriptors[0].revents != 0 else { continue }
                do {
                    deliver(try channel.getEvent())
                } catch {
                    logger.warning("rdma_cm event not read", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Ends the event thread.
    func stop() { wake.signal() }

    /// A new cm_id on the node's channel: TCP port space, or UDP with `datagram`.
    func newID(datagram: Bool = false) throws -> ConnectionID { try channel.createID(datagram: datagram) }

    /// A node listener's entry: being set up by one caller (the others wait on `ready`), or up.
    private enum Entry {
        case starting(ready: DispatchGroup)
        case up(id: ConnectionID, users: Int)
    }

    /// Makes sure the node listens on `listener`'s port; one more pod listens there. The cm_id is made, bound and
    /// listening with the mutex released (other ports' listeners and the event thread do not wait for it); a
    /// caller for the same port meanwhile waits for that outcome on its own thread.
    func retainListener(_ listener: Listener) throws {
        while true {
            let step: (starting: DispatchGroup?, waitFor: DispatchGroup?) = listeners.withLock { l in
                switch l[listener] {
                case .up(let id, let users)?:
                    l[listener] = .up(id: id, users: users + 1)
                    return (nil, nil)
                case .starting(let ready)?:
                    return (nil, ready)
                case nil:
                    let ready = DispatchGroup()
                    ready.enter()
                    l[listener] = .starting(ready: ready)
                    return (ready, nil)
                }
            }
            if let waitFor = step.waitFor {
                waitFor.wait()
                continue
            }
            guard let ready = step.starting else { return }
            defer { ready.leave() }
            do {
                let id = try channel.createID(datagram: listener.datagram)
                try id.bind(ipv4: nodeIP.description, port: listener.port)
                try id.listen(backlog: 64)
                listeners.withLock { $0[listener] = .up(id: id, users: 1) }
            } catch {
                listeners.withLock { $0[listener] = nil }
                throw error
            }
            return
        }
    }

    /// One pod fewer listens on `listener`'s port; the last one closes the node's listener (its rdma_destroy_id
    /// runs once the mutex is released).
    func releaseListener(_ listener: Listener) {
        let closing: ConnectionID? = listeners.withLock { l in
            guard case .up(let id, let users)? = l[listener] else { return nil }
            l[listener] = users > 1 ? .up(id: id, users: users - 1) : nil
            return users > 1 ? nil : id
        }
        // The last reference to a closed listener goes here, after the mutex.
        _ = closing
    }

    /// The node listener `id` is, if it is one.
    func listener(_ id: ConnectionID.Identifier) -> Listener? {
        listeners.withLock { l in
            l.first(where: { entry in
                if case .up(let listening, _) = entry.value { listening.identifier == id } else { false }
            })?.key
        }
    }

    /// Flag of the header: the connecting pod's QP number follows the vips (UD connects, whose SIDR REQ carries no
    /// QP number, so that the answering router knows the sender of that QP, docs/rdma-cm.md).
    static let carriesQPNumber: UInt8 = 1

    /// The router's header in front of a connect's private data: magic "FF", version 1, flags, destination vip,
    /// source vip, and with `qpNum` (flag `carriesQPNumber`) the source QP number, big-endian.
    static func header(destination: IPv4Address, source: IPv4Address, qpNum: UInt32? = nil) -> [UInt8] {
        let vips = destination.bytes + source.bytes
        guard let qpNum else { return [0x46, 0x46, 1, 0] + vips }
        return [0x46, 0x46, 1, carriesQPNumber] + vips + withUnsafeBytes(of: qpNum.bigEndian, Array.init)
    }

    /// The destination and source vips of a header, the source QP number if it carries one, and the application's
    /// bytes after it; nil if it is not one.
    static func parseHeader(_ data: [UInt8]) -> (destination: IPv4Address, source: IPv4Address, qpNum: UInt32?, rest: [UInt8])? {
        guard data.count >= CMPrivateData.headerLength, data[0] == 0x46, data[1] == 0x46, data[2] == 1 else { return nil }
        let destination = IPv4Address(data[4], data[5], data[6], data[7]), source = IPv4Address(data[8], data[9], data[10], data[11])
        guard data[3] & carriesQPNumber != 0 else { return (destination, source, nil, Array(data[CMPrivateData.headerLength...])) }
        guard data.count >= CMPrivateData.datagramHeaderLength else { return nil }
        let qpNum = data[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (destination, source, qpNum, Array(data[CMPrivateData.datagramHeaderLength...]))
    }
}
