import Foundation

/// A key and its value as etcd stores them, with the revisions etcd keeps for it.
public struct KeyValue: Sendable, Hashable {
    /// The key, decoded as UTF-8 (FreeFlow keys are ASCII paths).
    public var key: String
    /// The raw value bytes.
    public var value: [UInt8]
    /// Revision of the last creation of this key.
    public var createRevision: Int64
    /// Revision of the last modification of this key.
    public var modRevision: Int64
    /// Number of modifications since creation (1 after the first put).
    public var version: Int64
    /// Lease the key is attached to, 0 if none.
    public var lease: Int64

    /// Makes a key-value; mainly for tests and callers that build expected state.
    public init(key: String, value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0,
                lease: Int64 = 0) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    /// The value decoded as UTF-8 (invalid bytes replaced).
    public var valueString: String { String(decoding: value, as: UTF8.self) }

    init(_ wire: WireKeyValue) {
        key = String(decoding: wire.key ?? Data(), as: UTF8.self)
        value = [UInt8](wire.value ?? Data())
        createRevision = wire.create_revision.int64
        modRevision = wire.mod_revision.int64
        version = wire.version.int64
        lease = wire.lease.int64
    }
}

/// Which keys an operation covers.
public enum KeyRange: Sendable, Hashable {
    /// Exactly one key.
    case key(String)
    /// Every key starting with the prefix.
    case prefix(String)
    /// Keys in [from, to).
    case range(from: String, to: String)

    var wireKey: Data {
        switch self {
        case .key(let key), .prefix(let key), .range(let key, _): return Data(key.utf8)
        }
    }

    var wireRangeEnd: Data? {
        switch self {
        case .key: return nil
        case .prefix(let prefix): return Data(KeyRange.prefixEnd(Array(prefix.utf8)))
        case .range(_, let end): return Data(end.utf8)
        }
    }

    /// The smallest key greater than every key with this prefix, as etcd's clientv3.GetPrefixRangeEnd
    /// computes it: increment the last byte below 0xff and drop what follows; "\0" means "to the end".
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

/// The result of a Range call.
public struct RangeResult: Sendable {
    /// Store revision the range was served at.
    public var revision: Int64
    /// The key-values, in key order.
    public var kvs: [KeyValue]
    /// True when a limit cut the result short.
    public var more: Bool
    /// Number of keys in the range (ignoring the limit).
    public var count: Int64

    /// Makes a result (used by paging, which stitches pages together).
    public init(revision: Int64, kvs: [KeyValue], more: Bool, count: Int64) {
        self.revision = revision
        self.kvs = kvs
        self.more = more
        self.count = count
    }

    init(_ wire: WireRangeResponse) {
        revision = wire.header?.revision.int64 ?? 0
        kvs = (wire.kvs ?? []).map(KeyValue.init)
        more = wire.more ?? false
        count = wire.count.int64
    }
}

/// The result of a Put.
public struct PutResult: Sendable {
    /// Revision of the write.
    public var revision: Int64
    /// The previous key-value, if asked for and present.
    public var previous: KeyValue?

    init(_ wire: WirePutResponse) {
        revision = wire.header?.revision.int64 ?? 0
        previous = wire.prev_kv.map(KeyValue.init)
    }
}

/// The result of a DeleteRange.
public struct DeleteResult: Sendable {
    /// Revision after the delete.
    public var revision: Int64
    /// Number of keys deleted.
    public var deleted: Int64
    /// The deleted key-values, if asked for.
    public var previous: [KeyValue]

    init(_ wire: WireDeleteRangeResponse) {
        revision = wire.header?.revision.int64 ?? 0
        deleted = wire.deleted.int64
        previous = (wire.prev_kvs ?? []).map(KeyValue.init)
    }
}

/// One condition of a transaction (etcd's Compare message).
public struct Compare: Sendable {
    /// How the key's field is compared with the given value.
    public enum Relation: String, Sendable {
        /// ==
        case equal = "EQUAL"
        /// >
        case greater = "GREATER"
        /// <
        case less = "LESS"
        /// !=
        case notEqual = "NOT_EQUAL"
    }

    var wire: WireCompare

    /// The key's last modification revision (0 when absent) compared with `revision`.
    public static func modRevision(_ key: String, _ relation: Relation = .equal, _ revision: Int64) -> Compare {
        Compare(wire: WireCompare(result: relation.rawValue, target: "MOD", key: Data(key.utf8),
                                  mod_revision: I64(revision)))
    }

    /// The key's creation revision (0 when absent) compared with `revision`.
    public static func createRevision(_ key: String, _ relation: Relation = .equal, _ revision: Int64) -> Compare {
        Compare(wire: WireCompare(result: relation.rawValue, target: "CREATE", key: Data(key.utf8),
                                  create_revision: I64(revision)))
    }

    /// The key's version (0 when absent) compared with `version`.
    public static func version(_ key: String, _ relation: Relation = .equal, _ version: Int64) -> Compare {
        Compare(wire: WireCompare(result: relation.rawValue, target: "VERSION", key: Data(key.utf8),
                                  version: I64(version)))
    }

    /// The key's value compared with `value`.
    public static func value(_ key: String, _ relation: Relation = .equal, _ value: [UInt8]) -> Compare {
        Compare(wire: WireCompare(result: relation.rawValue, target: "VALUE", key: Data(key.utf8), value: Data(value)))
    }

    /// True when the key does not exist (its creation revision is 0).
    public static func absent(_ key: String) -> Compare { createRevision(key, .equal, 0) }
}

/// One operation inside a transaction branch.
public enum TxnOp: Sendable {
    /// Read keys.
    case get(KeyRange)
    /// Write a key, optionally attached to a lease.
    case put(String, [UInt8], lease: Int64 = 0)
    /// Delete keys.
    case delete(KeyRange)

    var wire: WireRequestOp {
        switch self {
        case .get(let range):
            return WireRequestOp(request_range: WireRangeRequest(key: range.wireKey, range_end: range.wireRangeEnd))
        case .put(let key, let value, let lease):
            return WireRequestOp(request_put: WirePutRequest(key: Data(key.utf8), value: Data(value),
                                                             lease: lease == 0 ? nil : I64(lease)))
        case .delete(let range):
            return WireRequestOp(request_delete_range: WireDeleteRangeRequest(key: range.wireKey,
                range_end: range.wireRangeEnd))
        }
    }
}

/// The result of one operation of the branch a transaction took.
public enum TxnOpResult: Sendable {
    /// Result of a `.get`.
    case range(RangeResult)
    /// Result of a `.put`.
    case put(PutResult)
    /// Result of a `.delete`.
    case delete(DeleteResult)
}

/// The result of a transaction.
public struct TxnResult: Sendable {
    /// True when every comparison held and the success branch ran.
    public var succeeded: Bool
    /// Store revision after the transaction.
    public var revision: Int64
    /// Results of the branch that ran.
    public var responses: [TxnOpResult]

    init(_ wire: WireTxnResponse) {
        succeeded = wire.succeeded ?? false
        revision = wire.header?.revision.int64 ?? 0
        responses = (wire.responses ?? []).compactMap { op in
            if let r = op.response_range { return .range(RangeResult(r)) }
            if let p = op.response_put { return .put(PutResult(p)) }
            if let d = op.response_delete_range { return .delete(DeleteResult(d)) }
            return nil
        }
    }
}

/// A granted lease.
public struct Lease: Sendable, Hashable {
    /// The lease ID etcd assigned.
    public var id: Int64
    /// The TTL in seconds etcd granted (it may raise a TTL below its minimum).
    public var ttl: Int64
}
