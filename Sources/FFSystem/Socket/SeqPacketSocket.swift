#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// Who is on the other end of a Unix socket (SO_PEERCRED), as the kernel saw it at connect time.
public struct PeerCredentials: Hashable, Sendable {
    /// Process id.
    public var pid: Int32
    /// User id.
    public var uid: UInt32
    /// Group id.
    public var gid: UInt32

    /// Credentials of process `pid` running as `uid`/`gid`.
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// One received datagram and the descriptors that came with it (SCM_RIGHTS).
public struct Datagram: Sendable {
    /// The payload.
    public var bytes: [UInt8]
    /// Descriptors received; owned by the receiver.
    public var descriptors: [OwnedDescriptor]
    /// The datagram was larger than the buffer (MSG_TRUNC) or descriptors were dropped (MSG_CTRUNC).
    public var truncated: Bool

    /// A datagram as `receive` returns it (also for in-process peers and tests).
    public init(bytes: [UInt8], descriptors: [OwnedDescriptor], truncated: Bool) {
        self.bytes = bytes
        self.descriptors = descriptors
        self.truncated = truncated
    }
}

/// A Unix-domain SOCK_SEQPACKET socket: message boundaries are kept, so one datagram is one protocol
/// message, and descriptors travel alongside with SCM_RIGHTS (unix(7)). The descriptor is non-blocking;
/// the async calls wait for readiness without holding a thread.
public final class SeqPacketSocket: Sendable {
    private let owned: OwnedDescriptor
    /// The path the socket is bound or connected to, for messages.
    public let path: String

    private init(fd: Int32, path: String) throws(SystemError) {
        owned = OwnedDescriptor(taking: fd)
        self.path = path
        try Readiness.setNonBlocking(fd)
    }

    /// The descriptor number (-1 once closed).
    public var descriptor: Int32 { owned.rawValue }

    /// Closes the socket; a peer then reads end of file.
    public func close() { owned.close() }

    private static func makeAddress(_ path: String) throws(SystemError) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemError(operation: "sockaddr_un", errno: ENAMETOOLONG, detail: "socket path must be 1..\(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        return (addr, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }

    private static func newSocket(_ path: String) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.last("socket(AF_UNIX, SOCK_SEQPACKET)", path) }
        return fd
    }

    /// Binds and listens at `path`, replacing a stale socket file left there, with the file mode `mode`.
    public static func listen(path: String, backlog: Int32 = 64, mode: mode_t = 0o660) throws(SystemError) -> SeqPacketSocket {
        var (addr, length) = try makeAddress(path)
        let fd = try newSocket(path)
        let socket = try SeqPacketSocket(fd: fd, path: path)
        var st = stat()
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw SystemError.last("bind", path) }
        guard chmod(path, mode) == 0 else { throw SystemError.last("chmod", path) }
        guard Glibc.listen(fd, backlog) == 0 else { throw SystemError.last("listen", path) }
        _ = length
        return socket
    }

    /// Connects to the listening socket at `path`.
    public static func connect(path: String) throws(SystemError) -> SeqPacketSocket {
        var (addr, length) = try makeAddress(path)
        let fd = try newSocket(path)
        let socket = try SeqPacketSocket(fd: fd, path: path)
        let rc = retryingEINTR {
            withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
        }
        // A Unix-socket connect completes at once or fails; EAGAIN means the backlog is full.
        guard rc == 0 else { throw SystemError.last("connect", path) }
        return socket
    }

    /// A connected pair (socketpair(2)), for tests and in-process peers.
    public static func pair() throws(SystemError) -> (SeqPacketSocket, SeqPacketSocket) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemError.last("socketpair")
        }
        return (try SeqPacketSocket(fd: fds[0], path: "socketpair"), try SeqPacketSocket(fd: fds[1], path: "socketpair"))
    }

    /// Accepts one pending connection; nil when none is pending.
    public func accept() throws(SystemError) -> SeqPacketSocket? {
        let fd = retryingEINTR { accept4(descriptor, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) }
        if fd < 0 {
            if Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK { return nil }
            throw SystemError.last("accept", path)
        }
        return try SeqPacketSocket(fd: fd, path: path)
    }

    /// Waits for and accepts the next connection.
    public func nextConnection() async throws -> SeqPacketSocket {
        while true {
            if let connection = try accept() { return connection }
            try await Readiness.readable(descriptor)
        }
    }

    /// The peer's pid, uid and gid (SO_PEERCRED).
    public func peerCredentials() throws(SystemError) -> PeerCredentials {
        var cred = ffs_ucred()
        var length = socklen_t(MemoryLayout<ffs_ucred>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else {
            throw SystemError.last("getsockopt(SO_PEERCRED)", path)
        }
        return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
    }

    /// Sends one datagram with `descriptors` attached (SCM_RIGHTS). A full socket buffer is retried for up to
    /// `waitMilliseconds` (the peer is a local process reading its replies), then fails with EAGAIN.
    public func send(_ bytes: [UInt8], descriptors: [Int32] = [], waitMilliseconds: Int = 2000) throws(SystemError) {
        let controlLength = descriptors.isEmpty ? 0 : cmsgSpace(descriptors.count * MemoryLayout<Int32>.size)
        var control = [UInt8](repeating: 0, count: max(controlLength, 1))
        var attempts = 0
        while true {
            let sent: Int = bytes.withUnsafeBytes { payload in
                control.withUnsafeMutableBytes { controlBytes in
                    var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)
                    return withUnsafeMutablePointer(to: &iov) { iovPointer in
                        var message = msghdr()
                        message.msg_iov = iovPointer
                        message.msg_iovlen = 1
                        if controlLength > 0 {
                            message.msg_control = controlBytes.baseAddress
                            message.msg_controllen = controlLength
                            let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                            header.pointee.cmsg_level = SOL_SOCKET
                            header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                            header.pointee.cmsg_len = cmsgLength(descriptors.count * MemoryLayout<Int32>.size)
                            let data = controlBytes.baseAddress! + cmsgLength(0)
                            descriptors.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                        }
                        return retryingEINTR { sendmsg(descriptor, &message, Int32(MSG_NOSIGNAL)) }
                    }
                }
            }
            if sent >= 0 { return }
            let code = Glibc.errno
            if (code == EAGAIN || code == EWOULDBLOCK) && attempts < waitMilliseconds {
                attempts += 1
                usleep(1000)
                continue
            }
            throw SystemError(operation: "sendmsg", errno: code, detail: path)
        }
    }

    /// Receives one datagram if one is waiting: nil when none is (EAGAIN); an empty datagram with no
    /// descriptors at end of file.
    public func receive(maxBytes: Int = 65536, maxDescriptors: Int = 4) throws(SystemError) -> Datagram? {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let controlLength = cmsgSpace(maxDescriptors * MemoryLayout<Int32>.size)
        var control = [UInt8](repeating: 0, count: controlLength)
        var flags: Int32 = 0
        var controlUsed = 0
        let received: Int = buffer.withUnsafeMutableBytes { payload in
            control.withUnsafeMutableBytes { controlBytes in
                var iov = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlLength
                    let n = retryingEINTR { recvmsg(descriptor, &message, Int32(MSG_CMSG_CLOEXEC)) }
                    flags = message.msg_flags
                    controlUsed = Int(message.msg_controllen)
                    return n
                }
            }
        }
        if received < 0 {
            if Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK { return nil }
            throw SystemError.last("recvmsg", path)
        }
        var descriptors: [OwnedDescriptor] = []
        var offset = 0
        while offset + cmsgLength(0) <= controlUsed {
            let (level, type, length) = control.withUnsafeBytes { raw -> (Int32, Int32, Int) in
                let header = raw.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
                return (header.cmsg_level, header.cmsg_type, Int(header.cmsg_len))
            }
            guard length >= cmsgLength(0), offset + length <= controlUsed else { break }
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                let count = (length - cmsgLength(0)) / MemoryLayout<Int32>.size
                for i in 0..<count {
                    let fd = control.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + cmsgLength(0) + i * 4, as: Int32.self) }
                    descriptors.append(OwnedDescriptor(taking: fd))
                }
            }
            offset += cmsgSpace(length - cmsgLength(0))
        }
        let truncated = flags & Int32(MSG_TRUNC) != 0 || flags & Int32(MSG_CTRUNC) != 0
        return Datagram(bytes: Array(buffer.prefix(received)), descriptors: descriptors, truncated: truncated)
    }

    /// Waits, blocking the calling thread for at most `timeoutMilliseconds`, for the next datagram: nil at
    /// end of file; throws ETIMEDOUT when nothing came in time.
    public func receive(timeoutMilliseconds: Int32, maxBytes: Int = 65536, maxDescriptors: Int = 4) throws(SystemError) -> Datagram? {
        var remaining = timeoutMilliseconds
        while true {
            if let datagram = try receive(maxBytes: maxBytes, maxDescriptors: maxDescriptors) {
                return datagram.bytes.isEmpty && datagram.descriptors.isEmpty && !datagram.truncated ? nil : datagram
            }
            var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let started = monotonicMilliseconds()
            let rc = poll(&pfd, 1, remaining)
            if rc < 0 && Glibc.errno != EINTR { throw SystemError.last("poll", path) }
            if rc == 0 { throw SystemError(operation: "recvmsg", errno: ETIMEDOUT, detail: "\(path): no reply within \(timeoutMilliseconds) ms") }
            remaining = max(0, remaining - Int32(clamping: monotonicMilliseconds() - started))
        }
    }

    /// Waits for the next datagram; nil at end of file (the peer closed or died).
    public func nextDatagram(maxBytes: Int = 65536, maxDescriptors: Int = 4) async throws -> Datagram? {
        while true {
            if let datagram = try receive(maxBytes: maxBytes, maxDescriptors: maxDescriptors) {
                return datagram.bytes.isEmpty && datagram.descriptors.isEmpty && !datagram.truncated ? nil : datagram
            }
            try await Readiness.readable(descriptor)
        }
    }
}

private func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// CMSG_ALIGN / CMSG_LEN / CMSG_SPACE, which Swift cannot import (they are macros).
private func cmsgAlign(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
private func cmsgLength(_ n: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + n }
private func cmsgSpace(_ n: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + cmsgAlign(n) }
