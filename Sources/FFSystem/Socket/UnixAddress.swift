#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// Unix-domain socket plumbing shared by the SEQPACKET and the stream sockets: addresses, binding a
/// listener, connecting.
enum UnixSocket {
    /// `path` as a `sockaddr_un` and its length; ENAMETOOLONG when it does not fit `sun_path`.
    static func address(_ path: String) throws(SystemError) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemError(operation: "sockaddr_un", errno: ENAMETOOLONG,
                              detail: "socket path must be 1..\(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        return (addr, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }

    /// A new close-on-exec Unix socket of `type` (SOCK_SEQPACKET, SOCK_STREAM).
    static func make(_ type: Int32, _ path: String) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.last("socket(AF_UNIX)", path) }
        return fd
    }

    /// Binds `fd` at `path` (replacing a stale socket file left there), sets the file mode and listens.
    static func bindAndListen(_ fd: Int32, path: String, backlog: Int32, mode: mode_t) throws(SystemError) {
        var (addr, length) = try address(path)
        var st = stat()
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw SystemError.last("bind", path) }
        guard chmod(path, mode) == 0 else { throw SystemError.last("chmod", path) }
        guard Glibc.listen(fd, backlog) == 0 else { throw SystemError.last("listen", path) }
    }

    /// Connects `fd` to the listener at `path`. A Unix-socket connect completes at once or fails; EAGAIN
    /// means the listener's backlog is full.
    static func connect(_ fd: Int32, path: String) throws(SystemError) {
        var (addr, length) = try address(path)
        let rc = retryingEINTR {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
            }
        }
        guard rc == 0 else { throw SystemError.last("connect", path) }
    }

    /// accept4(2) with close-on-exec: the descriptor, nil when nothing is pending (EAGAIN); errors
    /// (EMFILE, ENFILE, ...) are thrown with their errno so that a caller can shed load.
    static func accept(_ listener: Int32, path: String) throws(SystemError) -> Int32? {
        let fd = retryingEINTR { accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) }
        if fd < 0 {
            if Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK { return nil }
            throw SystemError.last("accept", path)
        }
        return fd
    }

    /// The peer's pid, uid and gid (SO_PEERCRED).
    static func peerCredentials(_ fd: Int32, path: String) throws(SystemError) -> PeerCredentials {
        var cred = ffs_ucred()
        var length = socklen_t(MemoryLayout<ffs_ucred>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else {
            throw SystemError.last("getsockopt(SO_PEERCRED)", path)
        }
        return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
    }
}

/// What the SEQPACKET and stream sockets share: a non-blocking descriptor bound or connected to a path,
/// created by listening, connecting or accepting.
public protocol UnixDomainSocket: Sendable {
    /// SOCK_SEQPACKET or SOCK_STREAM.
    static var socketType: Int32 { get }
    /// Takes ownership of `fd`, a Unix socket of `socketType` bound, connected or accepted at `path`, and
    /// makes it non-blocking.
    init(adopting fd: Int32, path: String) throws(SystemError)
    /// The descriptor number (-1 once closed).
    var descriptor: Int32 { get }
    /// The path the socket is bound or connected to, for messages.
    var path: String { get }
}

extension UnixDomainSocket {
    /// Binds and listens at `path`, replacing a stale socket file left there, with the file mode `mode`.
    public static func listen(path: String, backlog: Int32 = 64, mode: mode_t = 0o660) throws(SystemError) -> Self {
        let socket = try Self(adopting: try UnixSocket.make(socketType, path), path: path)
        try UnixSocket.bindAndListen(socket.descriptor, path: path, backlog: backlog, mode: mode)
        return socket
    }

    /// Connects to the listening socket at `path`.
    public static func connect(path: String) throws(SystemError) -> Self {
        let socket = try Self(adopting: try UnixSocket.make(socketType, path), path: path)
        try UnixSocket.connect(socket.descriptor, path: path)
        return socket
    }

    /// Accepts one pending connection; nil when none is pending. EMFILE/ENFILE are thrown as they are so
    /// that a server can shed the connection (`DescriptorReserve.shed`).
    public func accept() throws(SystemError) -> Self? {
        guard let fd = try UnixSocket.accept(descriptor, path: path) else { return nil }
        return try Self(adopting: fd, path: path)
    }

    /// The peer's pid, uid and gid (SO_PEERCRED), as the kernel saw them at connect time.
    public func peerCredentials() throws(SystemError) -> PeerCredentials {
        try UnixSocket.peerCredentials(descriptor, path: path)
    }
}
