/// Errors of the etcd client. Transport failures, server refusals and watch ends are kept apart
/// because callers react differently: retry, give up, or relist.
public enum EtcdError: Error, Sendable, CustomStringConvertible, Equatable {
    /// No endpoint answered; `underlying` describes the last transport failure.
    case unavailable(endpoints: [String], underlying: String)
    /// etcd answered with an error (gRPC `code`, HTTP status and etcd's message).
    case server(code: Int, httpStatus: Int, message: String)
    /// The requested revision was compacted away; list again at the current revision.
    case compacted(requestedRevision: Int64, compactRevision: Int64)
    /// etcd canceled the watch for a reason other than compaction.
    case watchCanceled(reason: String)
    /// The lease does not exist any more (expired or revoked).
    case leaseNotFound(id: Int64)
    /// A reply could not be decoded.
    case malformedResponse(String)
    /// The watch stream ended and reconnecting was disabled or gave up.
    case watchStreamEnded(reason: String)
    /// The configuration is unusable (bad endpoint URL, unreadable TLS files).
    case invalidConfiguration(String)

    /// gRPC status code etcd uses for "required revision has been compacted".
    static let outOfRange = 11

    /// True for a refusal that retrying cannot fix: a bad request or missing permission
    /// (gRPC InvalidArgument, PermissionDenied, Unauthenticated; HTTP 400, 401, 403).
    var isPermanent: Bool {
        if case .server(let code, let status, _) = self {
            return [3, 7, 16].contains(code) || [400, 401, 403].contains(status)
        }
        return true
    }

    /// True for a server reply meaning "try again / try another member" (gRPC Unavailable, HTTP 503).
    var isUnavailable: Bool {
        if case .server(let code, let status, _) = self { return code == 14 || status == 503 }
        return false
    }

    public var description: String {
        switch self {
        case .unavailable(let endpoints, let underlying):
            return "etcd unavailable at \(endpoints.joined(separator: ",")): \(underlying)"
        case .server(let code, let status, let message):
            return "etcd error (grpc code \(code), http \(status)): \(message)"
        case .compacted(let requested, let compact):
            return "etcd revision \(requested) has been compacted (compact revision \(compact)); relist required"
        case .watchCanceled(let reason):
            return "etcd canceled the watch: \(reason.isEmpty ? "no reason given" : reason)"
        case .leaseNotFound(let id):
            return "etcd lease \(String(id, radix: 16)) not found (expired or revoked)"
        case .malformedResponse(let detail):
            return "malformed etcd response: \(detail)"
        case .watchStreamEnded(let reason):
            return "etcd watch stream ended: \(reason)"
        case .invalidConfiguration(let detail):
            return "invalid etcd configuration: \(detail)"
        }
    }
}
