import Foundation

// Codable mirrors of etcd's v3 protobuf messages as its grpc-gateway renders them in JSON
// (api/etcdserverpb/rpc.proto). Property names are the proto field names on purpose: the
// gateway matches request fields by their original or JSON name only, so a key strategy
// that turned `ID` into `id` would be silently ignored. 64-bit integers travel as strings,
// bytes as base64 (Foundation's default for `Data`), and zero values are omitted.

/// A 64-bit integer that the gateway writes as a JSON string ("42") and accepts as either.
struct I64: Codable, Sendable, Hashable {
    var value: Int64
    init(_ value: Int64) { self.value = value }
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            guard let parsed = Int64(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an int64: \(text)")
            }
            value = parsed
        } else {
            value = try container.decode(Int64.self)
        }
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

extension Optional where Wrapped == I64 {
    var int64: Int64 { self?.value ?? 0 }
}

/// The response header. cluster_id and member_id are uint64 and unused here, so they are not decoded.
struct WireHeader: Decodable, Sendable {
    var revision: I64?
    var raft_term: I64?
}

struct WireKeyValue: Decodable, Sendable {
    var key: Data?
    var create_revision: I64?
    var mod_revision: I64?
    var version: I64?
    var value: Data?
    var lease: I64?
}

struct WireRangeRequest: Encodable, Sendable {
    var key: Data
    var range_end: Data?
    var limit: I64?
    var revision: I64?
    var keys_only: Bool?
    var count_only: Bool?
    var serializable: Bool?
}

struct WireRangeResponse: Decodable, Sendable {
    var header: WireHeader?
    var kvs: [WireKeyValue]?
    var more: Bool?
    var count: I64?
}

struct WirePutRequest: Encodable, Sendable {
    var key: Data
    var value: Data
    var lease: I64?
    var prev_kv: Bool?
}

struct WirePutResponse: Decodable, Sendable {
    var header: WireHeader?
    var prev_kv: WireKeyValue?
}

struct WireDeleteRangeRequest: Encodable, Sendable {
    var key: Data
    var range_end: Data?
    var prev_kv: Bool?
}

struct WireDeleteRangeResponse: Decodable, Sendable {
    var header: WireHeader?
    var deleted: I64?
    var prev_kvs: [WireKeyValue]?
}

struct WireCompare: Encodable, Sendable {
    var result: String
    var target: String
    var key: Data
    var range_end: Data?
    var version: I64?
    var create_revision: I64?
    var mod_revision: I64?
    var value: Data?
    var lease: I64?
}

struct WireRequestOp: Encodable, Sendable {
    var request_range: WireRangeRequest?
    var request_put: WirePutRequest?
    var request_delete_range: WireDeleteRangeRequest?
}

struct WireResponseOp: Decodable, Sendable {
    var response_range: WireRangeResponse?
    var response_put: WirePutResponse?
    var response_delete_range: WireDeleteRangeResponse?
}

struct WireTxnRequest: Encodable, Sendable {
    var compare: [WireCompare]
    var success: [WireRequestOp]
    var failure: [WireRequestOp]
}

struct WireTxnResponse: Decodable, Sendable {
    var header: WireHeader?
    var succeeded: Bool?
    var responses: [WireResponseOp]?
}

struct WireCompactionRequest: Encodable, Sendable {
    var revision: I64
    var physical: Bool?
}

struct WireCompactionResponse: Decodable, Sendable {
    var header: WireHeader?
}

struct WireLeaseGrantRequest: Encodable, Sendable {
    var TTL: I64
    var ID: I64?
}

struct WireLeaseGrantResponse: Decodable, Sendable {
    var header: WireHeader?
    var ID: I64?
    var TTL: I64?
    var error: String?
}

struct WireLeaseIDRequest: Encodable, Sendable {
    var ID: I64
}

struct WireLeaseKeepAliveResponse: Decodable, Sendable {
    var header: WireHeader?
    var ID: I64?
    var TTL: I64?
}

struct WireLeaseRevokeResponse: Decodable, Sendable {
    var header: WireHeader?
}

/// One line of a gateway stream: `{"result":{…}}` or `{"error":{…}}`.
struct WireStreamLine<Result: Decodable & Sendable>: Decodable, Sendable {
    var result: Result?
    var error: WireStreamError?
}

struct WireStreamError: Decodable, Sendable {
    var grpc_code: Int?
    var http_code: Int?
    var message: String?
    var http_status: String?
}

/// The body of a non-200 unary gateway reply.
struct WireGatewayError: Decodable, Sendable {
    var error: String?
    var message: String?
    var code: Int?
}

struct WireWatchCreateRequest: Encodable, Sendable {
    var key: Data
    var range_end: Data?
    var start_revision: I64?
    var progress_notify: Bool?
    var prev_kv: Bool?
}

struct WireWatchRequest: Encodable, Sendable {
    var create_request: WireWatchCreateRequest
}

struct WireWatchResponse: Decodable, Sendable {
    var header: WireHeader?
    var watch_id: I64?
    var created: Bool?
    var canceled: Bool?
    var compact_revision: I64?
    var cancel_reason: String?
    var fragment: Bool?
    var events: [WireEvent]?
}

struct WireEvent: Decodable, Sendable {
    /// Absent for PUT, because PUT is the enum's zero value.
    var type: String?
    var kv: WireKeyValue?
    var prev_kv: WireKeyValue?
}
