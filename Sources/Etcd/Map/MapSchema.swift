import Foundation

/// Layout of the FreeFlow map in etcd, version 1 (docs/etcd-map-schema.md).
///
/// - `<root>/vips/<vip>` → ``VipEntry`` JSON: where the pod with virtual IP `vip` runs.
/// - `<root>/nodes/<node>` → ``NodeEntry`` JSON: the node's physical IP.
/// - `<root>/leader/iphunter` → the identity of the IP hunter replica that may write (lease-bound).
public struct MapSchema: Sendable, Hashable {
    /// Key prefix of the whole map, ending in "/"; `/freeflow/v1/` by default.
    public var root: String

    /// Version 1 of the schema under the default root.
    public static let v1 = MapSchema(root: "/freeflow/v1/")

    /// Makes a schema under another root (tests use one root per test).
    public init(root: String) {
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    /// Prefix of the vip entries.
    public var vipsPrefix: String { root + "vips/" }
    /// Prefix of the node entries.
    public var nodesPrefix: String { root + "nodes/" }
    /// The key the IP hunter's leader holds.
    public var leaderKey: String { root + "leader/iphunter" }

    /// Key of a vip entry.
    public func vipKey(_ vip: String) -> String { vipsPrefix + vip }
    /// Key of a node entry.
    public func nodeKey(_ node: String) -> String { nodesPrefix + node }

    /// What a key of the map is.
    public enum Entry: Sendable, Hashable {
        /// `vips/<vip>`.
        case vip(String)
        /// `nodes/<node>`.
        case node(String)
        /// The IP hunter's leader key.
        case leader
        /// Anything else under the root (ignored by readers, left alone by the hunter).
        case other
    }

    /// Classifies a key under ``root``.
    public func classify(_ key: String) -> Entry {
        if key.hasPrefix(vipsPrefix) { return .vip(String(key.dropFirst(vipsPrefix.count))) }
        if key.hasPrefix(nodesPrefix) { return .node(String(key.dropFirst(nodesPrefix.count))) }
        if key == leaderKey { return .leader }
        return .other
    }
}

/// Where the pod owning a virtual IP runs. Value of `<root>/vips/<vip>`.
///
/// The router maps a virtual GID to a physical one with it: the vGID a pod sees is the
/// IPv4-mapped GID of `vip` (`::ffff:<vip>`), and the peer's router is reached at `pip`, whose
/// RoCEv2 GID is `::ffff:<pip>`.
public struct VipEntry: Codable, Sendable, Hashable {
    /// The pod IP (virtual IP); also the last key component.
    public var vip: String
    /// The physical IP of the node the pod runs on (the node's InternalIP).
    public var pip: String
    /// The node name.
    public var node: String
    /// The pod's namespace.
    public var namespace: String
    /// The pod's name.
    public var pod: String
    /// The pod's UID, which tells a re-created pod with the same name apart.
    public var uid: String

    /// Makes an entry.
    public init(vip: String, pip: String, node: String, namespace: String, pod: String, uid: String) {
        self.vip = vip
        self.pip = pip
        self.node = node
        self.namespace = namespace
        self.pod = pod
        self.uid = uid
    }
}

/// A node of the cluster. Value of `<root>/nodes/<node>`.
public struct NodeEntry: Codable, Sendable, Hashable {
    /// The node name; also the last key component.
    public var node: String
    /// The node's physical IP (InternalIP, else ExternalIP), which routers connect to.
    public var pip: String
    /// Every address the node reports, as "Type=address".
    public var addresses: [String]
    /// The node's UID.
    public var uid: String

    /// Makes an entry.
    public init(node: String, pip: String, addresses: [String], uid: String) {
        self.node = node
        self.pip = pip
        self.addresses = addresses
        self.uid = uid
    }
}

/// Encoding of map values: compact JSON with sorted keys, so equal entries are equal bytes and
/// the IP hunter can compare bytes to decide whether a write is needed.
public enum MapCodec {
    /// Encodes an entry.
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these plain structs cannot fail.
        return Array((try? encoder.encode(value)) ?? Data())
    }

    /// One decoder for all entries: making a JSONDecoder per value dominated the mirror's list time.
    static let decoder = JSONDecoder()

    /// Decodes a vip entry; nil when the bytes are not one.
    public static func vip(_ bytes: [UInt8]) -> VipEntry? {
        try? decoder.decode(VipEntry.self, from: Data(bytes))
    }

    /// Decodes a node entry; nil when the bytes are not one.
    public static func node(_ bytes: [UInt8]) -> NodeEntry? {
        try? decoder.decode(NodeEntry.self, from: Data(bytes))
    }
}
