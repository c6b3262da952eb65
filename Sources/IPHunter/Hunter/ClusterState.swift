import Etcd

/// Pods and nodes as the informers last reported them, with the indexes needed to find which map
/// keys a change touches; computes the map the cluster should have.
struct ClusterState: Sendable {
    var pods: [String: Pod] = [:]
    var nodes: [String: Node] = [:]
    /// pod IP → keys of the pods that have it (usually one; two during IP reuse).
    var podsByIP: [String: Set<String>] = [:]
    /// node name → keys of the pods on it.
    var podsByNode: [String: Set<String>] = [:]
    let schema: MapSchema

    init(schema: MapSchema) {
        self.schema = schema
    }

    /// Replaces all pods; returns the keys whose desired value may have changed.
    mutating func replacePods(_ list: [Pod]) -> Set<String> {
        var touched = Set(podsByIP.keys.map(schema.vipKey))
        pods = [:]
        podsByIP = [:]
        podsByNode = [:]
        for pod in list { insert(pod) }
        touched.formUnion(podsByIP.keys.map(schema.vipKey))
        return touched
    }

    /// Replaces all nodes; returns the touched keys.
    mutating func replaceNodes(_ list: [Node]) -> Set<String> {
        var touched = Set(nodes.keys.map(schema.nodeKey))
        nodes = Dictionary(list.map { ($0.metadata.name, $0) }, uniquingKeysWith: { _, last in last })
        touched.formUnion(nodes.keys.map(schema.nodeKey))
        // Every vip's pip comes from its node.
        touched.formUnion(podsByIP.keys.map(schema.vipKey))
        return touched
    }

    /// Adds or updates a pod; returns the touched keys.
    mutating func upsert(_ pod: Pod) -> Set<String> {
        let old = remove(key: pod.key)
        insert(pod)
        return old.union(pod.ips.map(schema.vipKey))
    }

    /// Removes a pod; returns the touched keys.
    mutating func delete(_ pod: Pod) -> Set<String> {
        remove(key: pod.key)
    }

    /// Adds or updates a node; returns its key and the keys of the vips on it.
    mutating func upsert(_ node: Node) -> Set<String> {
        nodes[node.metadata.name] = node
        return vipKeys(onNode: node.metadata.name).union([schema.nodeKey(node.metadata.name)])
    }

    /// Removes a node; returns the touched keys.
    mutating func delete(_ node: Node) -> Set<String> {
        nodes[node.metadata.name] = nil
        return vipKeys(onNode: node.metadata.name).union([schema.nodeKey(node.metadata.name)])
    }

    func vipKeys(onNode node: String) -> Set<String> {
        Set((podsByNode[node] ?? []).flatMap { pods[$0]?.ips ?? [] }.map(schema.vipKey))
    }

    private mutating func insert(_ pod: Pod) {
        let key = pod.key
        pods[key] = pod
        for ip in pod.ips { podsByIP[ip, default: []].insert(key) }
        if let node = pod.spec?.nodeName { podsByNode[node, default: []].insert(key) }
    }

    @discardableResult
    private mutating func remove(key: String) -> Set<String> {
        guard let pod = pods.removeValue(forKey: key) else { return [] }
        for ip in pod.ips {
            podsByIP[ip]?.remove(key)
            if podsByIP[ip]?.isEmpty == true { podsByIP[ip] = nil }
        }
        if let node = pod.spec?.nodeName {
            podsByNode[node]?.remove(key)
            if podsByNode[node]?.isEmpty == true { podsByNode[node] = nil }
        }
        return Set(pod.ips.map(schema.vipKey))
    }

    /// Number of pods that belong in the map.
    var publishablePods: Int { pods.values.filter(\.isPublishable).count }

    /// The value `key` should have, nil when it should not exist.
    func desiredValue(_ key: String) -> [UInt8]? {
        switch schema.classify(key) {
        case .vip(let vip): return vipEntry(vip).map(MapCodec.encode)
        case .node(let name): return nodeEntry(name).map(MapCodec.encode)
        case .leader, .other: return nil
        }
    }

    /// The whole desired map.
    func desiredMap() -> [String: [UInt8]] {
        var map: [String: [UInt8]] = [:]
        for vip in podsByIP.keys {
            if let entry = vipEntry(vip) { map[schema.vipKey(vip)] = MapCodec.encode(entry) }
        }
        for name in nodes.keys {
            if let entry = nodeEntry(name) { map[schema.nodeKey(name)] = MapCodec.encode(entry) }
        }
        return map
    }

    func nodeEntry(_ name: String) -> NodeEntry? {
        guard let node = nodes[name], let pip = node.physicalIP else { return nil }
        let addresses = (node.status?.addresses ?? []).map { "\($0.type)=\($0.address)" }
        return NodeEntry(node: name, pip: pip, addresses: addresses, uid: node.metadata.uid ?? "")
    }

    /// The entry for a vip: among the publishable pods with that IP (two only while an IP is
    /// reused), the running one, then the newest, then by UID, so every replica picks the same.
    func vipEntry(_ vip: String) -> VipEntry? {
        let candidates = (podsByIP[vip] ?? []).compactMap { pods[$0] }.filter(\.isPublishable)
        let best = candidates.max { a, b in
            let ra = a.status?.phase == "Running", rb = b.status?.phase == "Running"
            if ra != rb { return !ra }
            let ca = a.metadata.creationTimestamp ?? "", cb = b.metadata.creationTimestamp ?? ""
            if ca != cb { return ca < cb }
            return (a.metadata.uid ?? "") < (b.metadata.uid ?? "")
        }
        guard let pod = best, let nodeName = pod.spec?.nodeName else { return nil }
        // The node's InternalIP is authoritative (a node IP change moves every vip on it);
        // the kubelet's hostIP covers a node the informer has not seen yet.
        guard let pip = nodes[nodeName]?.physicalIP ?? pod.status?.hostIP, !pip.isEmpty else { return nil }
        return VipEntry(vip: vip, pip: pip, node: nodeName, namespace: pod.metadata.namespace ?? "",
                        pod: pod.metadata.name, uid: pod.metadata.uid ?? "")
    }
}
