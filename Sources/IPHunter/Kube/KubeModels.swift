/// The parts of Kubernetes objects the IP hunter reads (core/v1 Pod and Node). Unknown fields are
/// ignored, missing ones are optional, as the API omits empty fields.

/// `metadata` of any object.
public struct ObjectMeta: Codable, Sendable, Hashable {
    /// Object name.
    public var name: String
    /// Namespace; nil for cluster-scoped objects (nodes).
    public var namespace: String?
    /// Unique ID of this incarnation of the object.
    public var uid: String?
    /// Opaque version used to resume watches.
    public var resourceVersion: String?
    /// RFC 3339 creation time.
    public var creationTimestamp: String?
    /// Set when deletion was requested.
    public var deletionTimestamp: String?
    /// Labels.
    public var labels: [String: String]?

    /// Makes metadata.
    public init(name: String, namespace: String? = nil, uid: String? = nil, resourceVersion: String? = nil,
                creationTimestamp: String? = nil, labels: [String: String]? = nil) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.creationTimestamp = creationTimestamp
        self.labels = labels
    }
}

/// `metadata` of a list.
public struct ListMeta: Codable, Sendable {
    /// The collection's resource version: watch from here.
    public var resourceVersion: String?
    /// Token for the next page, when the list was limited.
    public var `continue`: String?
    /// Makes list metadata.
    public init(resourceVersion: String?, continue: String? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
    }
}

/// A core/v1 Pod.
public struct Pod: Codable, Sendable, Hashable {
    /// Pod spec fields the hunter needs.
    public struct Spec: Codable, Sendable, Hashable {
        /// Node the pod is bound to.
        public var nodeName: String?
        /// True for pods in the host's network namespace (their IP is the node's).
        public var hostNetwork: Bool?
        /// Makes a spec.
        public init(nodeName: String? = nil, hostNetwork: Bool? = nil) {
            self.nodeName = nodeName
            self.hostNetwork = hostNetwork
        }
    }
    /// One of the pod's IPs.
    public struct PodIP: Codable, Sendable, Hashable {
        /// The address.
        public var ip: String
        /// Makes a pod IP.
        public init(ip: String) { self.ip = ip }
    }
    /// Pod status fields the hunter needs.
    public struct Status: Codable, Sendable, Hashable {
        /// Pending, Running, Succeeded, Failed, Unknown.
        public var phase: String?
        /// Primary pod IP.
        public var podIP: String?
        /// All pod IPs (dual stack).
        public var podIPs: [PodIP]?
        /// IP of the node as the kubelet reports it.
        public var hostIP: String?
        /// Makes a status.
        public init(phase: String? = nil, podIP: String? = nil, podIPs: [PodIP]? = nil, hostIP: String? = nil) {
            self.phase = phase
            self.podIP = podIP
            self.podIPs = podIPs
            self.hostIP = hostIP
        }
    }

    /// Metadata.
    public var metadata: ObjectMeta
    /// Spec.
    public var spec: Spec?
    /// Status.
    public var status: Status?

    /// Makes a pod.
    public init(metadata: ObjectMeta, spec: Spec? = nil, status: Status? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    /// "namespace/name", the key pods are tracked by.
    public var key: String { "\(metadata.namespace ?? "")/\(metadata.name)" }

    /// The pod's IPs, primary first, without duplicates.
    public var ips: [String] {
        var result: [String] = []
        if let ip = status?.podIP, !ip.isEmpty { result.append(ip) }
        for ip in status?.podIPs ?? [] where !ip.ip.isEmpty && !result.contains(ip.ip) { result.append(ip.ip) }
        return result
    }

    /// Whether the pod belongs in the map: it has an IP of its own and has not finished.
    public var isPublishable: Bool {
        if spec?.hostNetwork == true { return false }
        if let phase = status?.phase, phase == "Succeeded" || phase == "Failed" { return false }
        guard let node = spec?.nodeName, !node.isEmpty else { return false }
        return !ips.isEmpty
    }
}

/// A core/v1 Node.
public struct Node: Codable, Sendable, Hashable {
    /// One address of the node.
    public struct Address: Codable, Sendable, Hashable {
        /// InternalIP, ExternalIP, Hostname, ...
        public var type: String
        /// The address.
        public var address: String
        /// Makes an address.
        public init(type: String, address: String) {
            self.type = type
            self.address = address
        }
    }
    /// Node status fields the hunter needs.
    public struct Status: Codable, Sendable, Hashable {
        /// The node's addresses.
        public var addresses: [Address]?
        /// Makes a status.
        public init(addresses: [Address]? = nil) { self.addresses = addresses }
    }

    /// Metadata.
    public var metadata: ObjectMeta
    /// Status.
    public var status: Status?

    /// Makes a node.
    public init(metadata: ObjectMeta, status: Status? = nil) {
        self.metadata = metadata
        self.status = status
    }

    /// The IP routers reach this node at: InternalIP, else ExternalIP.
    public var physicalIP: String? {
        let addresses = status?.addresses ?? []
        return addresses.first {
            $0.type == "InternalIP"
        }?.address ?? addresses.first { $0.type == "ExternalIP" }?.address
    }
}

/// A list reply (`PodList`, `NodeList`).
public struct KubeList<Item: Codable & Sendable>: Codable, Sendable {
    /// Kind, e.g. PodList.
    public var kind: String?
    /// apiVersion, "v1".
    public var apiVersion: String?
    /// List metadata.
    public var metadata: ListMeta
    /// The items.
    public var items: [Item]
    /// Makes a list.
    public init(kind: String?, apiVersion: String? = "v1", metadata: ListMeta, items: [Item]) {
        self.kind = kind
        self.apiVersion = apiVersion
        self.metadata = metadata
        self.items = items
    }
}

/// A `Status` object: how the API server reports errors, in replies and in ERROR watch events.
public struct KubeStatus: Codable, Sendable, Error, CustomStringConvertible {
    /// "Status".
    public var kind: String?
    /// "v1".
    public var apiVersion: String?
    /// "Failure".
    public var status: String?
    /// Human-readable message.
    public var message: String?
    /// Machine-readable reason, e.g. "Expired", "Gone".
    public var reason: String?
    /// HTTP status code, e.g. 410.
    public var code: Int?
    /// Makes a status.
    public init(kind: String? = "Status", apiVersion: String? = "v1", status: String? = "Failure", message: String?,
                reason: String?, code: Int?) {
        self.kind = kind
        self.apiVersion = apiVersion
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }
    /// "code reason: message".
    public var description: String { "\(code ?? 0) \(reason ?? ""): \(message ?? "")" }
}

/// One line of a watch stream, before the object is decoded by type.
struct KubeWatchLine: Decodable {
    var type: String
}

/// A watch line with its object decoded as `Object`.
struct KubeTypedWatchLine<Object: Decodable>: Decodable {
    var type: String
    var object: Object
}

/// The object of a BOOKMARK event: only `metadata.resourceVersion` is meaningful.
struct KubeBookmark: Decodable {
    struct Meta: Decodable { var resourceVersion: String? }
    var metadata: Meta
}
