import FFProtocol

/// The pods the map publishes, by UID: how the router learns which pod a process on the shared client socket belongs to
/// (docs/router.md, "Who a client is"). The etcd map carries each pod's UID; a map file has none.
public protocol PodDirectory: Sendable {
    /// The pod with `uid` if the map publishes it on the node whose physical IP is `nodeIP`.
    func localPod(uid: String, nodeIP: IPv4Address) -> PodLookup
    /// Changes whenever the map does: connected pods need checking again only after it moved.
    var revision: Int64 { get }
}

/// What the map says about a pod UID on this node.
public enum PodLookup: Sendable, Equatable {
    /// The map has not been listed yet: nothing can be said.
    case notListed
    /// The pod, with its IPv4 vip on this node.
    case found(PodDeclaration)
    /// No IPv4 vip of that pod on this node; the reason says what the map has instead.
    case absent(String)
}

extension EtcdVipMap: PodDirectory {
    /// See `PodDirectory`: the pod's entry whose vip is IPv4 and whose `pip` is `nodeIP`.
    public func localPod(uid: String, nodeIP: IPv4Address) -> PodLookup {
        guard mirror.isReady else { return .notListed }
        let entries = mirror.snapshot.entries(podUID: uid)
        guard let any = entries.first else { return .absent("the map has no vip for pod uid \(uid)") }
        for entry in entries where IPv4Address(entry.pip) == nodeIP {
            if let vip = IPv4Address(entry.vip) {
                return .found(PodDeclaration(name: entry.pod, namespace: entry.namespace, uid: uid, vip: vip))
            }
        }
        return .absent("pod \(any.namespace)/\(any.pod) (uid \(uid)) has vip \(any.vip) on node \(any.node) (\(any.pip)), not on this node (\(nodeIP))")
    }

    /// See `PodDirectory`.
    public var revision: Int64 { mirror.snapshot.revision }
}
