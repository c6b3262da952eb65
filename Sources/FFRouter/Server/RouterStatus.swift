import FFSystem

/// What the router reports about itself (`ffctl router status`).
public struct RouterStatus: Sendable, Codable, Equatable {
    /// One connected client.
    public struct Client: Sendable, Codable, Equatable {
        /// Session id.
        public var session: UInt64
        /// Who it is.
        public var identity: ClientIdentity
        /// Its objects.
        public var objects: ObjectCounts
        /// Requests answered.
        public var requests: UInt64
        /// Requests refused.
        public var errors: UInt64
    }

    /// The process limits the router runs with, after raising them at start.
    public struct Limits: Sendable, Codable, Equatable {
        /// RLIMIT_NOFILE: bounds connections (each holds a socket and a wake-up eventfd) and objects that
        /// keep descriptors.
        public var openFiles: ResourceLimit
        /// RLIMIT_MEMLOCK: bounds the bytes all memory regions together can pin.
        public var lockedMemory: ResourceLimit

        /// Limits as read or raised.
        public init(openFiles: ResourceLimit, lockedMemory: ResourceLimit) {
            self.openFiles = openFiles
            self.lockedMemory = lockedMemory
        }

        /// The limits in force now, without changing them.
        public static func current() -> Limits {
            let unreadable = ResourceLimit(soft: nil, hard: nil, note: "unreadable")
            return Limits(openFiles: (try? ResourceLimits.current(.openFiles)) ?? unreadable,
                          lockedMemory: (try? ResourceLimits.current(.lockedMemory)) ?? unreadable)
        }

        /// Raises RLIMIT_NOFILE's soft limit to the hard one and RLIMIT_MEMLOCK to unlimited (or its hard
        /// limit): what `ffrouter` does at start. Each `note` says what was done or why not.
        public static func raiseForRouter() -> Limits {
            Limits(openFiles: ResourceLimits.raise(.openFiles, tryUnlimited: false),
                   lockedMemory: ResourceLimits.raise(.lockedMemory, tryUnlimited: true))
        }
    }

    /// Device name.
    public var device: String
    /// Node IP and its GID index.
    public var nodeIP: String
    /// GID index of the node IP.
    public var gidIndex: Int
    /// Served pods.
    public var pods: [PodStatus]
    /// The vip map.
    public var map: MapSummary
    /// Connected clients.
    public var clients: [Client]
    /// Objects of all clients.
    public var objects: ObjectCounts
    /// Sessions since start.
    public var sessionsTotal: UInt64
    /// Connections refused since start (out of descriptors or threads, a pod at its connection limit).
    public var refusedConnections: UInt64
    /// Clients disconnected since start because they did not read their replies within the reply timeout.
    public var slowClientsDisconnected: UInt64
    /// The process limits.
    public var limits: Limits
    /// The served port can carry traffic (what the device plugin reports as the devices' health).
    public var portActive: Bool
    /// The port's state in words, e.g. `device rxe0 port 1 PORT_ACTIVE`.
    public var portState: String
    /// The shared client socket, whose clients are identified by their pod (`--client-socket`); nil when not served.
    public var clientSocket: String?
}
