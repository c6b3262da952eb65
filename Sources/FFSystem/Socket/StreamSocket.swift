#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// A Unix-domain SOCK_STREAM socket for request/response exchanges of any size (the router's admin
/// socket): the client writes one request line, the server writes its answer and closes, the client reads
/// to end of file. Non-blocking; every blocking call takes a deadline, so a peer that stalls costs the
/// caller at most that long.
public final class StreamSocket: UnixDomainSocket {
    private let owned: OwnedDescriptor
    /// The path the socket is bound or connected to, for messages.
    public let path: String

    /// Takes ownership of `fd`; sets O_NONBLOCK.
    public init(adopting fd: Int32, path: String) throws(SystemError) {
        owned = OwnedDescriptor(taking: fd)
        self.path = path
        try Readiness.setNonBlocking(fd)
    }

    /// The descriptor number (-1 once closed).
    public var descriptor: Int32 { owned.rawValue }

    /// Closes the socket.
    public func close() { owned.close() }

    /// SOCK_STREAM.
    public static let socketType = Int32(SOCK_STREAM.rawValue)

    /// Writes all of `bytes` by `deadline` (a `Poll.nowMilliseconds()` value), else ETIMEDOUT.
    public func write(_ bytes: [UInt8], deadline: Int64) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                retryingEINTR {
                    Glibc.send(descriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
            }
            if n > 0 { offset += n; continue }
            guard n < 0, Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK else {
                throw SystemError.last("send", path)
            }
            try wait(for: POLLOUT, until: deadline, doing: "send")
        }
    }

    /// Reads up to the first newline (not included) or end of file, at most `maxBytes`, by `deadline`.
    /// EMSGSIZE when no newline comes within `maxBytes`. Bytes after the newline are not expected (one
    /// request per connection) and are ignored.
    public func readLine(maxBytes: Int, deadline: Int64) throws(SystemError) -> [UInt8] {
        var line: [UInt8] = []
        while true {
            let chunk = try readChunk(deadline: deadline)
            guard let chunk else { return line }
            if let newline = chunk.firstIndex(of: UInt8(ascii: "\n")) {
                line += chunk[..<newline]
                guard line.count <= maxBytes else { break }
                return line
            }
            line += chunk
            guard line.count <= maxBytes else { break }
        }
        throw SystemError(operation: "recv", errno: EMSGSIZE, detail: "\(path): request longer than \(maxBytes) bytes")
    }

    /// Reads until the peer closes, at most `maxBytes` (else EMSGSIZE), by `deadline` (else ETIMEDOUT).
    public func readToEnd(maxBytes: Int, deadline: Int64) throws(SystemError) -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = try readChunk(deadline: deadline) {
            all += chunk
            guard all.count <= maxBytes else {
                throw SystemError(operation: "recv", errno: EMSGSIZE,
                                  detail: "\(path): reply longer than \(maxBytes) bytes")
            }
        }
        return all
    }

    /// Shuts down the sending direction: the peer reads end of file after what was written.
    public func shutdownWrite() { _ = shutdown(descriptor, Int32(SHUT_WR)) }

    /// The next bytes, nil at end of file.
    private func readChunk(deadline: Int64) throws(SystemError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in
                retryingEINTR { recv(descriptor, raw.baseAddress, raw.count, 0) }
            }
            if n > 0 { return Array(buffer.prefix(n)) }
            if n == 0 { return nil }
            guard Glibc.errno == EAGAIN || Glibc.errno == EWOULDBLOCK else { throw SystemError.last("recv", path) }
            try wait(for: POLLIN, until: deadline, doing: "recv")
        }
    }

    private func wait(for event: Int32, until deadline: Int64, doing operation: String) throws(SystemError) {
        let timeout = Poll.timeout(until: deadline)
        guard timeout > 0 else {
            throw SystemError(operation: operation, errno: ETIMEDOUT, detail: "\(path): the peer stalled")
        }
        var pfd = [pollfd(fd: descriptor, events: Int16(event), revents: 0)]
        try Poll.wait(&pfd, timeoutMilliseconds: timeout)
    }
}
