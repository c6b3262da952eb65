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

        /// Creates the entry.
        public init(session: UInt64, identity: ClientIdentity, objects: ObjectCounts, requests: UInt64,
                    errors: UInt64) {
            self.session = session
            self.identity = identity
            self.objects = objects
            self.requests = requests
            self.errors = errors
        }
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

    /// Creates the value.
    public init(device: String, nodeIP: String, gidIndex: Int, pods: [PodStatus], map: MapSummary, clients: [Client],
                objects: ObjectCounts, sessionsTotal: UInt64, refusedConnections: UInt64,
                slowClientsDisconnected: UInt64, limits: Limits, portActive: Bool, portState: String,
                clientSocket: String? = nil) {
        self.device = device
        self.nodeIP = nodeIP
        self.gidIndex = gidIndex
        self.pods = pods
        self.map = map
        self.clients = clients
        self.objects = objects
        self.sessionsTotal = sessionsTotal
        self.refusedConnections = refusedConnections
        self.slowClientsDisconnected = slowClientsDisconnected
        self.limits = limits
        self.portActive = portActive
        self.portState = portState
        self.clientSocket = clientSocket
    }
}

/// A pod as the admin API takes it (`pod-add`).
public struct PodSpec: Sendable, Codable, Equatable {
    /// Pod name.
    public var name: String
    /// Namespace.
    public var namespace: String
    /// Pod uid.
    public var uid: String
    /// Virtual IP, dotted quad.
    public var vip: String

    /// A pod to add.
    public init(name: String, namespace: String, uid: String, vip: String) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.vip = vip
    }
}

/// A served pod, as status and `pod-list` report it.
public struct PodStatus: Sendable, Codable, Equatable {
    /// Pod name.
    public var name: String
    /// Namespace ("" for a `--pod` flag).
    public var namespace: String
    /// Pod uid ("" for a `--pod` flag).
    public var uid: String
    /// Virtual IP.
    public var vip: String
    /// The socket its containers connect to.
    public var socket: String
    /// `flag` (declared with --pod) or `admin` (added at runtime).
    public var origin: String
    /// Connected clients now.
    public var clients: Int

    /// Creates the value.
    public init(name: String, namespace: String, uid: String, vip: String, socket: String, origin: String,
                clients: Int) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.vip = vip
        self.socket = socket
        self.origin = origin
        self.clients = clients
    }
}

/// Who a session belongs to, as the router decided it: the pod socket the client connected to and the
/// kernel's peer credentials. Nothing here comes from what the client says.
public struct ClientIdentity: Sendable, Equatable, Codable {
    /// The pod the socket was declared for.
    public var pod: String
    /// The pod's virtual IP.
    public var vip: String
    /// The client process (SO_PEERCRED).
    public var pid: Int32
    /// Its user id.
    public var uid: UInt32

    /// Creates the value.
    public init(pod: String, vip: String, pid: Int32, uid: UInt32) {
        self.pod = pod
        self.vip = vip
        self.pid = pid
        self.uid = uid
    }
}

/// Objects by kind.
public struct ObjectCounts: Sendable, Equatable, Codable {
    /// Protection domains.
    public var pd = 0
    /// Memory regions.
    public var mr = 0
    /// Completion channels.
    public var compChannel = 0
    /// Completion queues.
    public var cq = 0
    /// Queue pairs.
    public var qp = 0
    /// Shared receive queues.
    public var srq = 0
    /// Address handles.
    public var ah = 0
    /// rdma_cm ids (kept by the router's connection manager, docs/rdma-cm.md).
    public var cmID = 0
    /// rdma_cm ids listening.
    public var cmListener = 0

    /// Creates the value.
    public init(pd: Int = 0, mr: Int = 0, compChannel: Int = 0, cq: Int = 0, qp: Int = 0, srq: Int = 0, ah: Int = 0,
                cmID: Int = 0, cmListener: Int = 0) {
        self.pd = pd
        self.mr = mr
        self.compChannel = compChannel
        self.cq = cq
        self.qp = qp
        self.srq = srq
        self.ah = ah
        self.cmID = cmID
        self.cmListener = cmListener
    }

    /// All verbs objects (cm ids are not verbs objects).
    public var total: Int { pd + mr + compChannel + cq + qp + srq + ah }

    /// Adds another set of counts.
    public static func + (a: ObjectCounts, b: ObjectCounts) -> ObjectCounts {
        ObjectCounts(pd: a.pd + b.pd, mr: a.mr + b.mr, compChannel: a.compChannel + b.compChannel, cq: a.cq + b.cq,
                     qp: a.qp + b.qp, srq: a.srq + b.srq, ah: a.ah + b.ah, cmID: a.cmID + b.cmID,
                     cmListener: a.cmListener + b.cmListener)
    }
}

/// Size and revision of a map, as the status shows them.
public struct MapSummary: Sendable, Equatable, Codable {
    /// Number of vip entries.
    public var entries: Int
    /// The revision the map reflects (the etcd revision; for a file, how often it was loaded).
    public var revision: Int64
    /// Where the map comes from.
    public var source: String
    /// Whether the map has been loaded (see ``VipResolver/isReady``); false: still waiting for the first etcd list.
    public var ready: Bool

    /// A summary; a map is ready unless said otherwise.
    public init(entries: Int, revision: Int64, source: String, ready: Bool = true) {
        self.entries = entries
        self.revision = revision
        self.source = source
        self.ready = ready
    }
}
