import FFProtocol
import FFRouterAPI
import Foundation

/// A pod the router serves: its name, its vip, and the socket its containers connect to. Identity comes
/// from which socket a client connected to (the deployment mounts only a pod's own socket into it).
///
/// Pods declared with `--pod NAME=VIP` have no namespace or uid and their socket is `<socket dir>/NAME.sock`.
/// Pods added at runtime through the admin API carry their Kubernetes namespace and uid, and their socket is
/// `<socket dir>/pod-<uid>.sock`: the uid is unique across namespaces and across a pod deleted and created
/// again under the same name, and it always fits a socket path.
public struct PodDeclaration: Sendable, Equatable {
    /// Pod name.
    public var name: String
    /// Kubernetes namespace ("" for a `--pod` flag).
    public var namespace: String
    /// Kubernetes pod uid ("" for a `--pod` flag).
    public var uid: String
    /// The pod's virtual IP.
    public var vip: IPv4Address

    /// Parses `NAME=VIP`.
    public init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[0].contains("/"), let vip = IPv4Address(parts[1]) else { return nil }
        self.init(name: parts[0], vip: vip)
    }

    /// A pod `name` with `vip`, as a `--pod` flag declares it.
    public init(name: String, vip: IPv4Address) {
        self.init(name: name, namespace: "", uid: "", vip: vip)
    }

    /// A Kubernetes pod, as the admin API adds it.
    public init(name: String, namespace: String, uid: String, vip: IPv4Address) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.vip = vip
    }

    /// The key the router files it under and `pod remove` names it by: the uid, or the name of a `--pod` pod.
    public var key: String { uid.isEmpty ? name : uid }

    /// `namespace/name`, or the name of a `--pod` pod: what logs and client identities show.
    public var displayName: String { namespace.isEmpty ? name : "\(namespace)/\(name)" }

    /// The socket file's name inside the socket folder.
    public var socketName: String { uid.isEmpty ? "\(name).sock" : "pod-\(uid).sock" }

    /// Checks a pod given through the admin API: Kubernetes-shaped names (letters, digits, `-`, `.`, at
    /// most 253 bytes; a namespace at most 63) and a uid of letters, digits and `-` (at most 64), so that
    /// nothing a caller sends can escape the socket folder or overflow a socket path.
    static func validated(_ spec: PodSpec) throws(AdminFailure) -> PodDeclaration {
        func check(_ value: String, _ field: String, max: Int, allowed: (UInt8) -> Bool) throws(AdminFailure) {
            let bytes = Array(value.utf8)
            guard !bytes.isEmpty, bytes.count <= max, bytes.allSatisfy(allowed), value != ".", value != ".." else {
                throw AdminFailure(errno: EINVAL, "pod \(field) \"\(value)\" must be 1-\(max) letters, digits, '-'\(field == "uid" ? "" : " or '.'")")
            }
        }
        let nameByte: (UInt8) -> Bool = { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
        try check(spec.name, "name", max: 253, allowed: nameByte)
        try check(spec.namespace, "namespace", max: 63, allowed: nameByte)
        try check(spec.uid, "uid", max: 64) { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") }
        guard let vip = IPv4Address(spec.vip) else { throw AdminFailure(errno: EINVAL, "pod vip \"\(spec.vip)\" is not an IPv4 address") }
        return PodDeclaration(name: spec.name, namespace: spec.namespace, uid: spec.uid, vip: vip)
    }
}

extension UInt8 {
    fileprivate var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}

