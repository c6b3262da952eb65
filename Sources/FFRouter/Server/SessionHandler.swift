import FFProtocol
import FFRouterAPI
import FFSystem

/// The request logic of one connection, as the router's I/O layer drives it; `Session` is the real one.
protocol SessionHandler: AnyObject {
    /// Answers one datagram; never throws (every failure is an error reply).
    func handle(_ datagram: Datagram) -> Reply
    /// Destroys everything the session owns (called exactly once, on the session's own thread/executor).
    func close()
    /// Objects, requests and errors so far, for status.
    var counters: SessionCounters { get }
}

/// What a session reports for status.
struct SessionCounters: Sendable {
    var objects: ObjectCounts
    var requests: UInt64
    var errors: UInt64
}

/// What the router knows about a new connection when it makes its session handler.
struct SessionContext: Sendable {
    /// Session id, unique within this router's run.
    var id: UInt64
    /// Pod (by the socket it came in on) and the kernel's peer credentials.
    var identity: ClientIdentity
    /// The pod's vip.
    var vip: IPv4Address
    /// The pod it belongs to.
    var pod: PodDeclaration
}

/// What the router's I/O layer needs to know about its device: for status, health and logs. Built from a
/// `NodeDevice` in production, by hand in host tests.
struct DeviceDescription: Sendable {
    /// Device name, e.g. rxe0.
    var name: String
    /// The node's IP.
    var nodeIP: IPv4Address
    /// GID table index of the node IP.
    var gidIndex: Int
    /// Whether the port can serve clients now, and a line saying why.
    var portHealth: @Sendable () -> (healthy: Bool, detail: String)
}
