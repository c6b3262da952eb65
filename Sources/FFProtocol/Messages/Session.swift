/// The first message of every session: the client offers a version range, capabilities and a name.
///
/// The client never claims an identity (vip, GID); the router derives that from the connection's peer
/// credentials and announces it in `HelloReply`.
public struct Hello: WireRequest {
    /// The successful reply's body.
    public typealias Reply = HelloReply
    /// `hello`.
    public static let kind = MessageKind(0x0001, "hello")
    /// Lowest protocol version the client speaks (at least 1).
    public var minVersion: UInt16
    /// Highest protocol version the client speaks.
    public var maxVersion: UInt16
    /// Features the client can use; unknown bits are allowed and ignored by older routers.
    public var capabilities: Capabilities
    /// Free-form client name for logs (e.g. `"ib_write_bw pid 42"`), at most `WireLimits.maxClientNameLength` bytes.
    public var clientName: String

    /// Creates a hello.
    public init(minVersion: UInt16, maxVersion: UInt16, capabilities: Capabilities = [], clientName: String) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.capabilities = capabilities
        self.clientName = clientName
    }

    /// Appends 12 fixed bytes and the name; the range must be non-empty and start at 1 or above.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.bounded(minVersion, 1...UInt16.max, "hello.minVersion")
        try w.bounded(maxVersion, minVersion...UInt16.max, "hello.maxVersion")
        w.u64(capabilities.rawValue)
        try w.string(clientName, max: WireLimits.maxClientNameLength, "hello.clientName")
    }

    /// Reads a hello.
    public init(from r: inout WireReader) throws(WireError) {
        minVersion = try r.bounded(UInt16.self, 1...UInt16.max, "hello.minVersion")
        maxVersion = try r.bounded(UInt16.self, minVersion...UInt16.max, "hello.maxVersion")
        capabilities = Capabilities(rawValue: try r.u64("hello.capabilities"))
        clientName = try r.string(max: WireLimits.maxClientNameLength, "hello.clientName")
    }
}

/// The router's acceptance of a hello: the chosen version, granted capabilities and the session identity.
public struct HelloReply: WireCodable {
    /// The protocol version both sides use from now on (also in every later header).
    public var version: UInt16
    /// Capabilities granted: a subset of those offered and of `Capabilities.known`.
    public var capabilities: Capabilities
    /// Router-assigned session id, unique per router run, for logs and `ffctl`.
    public var sessionID: UInt64
    /// The client's virtual IPv4 address (its pod IP).
    public var vip: IPv4Address
    /// The client's virtual GID, `::ffff:vip`.
    public var gid: GID

    /// Creates a hello reply.
    public init(version: UInt16, capabilities: Capabilities, sessionID: UInt64, vip: IPv4Address, gid: GID) {
        self.version = version
        self.capabilities = capabilities
        self.sessionID = sessionID
        self.vip = vip
        self.gid = gid
    }

    /// Appends 48 bytes.
    public func encode(to w: inout WireWriter) throws(WireError) {
        try w.bounded(version, 1...UInt16.max, "helloReply.version")
        w.reserved(6)
        try w.bits(capabilities.rawValue, allowed: Capabilities.known.rawValue, "helloReply.capabilities")
        w.u64(sessionID)
        try vip.encode(to: &w)
        w.reserved(4)
        try gid.encode(to: &w)
    }

    /// Reads 48 bytes.
    public init(from r: inout WireReader) throws(WireError) {
        version = try r.bounded(UInt16.self, 1...UInt16.max, "helloReply.version")
        try r.reserved(6, "helloReply.reserved")
        capabilities = Capabilities(rawValue: try r.bits(UInt64.self, allowed: Capabilities.known.rawValue, "helloReply.capabilities"))
        sessionID = try r.u64("helloReply.sessionID")
        vip = try IPv4Address(from: &r)
        try r.reserved(4, "helloReply.reserved2")
        gid = try GID(from: &r)
    }
}

/// A failed request: a Linux errno and a human-readable reason. Its layout is frozen for all versions.
public struct ErrorReply: WireCodable, Error, CustomStringConvertible {
    /// Positive Linux errno (see `Errno`), what the client library returns or stores in `errno`.
    public var errno: Int32
    /// Why, for people: names the object, vip or versions involved. At most `WireLimits.maxReasonLength` bytes.
    public var reason: String

    /// Creates an error reply.
    public init(errno: Int32, reason: String) {
        self.errno = errno
        self.reason = reason
    }

    /// Creates an EPROTO reply describing a decode failure, with the reason cut to fit.
    public init(malformed error: WireError) {
        self.init(errno: Errno.protocolError, reason: ErrorReply.fit("malformed message: \(error)"))
    }

    /// Cuts `text` to at most `WireLimits.maxReasonLength` UTF-8 bytes on a character boundary.
    public static func fit(_ text: String) -> String {
        var out = ""
        var used = 0
        for ch in text {
            let n = ch.utf8.count
            guard used + n <= WireLimits.maxReasonLength else { break }
            out.append(ch)
            used += n
        }
        return out
    }

    /// `errno N: reason`.
    public var description: String { "errno \(errno): \(reason)" }

    /// Appends 4 bytes and the reason; errno must be in 1...4095 (the kernel's errno range).
    public func encode(to w: inout WireWriter) throws(WireError) {
        guard (1...4095).contains(errno) else { throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: errno))), field: "error.errno", offset: w.offset) }
        w.i32(errno)
        try w.string(reason, max: WireLimits.maxReasonLength, "error.reason")
    }

    /// Reads an error reply.
    public init(from r: inout WireReader) throws(WireError) {
        let at = r.offset
        errno = try r.i32("error.errno")
        guard (1...4095).contains(errno) else { throw WireError(.valueOutOfRange(UInt64(UInt32(bitPattern: errno))), field: "error.errno", offset: at) }
        reason = try r.string(max: WireLimits.maxReasonLength, "error.reason")
    }
}

/// The Linux errno values the protocol uses (x86-64 and arm64 share them), without importing Glibc.
public enum Errno {
    /// `EPERM`: operation not permitted for this session.
    public static let notPermitted: Int32 = 1
    /// `ENOENT`: no such port or GID index.
    public static let noEntry: Int32 = 2
    /// `EBADF`: unknown handle, or a handle of another session.
    public static let badHandle: Int32 = 9
    /// `EAGAIN`: queue full, try again.
    public static let tryAgain: Int32 = 11
    /// `ENOMEM`: out of memory or device resources.
    public static let outOfMemory: Int32 = 12
    /// `EACCES`: access denied.
    public static let accessDenied: Int32 = 13
    /// `EBUSY`: object still in use (e.g. PD with MRs).
    public static let busy: Int32 = 16
    /// `EINVAL`: well-formed but invalid request (e.g. bad QP transition).
    public static let invalidArgument: Int32 = 22
    /// `EMFILE`: the session holds as many router descriptors as it may.
    public static let tooManyDescriptors: Int32 = 24
    /// `EPROTO`: malformed message, or a request out of order (before hello).
    public static let protocolError: Int32 = 71
    /// `EOVERFLOW`: an address, offset or length whose sum does not fit 64 bits.
    public static let overflow: Int32 = 75
    /// `EPROTONOSUPPORT`: no common protocol version.
    public static let protocolNotSupported: Int32 = 93
    /// `EOPNOTSUPP`: the router does not implement this operation.
    public static let notSupported: Int32 = 95
    /// `EADDRINUSE`: the port is taken (rdma_cm bind, listen).
    public static let addressInUse: Int32 = 98
    /// `EADDRNOTAVAIL`: not an address of the pod (rdma_cm bind, resolve).
    public static let addressNotAvailable: Int32 = 99
    /// `ETIMEDOUT`: no answer in time (the status of an rdma_cm event).
    public static let timedOut: Int32 = 110
    /// `ECONNREFUSED`: nobody listens there (the status of an rdma_cm event).
    public static let connectionRefused: Int32 = 111
    /// `EHOSTUNREACH`: destination vip unknown to the router.
    public static let hostUnreachable: Int32 = 113
}
