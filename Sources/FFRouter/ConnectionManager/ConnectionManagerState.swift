import FFProtocol
import FFSystem
import Verbs

/// What the router's connection manager knows, all of it behind `ConnectionManagerService.state`: the sessions'
/// channels and cm ids, the listeners, the ports and the device cm_ids by name.
extension ConnectionManagerService {
    /// A cm id: the session that holds it and its handle there.
    struct Key: Hashable {
        var session: UInt64
        var id: UInt32
    }

    /// A port of a pod's vip, in the TCP (RC) or a datagram (UD) port space.
    struct Endpoint: Hashable {
        var vip: IPv4Address
        var port: UInt16
        var datagram: Bool
    }

    /// Where an id is in its life (rdma_cm's states, as far as the router follows them).
    enum Phase: Equatable {
        case idle, addressResolved, routeResolved, listening, connecting, requestReceived, accepted, connected
        case disconnected
    }

    /// One cm id of a session.
    struct Identifier {
        var channel: UInt32
        var portSpace: CMPortSpace
        var phase = Phase.idle
        /// The address the application bound (0.0.0.0 for any), reported back by bind.
        var boundAddress: IPv4Address?
        var localPort: UInt16 = 0
        var remote: IPv4Address = IPv4Address(0, 0, 0, 0)
        var remotePort: UInt16 = 0
        var peer: Key?
        var listener: Endpoint?
        var pendingRequests = 0
        var backlog = 0
        var listenID: Key?
        var qpNum: UInt32 = 0
        var psn: UInt32 = 0
        /// The device's cm_id of a connection to another node.
        var device: ConnectionID?
        /// The connect waiting for its route over the device, or for a listener at `awaitingListener`.
        var pendingConnect: CMConnectionParameters?
        /// A connect to a pod of this router waiting for a listener there (`ConnectionManagerService.connect`).
        var awaitingListener: Endpoint?
        /// The peer's node IP of a connection over the device (the sender of its UD messages).
        var peerNode: IPv4Address?
        /// A listen whose node listener is being set up outside the lock (`listen`).
        var startingListen = false
        var datagram: Bool { portSpace == .udp || portSpace == .ipoib }

        /// Whether `device` is this id's device cm_id (the id did not move on while the lock was released).
        func has(_ device: ConnectionID) -> Bool { self.device === device }
    }

    /// One session's channels and ids.
    struct SessionState {
        var vip: IPv4Address
        var channels: [UInt32: SeqPacketSocket] = [:]
        var ids: [UInt32: Identifier] = [:]
        var nextHandle: UInt32 = 1
        /// The senders this session's UD connects to other nodes taught the router, oldest first.
        var learned: [Sender] = []
    }

    /// A UD QP of another node: what a received message's GRH (the node's GID) and source QP name.
    struct Sender: Hashable {
        var node: IPv4Address
        var qpNum: UInt32
    }

    /// What a locked section leaves for after the lock is released: calls into the device's rdma_cm and the
    /// kernel that must not hold up the other sessions (`ConnectionManagerService.locked`).
    enum Afterwards {
        /// rdma_reject on a device cm_id whose request the router refuses or its pod abandons.
        case reject(ConnectionID, privateData: [UInt8])
        /// rdma_disconnect on a device cm_id (a DREQ, or the answer to the peer's).
        case disconnect(ConnectionID)
        /// A device cm_id the router no longer refers to: the reference held here is the last one, so its
        /// rdma_destroy_id runs when the work is done.
        case release(ConnectionID)
        /// One pod fewer listens on this port of the node.
        case releaseListener(NodeConnectionManager.Listener)
        /// A channel the router no longer serves.
        case close(SeqPacketSocket)
        /// The listener grace of a connect waiting at the endpoint starts.
        case graceTimer(Key, Endpoint)
    }

    /// Everything of the connection manager, guarded by its one mutex.
    struct State {
        var sessions: [UInt64: SessionState] = [:]
        var listeners: [Endpoint: Key] = [:]
        var boundPorts: Set<Endpoint> = []
        var byDevice: [ConnectionID.Identifier: Key] = [:]
        /// Connects waiting for a listener at each endpoint, oldest first.
        var awaitingListener: [Endpoint: [Key]] = [:]
        /// The vip of each sender learned from a SIDR exchange, and the session whose exchange taught it.
        var senders: [Sender: (vip: IPv4Address, session: UInt64)] = [:]
        var nextPort: UInt16 = 0
        var random = SplitMix(seed: 0x5EED_C0DE)
        /// Work of the current locked section for after the lock, in order.
        var afterwards: [Afterwards] = []

        /// The id `key` names, if it (still) exists.
        func identifier(_ key: Key) -> Identifier? { sessions[key.session]?.ids[key.id] }

        /// Stores `identifier` as `key`'s, if its session still exists (never recreates a closed session).
        mutating func store(_ identifier: Identifier, at key: Key) {
            sessions[key.session]?.ids[key.id] = identifier
        }

        /// The vip of `session`'s pod, if the session still exists.
        func vip(of session: UInt64) -> IPv4Address? { sessions[session]?.vip }

        /// A new handle of `session` (ids and channels share the numbering), nil if the session is gone.
        mutating func nextHandle(of session: UInt64) -> UInt32? {
            guard let handle = sessions[session]?.nextHandle else { return nil }
            sessions[session]?.nextHandle = handle &+ 1
            return handle
        }

        /// The id `key` names, or EBADF as for a handle the session does not hold.
        func lookup(_ key: Key) throws(ErrorReply) -> Identifier {
            guard let identifier = identifier(key) else { throw ConnectionManagerService.noSuch("cm id", key.id) }
            return identifier
        }

        /// A port of `vip`: `port` if free, or for 0 the next free one of the ephemeral range 32768...60999.
        mutating func reserve(_ port: UInt16, vip: IPv4Address, datagram: Bool) throws(ErrorReply) -> UInt16 {
            if port != 0 {
                guard boundPorts.insert(Endpoint(vip: vip, port: port, datagram: datagram)).inserted else {
                    throw ErrorReply(errno: Errno.addressInUse, reason: "rdma_bind_addr: \(vip) port \(port) is in use")
                }
                return port
            }
            for _ in 0..<ephemeralPorts {
                nextPort = nextPort >= ephemeralPorts - 1 ? 0 : nextPort + 1
                let candidate = firstEphemeralPort + nextPort
                let endpoint = Endpoint(vip: vip, port: candidate, datagram: datagram)
                if boundPorts.insert(endpoint).inserted { return candidate }
            }
            throw ErrorReply(errno: Errno.addressInUse, reason: "no free port left for \(vip)")
        }

        /// Forgets `identifier`'s device cm_id; the last reference goes after the lock (`Afterwards.release`).
        mutating func unlinkDevice(_ identifier: inout Identifier) {
            guard let device = identifier.device else { return }
            byDevice[device.identifier] = nil
            identifier.device = nil
            identifier.pendingConnect = nil
            afterwards.append(.release(device))
        }

        /// Takes `key` off the connects waiting for a listener at `endpoint`; false when it was not among them.
        @discardableResult
        mutating func unqueue(_ key: Key, from endpoint: Endpoint) -> Bool {
            guard var waiting = awaitingListener[endpoint], let index = waiting.firstIndex(of: key) else {
                return false
            }
            waiting.remove(at: index)
            awaitingListener[endpoint] = waiting.isEmpty ? nil : waiting
            return true
        }
    }

    /// The first port of the ephemeral range 32768...60999 that ports are picked from.
    static let firstEphemeralPort: UInt16 = 32768
    /// How many ports that range holds.
    static let ephemeralPorts: UInt16 = 28232
}

extension ConnectionManagerService {
    /// EBADF for a handle the session does not hold (or no longer holds).
    static func noSuch(_ what: String, _ handle: UInt32) -> ErrorReply {
        ErrorReply(errno: Errno.badHandle, reason: "no \(what) \(handle) in this session")
    }

    /// EINVAL: a call the id's state does not allow.
    static func invalid(_ why: String) -> ErrorReply { ErrorReply(errno: Errno.invalidArgument, reason: why) }

    /// EINVAL for private data beyond what `call` may carry.
    static func checkPrivateData(_ data: [UInt8], budget: Int, _ call: String) throws(ErrorReply) {
        guard data.count <= budget else {
            throw invalid("\(call): \(data.count) bytes of private data, at most \(budget) fit (docs/rdma-cm.md)")
        }
    }
}

/// A small deterministic generator for starting PSNs (no allocation, no system call under the lock).
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt32 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: z ^ (z >> 31))
    }
}
