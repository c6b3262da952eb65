import FFClient
import FFProtocol
import FFSystem
import Glibc

/// One ibv_context's session with the router: the control connection and the data path posts and polls
/// go through. The C layer holds it as an opaque pointer (`Unmanaged`, retained until ibv_close_device).
final class ShimSession {
    let connection: RouterConnection
    let dataPath: any ShimDataPath
    /// The shared-memory rings, when the router granted them and `FFCLIENT_FASTPATH` is not 0.
    let rings: RingDataPath?

    init(path: String, name: String) throws(ClientError) {
        connection = try RouterConnection(path: path, name: name,
            capabilities: RingDataPath.wanted ? [.memorySegments, .sharedMemoryRings] : [.memorySegments])
        if connection.session.capabilities.contains(.sharedMemoryRings) {
            let rings: RingDataPath
            do throws(ClientError) {
                rings = try RingDataPath(connection: connection)
            } catch {
                connection.close()
                throw error
            }
            self.rings = rings
            dataPath = rings
        } else {
            rings = nil
            dataPath = SocketDataPath(connection: connection)
        }
    }

    /// The session behind the C layer's opaque pointer: one `open` made and `close` has not released, or
    /// nil, which the C layer passes for a context a forked child inherited.
    static func from(_ pointer: UnsafeMutableRawPointer?) -> ShimSession? {
        pointer.map { Unmanaged<ShimSession>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// FFCLIENT_DEBUG=1: every failed call says why on stderr (a verbs call can only return an errno).
private let debugging: Bool = {
    guard let value = getenv("FFCLIENT_DEBUG") else { return false }
    return String(cString: value) == "1"
}()

/// Runs a bridge call: 0, or the errno of the router's refusal or the transport's failure.
func errnoOf(_ body: () throws(ClientError) -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch {
        if debugging {
            // One write(2) per line, so lines of several threads do not interleave; no stdio state.
            let line = Array("libffclient: \(error)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        return error.errno
    }
}

/// Runs a bridge call on the session behind `pointer`; EPERM for a context inherited across fork.
func withSession(_ pointer: UnsafeMutableRawPointer?, _ body: (ShimSession) throws(ClientError) -> Void) -> Int32 {
    guard let session = ShimSession.from(pointer) else { return Errno.notPermitted }
    return errnoOf { () throws(ClientError) in try body(session) }
}

/// Runs a data-path call on the session behind `pointer`; EPERM for a context inherited across fork.
func onDataPath(_ pointer: UnsafeMutableRawPointer?, _ body: (any ShimDataPath) -> Int32) -> Int32 {
    guard let session = ShimSession.from(pointer) else { return Errno.notPermitted }
    return body(session.dataPath)
}

/// A short reason for people: the failed call and strerror, without repeating the path the C layer prints.
func reasonOf(_ error: ClientError) -> String {
    switch error {
    case .transport(let system): "\(system.operation): \(String(cString: strerror(system.errno)))"
    case .router(let reply): "router refused: \(reply.reason)"
    case .protocolViolation(let what): "protocol violation: \(what)"
    }
}

/// Copies `text` into a C buffer of `size` bytes, cut to fit, always NUL-terminated.
func copyReason(_ text: String, to buffer: UnsafeMutablePointer<CChar>?, size: Int) {
    guard let buffer, size > 0 else { return }
    let bytes = Array(text.utf8.prefix(size - 1))
    for (i, byte) in bytes.enumerated() { buffer[i] = CChar(bitPattern: byte) }
    buffer[bytes.count] = 0
}

/// EINVAL, as the error a verbs call reports for an argument the protocol cannot carry.
func invalid(_ what: String) -> ClientError {
    .router(ErrorReply(errno: Errno.invalidArgument, reason: what))
}
