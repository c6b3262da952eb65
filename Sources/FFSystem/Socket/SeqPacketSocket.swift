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

/// What a non-blocking receive found.
public enum Received: Sendable {
    /// A datagram, possibly empty (zero bytes is a message, not end of file, on SOCK_SEQPACKET).
    case datagram(Datagram)
    /// Nothing is waiting (EAGAIN).
    case wouldBlock
    /// The peer closed its end (or shut down writing) and everything it sent has been read.
    case endOfFile

    /// The datagram, if one came.
    public var datagram: Datagram? {
        if case .datagram(let datagram) = self { return datagram }
        return nil
    }
}

/// A Unix-domain SOCK_SEQPACKET socket: message boundaries are kept, so one datagram is one protocol
/// message, and descriptors travel alongside with SCM_RIGHTS (unix(7)). The descriptor is non-blocking;
/// the async calls wait for readiness without holding a thread.
///
/// recvmsg(2) returns 0 both for an empty datagram and at end of file. Every socket sets SO_PASSCRED, so
/// each real datagram, even an empty one, arrives with an SCM_CREDENTIALS control message and end of file
/// is the only 0-byte receive without one.
public final class SeqPacketSocket: UnixDomainSocket {
    private let owned: OwnedDescriptor
    /// The path the socket is bound or connected to, for messages.
    public let path: String

    /// Takes ownership of `fd`; sets O_NONBLOCK and SO_PASSCRED.
    public init(adopting fd: Int32, path: String) throws(SystemError) {
        owned = OwnedDescriptor(taking: fd)
        self.path = path
        try Readiness.setNonBlocking(fd)
        var on: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SystemError.last("setsockopt(SO_PASSCRED)", path)
        }
    }

    /// The descriptor number (-1 once closed).
    public var descriptor: Int32 { owned.rawValue }

    /// Closes the socket; a peer then reads end of file.
    public func close() { owned.close() }

    /// SOCK_SEQPACKET.
    public static let socketType = Int32(SOCK_SEQPACKET.rawValue)

    /// A connected pair (socketpair(2)), for tests and in-process peers.
    public static func pair() throws(SystemError) -> (SeqPacketSocket, SeqPacketSocket) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, socketType | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemError.last("socketpair")
        }
        let first: SeqPacketSocket
        do {
            first = try SeqPacketSocket(adopting: fds[0], path: "socketpair")
        } catch { Glibc.close(fds[1]); throw error }
        return (first, try SeqPacketSocket(adopting: fds[1], path: "socketpair"))
    }

    /// Waits for and accepts the next connection.
    public func nextConnection() async throws -> SeqPacketSocket {
        while true {
            if let connection = try accept() { return connection }
            try await Readiness.readable(descriptor)
        }
    }

    /// Sends one datagram if the socket buffer has room: false when it has not (EAGAIN), the datagram is
    /// then not sent. Never blocks. Other failures (EPIPE: the peer is gone) are thrown.
    public func trySend(_ bytes: [UInt8], descriptors: [Int32] = []) throws(SystemError) -> Bool {
        let controlLength = descriptors.isEmpty ? 0 : cmsgSpace(descriptors.count * MemoryLayout<Int32>.size)
        var control = [UInt8](repeating: 0, count: max(controlLength, 1))
        let sent: Int = bytes.withUnsafeBytes { payload in
            control.withUnsafeMutableBytes { controlBytes in
                var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress),
                                iov_len: payload.count)
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
        if sent >= 0 { return true }
        let code = Glibc.errno
        if code == EAGAIN || code == EWOULDBLOCK { return false }
        throw SystemError(operation: "sendmsg", errno: code, detail: path)
    }

    /// Sends one datagram with `descriptors` attached (SCM_RIGHTS), blocking the calling thread in poll(2)
    /// for at most `waitMilliseconds` while the socket buffer is full, then failing with EAGAIN. For
    /// clients and tests; the router's sessions use `trySend` and their own outbound queue.
    public func send(_ bytes: [UInt8], descriptors: [Int32] = [], waitMilliseconds: Int = 2000) throws(SystemError) {
        let deadline = Poll.nowMilliseconds() + Int64(waitMilliseconds)
        while true {
            if try trySend(bytes, descriptors: descriptors) { return }
            let timeout = Poll.timeout(until: deadline)
            guard timeout > 0 else {
                throw SystemError(operation: "sendmsg", errno: EAGAIN,
                                  detail: "\(path): the peer did not read for \(waitMilliseconds) ms")
            }
            var pfd = [pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)]
            try Poll.wait(&pfd, timeoutMilliseconds: timeout)
        }
    }

    /// Receives one datagram if one is waiting, telling an empty datagram from end of file.
    public func receive(maxBytes: Int = 65536, maxDescriptors: Int = 4) throws(SystemError) -> Received {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let controlLength = cmsgSpace(maxDescriptors * MemoryLayout<Int32>.size)
            + cmsgSpace(MemoryLayout<ffs_ucred>.size)
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
            if Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK { return .wouldBlock }
            throw SystemError.last("recvmsg", path)
        }
        let truncated = flags & Int32(MSG_TRUNC) != 0 || flags & Int32(MSG_CTRUNC) != 0
        // A real datagram always carries SCM_CREDENTIALS (SO_PASSCRED); end of file carries nothing.
        if received == 0 && controlUsed == 0 && !truncated { return .endOfFile }
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
                    let fd = control.withUnsafeBytes {
                        $0.loadUnaligned(fromByteOffset: offset + cmsgLength(0) + i * 4, as: Int32.self)
                    }
                    descriptors.append(OwnedDescriptor(taking: fd))
                }
            }
            offset += cmsgSpace(length - cmsgLength(0))
        }
        return .datagram(Datagram(bytes: Array(buffer.prefix(received)), descriptors: descriptors,
                                  truncated: truncated))
    }

    /// Waits, blocking the calling thread for at most `timeoutMilliseconds`, for the next datagram: nil at
    /// end of file; throws ETIMEDOUT when nothing came in time.
    public func receive(timeoutMilliseconds: Int32, maxBytes: Int = 65536, maxDescriptors: Int = 4) throws(SystemError)
        -> Datagram? {
        let deadline = Poll.nowMilliseconds() + Int64(timeoutMilliseconds)
        while true {
            switch try receive(maxBytes: maxBytes, maxDescriptors: maxDescriptors) {
            case .datagram(let datagram): return datagram
            case .endOfFile: return nil
            case .wouldBlock: break
            }
            let timeout = Poll.timeout(until: deadline)
            guard timeout > 0 else {
                throw SystemError(operation: "recvmsg", errno: ETIMEDOUT,
                                  detail: "\(path): no reply within \(timeoutMilliseconds) ms")
            }
            var pfd = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
            try Poll.wait(&pfd, timeoutMilliseconds: timeout)
        }
    }

    /// Waits for the next datagram; nil at end of file (the peer closed or died).
    public func nextDatagram(maxBytes: Int = 65536, maxDescriptors: Int = 4) async throws -> Datagram? {
        while true {
            switch try receive(maxBytes: maxBytes, maxDescriptors: maxDescriptors) {
            case .datagram(let datagram): return datagram
            case .endOfFile: return nil
            case .wouldBlock: try await Readiness.readable(descriptor)
            }
        }
    }
}

/// CMSG_ALIGN / CMSG_LEN / CMSG_SPACE, which Swift cannot import (they are macros).
private func cmsgAlign(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
private func cmsgLength(_ n: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + n }
private func cmsgSpace(_ n: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + cmsgAlign(n) }
