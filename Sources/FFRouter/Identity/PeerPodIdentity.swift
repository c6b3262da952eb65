import FFProtocol
import FFSystem
import Foundation

/// The shared client socket: one socket for every pod of the node (the device plugin mounts it into each container that
/// gets a device), whose connections the router tells apart from the node's side (`--client-socket`, `--proc-root`).
public struct ClientSocketOptions: Sendable {
    /// The socket's path.
    public var path: String
    /// Where the node's processes are: `/proc` when the router shares the host's pid namespace (hostPID); a fake folder
    /// of `PID/cgroup` files in tests.
    public var procRoot: String
    /// Where pods are looked up by UID: the etcd map.
    public var directory: any PodDirectory
    /// How often connected pods are checked against the map for pods that left it, in milliseconds (only when the
    /// map's revision moved).
    public var checkIntervalMilliseconds: Int

    /// A client socket at `path`, identifying through `procRoot` and `directory`.
    public init(path: String, procRoot: String = "/proc", directory: any PodDirectory, checkIntervalMilliseconds: Int = 500) {
        self.path = path
        self.procRoot = procRoot
        self.directory = directory
        self.checkIntervalMilliseconds = checkIntervalMilliseconds
    }
}

/// Why a connection on the client socket is not served: the errno and reason its hello is answered with.
struct IdentityRefusal: Error, Sendable, CustomStringConvertible {
    var errno: Int32
    var reason: String
    var description: String { reason }
}

/// Peer credentials → `<proc root>/PID/cgroup` → pod UID → the pod's vip on this node in the map.
struct PeerPodIdentity: Sendable {
    let procRoot: String
    let directory: any PodDirectory
    let nodeIP: IPv4Address

    /// A cgroup file is a few hundred bytes (v1: one line per hierarchy); anything past this is not one.
    static let maxCgroupFileBytes = 64 * 1024

    /// The pod the process with `credentials` belongs to.
    func identify(_ credentials: PeerCredentials) -> Result<PodDeclaration, IdentityRefusal> {
        guard credentials.pid > 0 else {
            return .failure(IdentityRefusal(errno: EACCES, reason: "the kernel gave no pid for this client: it runs in a pid namespace the router "
                                            + "cannot see (the router needs the host's pid namespace, hostPID)"))
        }
        let path = "\(procRoot)/\(credentials.pid)/cgroup"
        let text: String
        switch Self.read(path) {
        case .success(let content): text = content
        case .failure(let error):
            let why = error.errno == ENOENT ? "no \(path): the process has exited, or \(procRoot) is not the node's /proc" : "\(error)"
            return .failure(IdentityRefusal(errno: EACCES, reason: "cannot tell which pod pid \(credentials.pid) belongs to: \(why)"))
        }
        let uid: String
        switch PodCgroup.podUID(cgroupFile: text) {
        case .success(let found): uid = found
        case .failure(let error): return .failure(IdentityRefusal(errno: EACCES, reason: "pid \(credentials.pid) is not in a pod: \(error)"))
        }
        switch directory.localPod(uid: uid, nodeIP: nodeIP) {
        case .found(let pod): return .success(pod)
        case .notListed: return .failure(IdentityRefusal(errno: EAGAIN, reason: "the vip map is not loaded yet; try again"))
        case .absent(let why): return .failure(IdentityRefusal(errno: EACCES, reason: "pid \(credentials.pid) is in pod uid \(uid), which has no vip here: \(why)"))
        }
    }

    /// The file's text, at most `maxCgroupFileBytes`.
    static func read(_ path: String) -> Result<String, SystemError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(SystemError(operation: "open", errno: errno, detail: path)) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maxCgroupFileBytes)
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(SystemError(operation: "read", errno: errno, detail: path))
            }
            if count == 0 { break }
            filled += count
        }
        return .success(String(decoding: bytes[..<filled], as: UTF8.self))
    }
}
