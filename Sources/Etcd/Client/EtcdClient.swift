import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// TLS settings for talking to etcd over https (clusters usually require client certificates).
public struct EtcdTLS: Sendable, Hashable {
    /// PEM file of the CA that signed etcd's server certificate; nil uses the system trust store.
    public var caFile: String?
    /// PEM client certificate chain, for etcd's `--client-cert-auth`.
    public var certFile: String?
    /// PEM private key of the client certificate.
    public var keyFile: String?

    /// Makes TLS settings from PEM file paths.
    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// TLS settings from command-line flags: nil (plain http) when none of the files is given.
    public static func fromFlags(caFile: String?, certFile: String?, keyFile: String?) -> EtcdTLS? {
        caFile == nil && certFile == nil && keyFile == nil ? nil : EtcdTLS(caFile: caFile, certFile: certFile,
            keyFile: keyFile)
    }

    func makeConfiguration() throws -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        if let caFile { config.trustRoots = .file(caFile) }
        switch (certFile, keyFile) {
        case (nil, nil):
            break
        case (let cert?, let key?):
            do {
                config.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            } catch {
                throw EtcdError.invalidConfiguration("cannot read client certificate \(cert): \(error)")
            }
            do {
                config.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw EtcdError.invalidConfiguration("cannot read client key \(key): \(error)")
            }
        default:
            throw EtcdError.invalidConfiguration("a client certificate needs both a certificate and a key file")
        }
        return config
    }
}

/// How to reach etcd.
public struct EtcdConfiguration: Sendable {
    /// Client URLs such as `http://127.0.0.1:2379`; tried in order, the last one that answered first.
    public var endpoints: [String]
    /// Time allowed for a unary call (connect, send, full reply).
    public var requestTimeout: Duration
    /// Time allowed to open a TCP (and TLS) connection.
    public var connectTimeout: Duration
    /// TLS settings; required for https endpoints with a private CA or client certificates.
    public var tls: EtcdTLS?

    /// Makes a configuration; endpoints may be given without scheme (`127.0.0.1:2379` means http).
    public init(endpoints: [String], requestTimeout: Duration = .seconds(5), connectTimeout: Duration = .seconds(3),
                tls: EtcdTLS? = nil) {
        self.endpoints = endpoints.map { endpoint in
            var e = endpoint.trimmingCharacters(in: .whitespaces)
            if !e.contains("://") { e = "http://" + e }
            while e.hasSuffix("/") { e.removeLast() }
            return e
        }
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.tls = tls
    }

    /// Parses a comma-separated endpoint list as etcdctl's `--endpoints` takes it.
    public init(endpointList: String, tls: EtcdTLS? = nil) {
        self.init(endpoints: endpointList.split(separator: ",").map(String.init), tls: tls)
    }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// A client for etcd's v3 API through its JSON gateway (`/v3/...`), the same calls curl can make:
/// `curl -d '{"key":"Zm9v"}' http://127.0.0.1:2379/v3/kv/range`.
///
/// Call ``shutdown()`` when done (AsyncHTTPClient requires it), or use ``withClient(_:logger:_:)``.
public final class EtcdClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: EtcdConfiguration
    let logger: Logger
    /// Unary calls: a read timeout bounds a stalled reply.
    let unaryHTTP: HTTPClient
    /// Streams (watch): idle for as long as the watched keys are quiet, so no read timeout.
    let streamHTTP: HTTPClient
    /// Index of the endpoint that answered last; tried first next time.
    let preferred = Mutex<Int>(0)

    /// Makes a client; throws when TLS files cannot be used or no endpoint is given.
    public init(_ configuration: EtcdConfiguration, logger: Logger = Logger(label: "etcd")) throws {
        guard !configuration.endpoints.isEmpty else {
            throw EtcdError.invalidConfiguration("no endpoints")
        }
        for endpoint in configuration.endpoints where URL(string: endpoint)?.host == nil {
            throw EtcdError.invalidConfiguration("bad endpoint URL \(endpoint)")
        }
        self.configuration = configuration
        self.logger = logger
        let tls = try configuration.tls?.makeConfiguration()
        var unary = HTTPClient.Configuration(
            tlsConfiguration: tls,
            timeout: .init(connect: configuration.connectTimeout.timeAmount,
                           read: configuration.requestTimeout.timeAmount)
        )
        unary.decompression = .disabled
        var stream = HTTPClient.Configuration(
            tlsConfiguration: tls,
            timeout: .init(connect: configuration.connectTimeout.timeAmount, read: nil)
        )
        stream.decompression = .disabled
        unaryHTTP = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: unary)
        streamHTTP = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: stream)
    }

    /// Closes all connections; the client cannot be used afterwards.
    public func shutdown() async throws {
        try await unaryHTTP.shutdown()
        try await streamHTTP.shutdown()
    }

    /// Runs `body` with a client and shuts the client down afterwards, also when `body` throws.
    public static func withClient<R: Sendable>(
        _ configuration: EtcdConfiguration,
        logger: Logger = Logger(label: "etcd"),
        _ body: (EtcdClient) async throws -> R
    ) async throws -> R {
        let client = try EtcdClient(configuration, logger: logger)
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    // MARK: - Transport

    static let encoder = JSONEncoder()

    /// The endpoints in the order to try them: the one that answered last first.
    func endpointOrder() -> [String] {
        let endpoints = configuration.endpoints
        let start = preferred.withLock { $0 } % endpoints.count
        return Array(endpoints[start...] + endpoints[..<start])
    }

    func markPreferred(_ endpoint: String) {
        if let index = configuration.endpoints.firstIndex(of: endpoint) {
            preferred.withLock { $0 = index }
        }
    }

    static func request(_ endpoint: String, _ path: String, body: Data) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: body))
        return request
    }

    /// Turns a gateway error body into an ``EtcdError``.
    static func serverError(status: HTTPResponseStatus, body: ByteBuffer) -> EtcdError {
        let decoded = try? JSONDecoder().decode(WireGatewayError.self, from: body)
        let message = decoded?.message ?? decoded?.error ?? String(buffer: body)
        return .server(code: decoded?.code ?? -1, httpStatus: Int(status.code), message: message)
    }

    /// One unary gateway call with endpoint failover. Server errors are returned at once (another
    /// member would say the same); only transport failures move on to the next endpoint.
    /// `endpoints` restricts the call to those members and `timeout` shortens its deadline (the watch's
    /// liveness probe asks the stream's own member, quickly).
    func call<Request: Encodable, Response: Decodable>(_ path: String, _ body: Request, as: Response.Type,
                                                       endpoints: [String]? = nil,
                                                       timeout: Duration? = nil) async throws -> Response {
        let payload = try Self.encoder.encode(body)
        var lastError = "no attempt"
        let candidates = endpoints ?? endpointOrder()
        for endpoint in candidates {
            let reply: ByteBuffer
            let status: HTTPResponseStatus
            do {
                let response = try await unaryHTTP.execute(
                    Self.request(endpoint, path, body: payload),
                    timeout: (timeout ?? configuration.requestTimeout).timeAmount,
                    logger: logger
                )
                status = response.status
                reply = try await response.body.collect(upTo: 256 << 20)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = "\(endpoint): \(error)"
                logger.debug("etcd call failed", metadata: ["path": "\(path)", "endpoint": "\(endpoint)",
                                                            "error": "\(error)"])
                continue
            }
            guard status == .ok else {
                let error = Self.serverError(status: status, body: reply)
                // A member that is starting, stopping or without a leader says so with gRPC
                // Unavailable; another member may answer.
                if error.isUnavailable {
                    lastError = "\(endpoint): \(error)"
                    continue
                }
                throw error
            }
            markPreferred(endpoint)
            do {
                return try JSONDecoder().decode(Response.self, from: reply)
            } catch {
                throw EtcdError.malformedResponse("\(path): \(error)")
            }
        }
        throw EtcdError.unavailable(endpoints: candidates, underlying: lastError)
    }

    // MARK: - KV

    /// Reads keys (`/v3/kv/range`). `revision` 0 reads the latest; `limit` 0 means no limit;
    /// `countOnly` returns only ``RangeResult/count``.
    public func range(_ keys: KeyRange, revision: Int64 = 0, limit: Int64 = 0, keysOnly: Bool = false,
                      countOnly: Bool = false) async throws -> RangeResult {
        let request = WireRangeRequest(
            key: keys.wireKey,
            range_end: keys.wireRangeEnd,
            limit: limit == 0 ? nil : I64(limit),
            revision: revision == 0 ? nil : I64(revision),
            keys_only: keysOnly ? true : nil,
            count_only: countOnly ? true : nil
        )
        do {
            return RangeResult(try await call("/v3/kv/range", request, as: WireRangeResponse.self))
        } catch EtcdError.server(let code, _, let message) where code == EtcdError.outOfRange
            && message.contains("compacted") {
            throw EtcdError.compacted(requestedRevision: revision, compactRevision: 0)
        }
    }

    /// Reads one key; nil when absent.
    public func get(_ key: String, revision: Int64 = 0) async throws -> KeyValue? {
        try await range(.key(key), revision: revision).kvs.first
    }

    /// Reads every key of a range in pages of `pageSize`, all at one revision (the first page's, or
    /// `revision` when given), so the result is a consistent snapshot even if writes go on meanwhile.
    public func rangeAll(_ keys: KeyRange, revision: Int64 = 0, pageSize: Int64 = 1000) async throws -> RangeResult {
        var page = try await range(keys, revision: revision, limit: pageSize)
        // The header carries the store's current revision; a read at an older one stays there.
        let atRevision = revision != 0 ? revision : page.revision
        var all = page.kvs
        let end: String? = {
            switch keys {
            case .key: return nil
            case .prefix(let prefix): return String(decoding: KeyRange.prefixEnd(Array(prefix.utf8)), as: UTF8.self)
            case .range(_, let to): return to
            }
        }()
        while page.more, let last = all.last, let end {
            // The next page starts right after the last key: append a zero byte.
            page = try await range(.range(from: last.key + "\u{0}", to: end), revision: atRevision, limit: pageSize)
            all += page.kvs
        }
        return RangeResult(revision: atRevision, kvs: all, more: false, count: Int64(all.count))
    }

    /// Writes a key (`/v3/kv/put`), optionally attached to a lease.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0, prevKV: Bool = false) async throws -> PutResult {
        let request = WirePutRequest(key: Data(key.utf8), value: Data(value), lease: lease == 0 ? nil : I64(lease),
                                     prev_kv: prevKV ? true : nil)
        do {
            return PutResult(try await call("/v3/kv/put", request, as: WirePutResponse.self))
        } catch EtcdError.server(_, _, let message) where message.contains("lease not found") {
            throw EtcdError.leaseNotFound(id: lease)
        }
    }

    /// Writes a string value.
    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> PutResult {
        try await put(key, Array(value.utf8), lease: lease)
    }

    /// Deletes keys (`/v3/kv/deleterange`).
    @discardableResult
    public func delete(_ keys: KeyRange, prevKV: Bool = false) async throws -> DeleteResult {
        let request = WireDeleteRangeRequest(key: keys.wireKey, range_end: keys.wireRangeEnd,
                                             prev_kv: prevKV ? true : nil)
        return DeleteResult(try await call("/v3/kv/deleterange", request, as: WireDeleteRangeResponse.self))
    }

    /// Runs a transaction (`/v3/kv/txn`): if every comparison holds, `success` runs, else `failure`.
    public func txn(compare: [Compare], success: [TxnOp], failure: [TxnOp] = []) async throws -> TxnResult {
        let request = WireTxnRequest(compare: compare.map(\.wire), success: success.map(\.wire),
                                     failure: failure.map(\.wire))
        do {
            return TxnResult(try await call("/v3/kv/txn", request, as: WireTxnResponse.self))
        } catch EtcdError.server(_, _, let message) where message.contains("lease not found") {
            throw EtcdError.leaseNotFound(id: 0)
        }
    }

    /// Compacts the history up to `revision` (`/v3/kv/compaction`); older revisions can no longer be read or watched.
    public func compact(revision: Int64, physical: Bool = true) async throws {
        _ = try await call("/v3/kv/compaction", WireCompactionRequest(revision: I64(revision), physical: physical),
                           as: WireCompactionResponse.self)
    }

    // MARK: - Lease

    /// Grants a lease of `ttl` seconds (`/v3/lease/grant`).
    public func leaseGrant(ttl: Int64) async throws -> Lease {
        let reply = try await call("/v3/lease/grant", WireLeaseGrantRequest(TTL: I64(ttl)),
                                   as: WireLeaseGrantResponse.self)
        if let error = reply.error, !error.isEmpty {
            throw EtcdError.server(code: -1, httpStatus: 200, message: error)
        }
        guard let id = reply.ID?.value else { throw EtcdError.malformedResponse("lease grant without ID") }
        return Lease(id: id, ttl: reply.TTL.int64)
    }

    /// Renews a lease once (`/v3/lease/keepalive` with one request); returns the new TTL in seconds.
    /// Throws ``EtcdError/leaseNotFound(id:)`` when the lease already expired: etcd answers with TTL 0.
    @discardableResult
    public func leaseKeepAlive(id: Int64) async throws -> Int64 {
        let line = try await call("/v3/lease/keepalive", WireLeaseIDRequest(ID: I64(id)),
                                  as: WireStreamLine<WireLeaseKeepAliveResponse>.self)
        if let error = line.error {
            throw EtcdError.server(code: error.grpc_code ?? -1, httpStatus: error.http_code ?? 0,
                                   message: error.message ?? "")
        }
        let ttl = line.result?.TTL.int64 ?? 0
        guard ttl > 0 else { throw EtcdError.leaseNotFound(id: id) }
        return ttl
    }

    /// Revokes a lease (`/v3/lease/revoke`), deleting every key attached to it.
    public func leaseRevoke(id: Int64) async throws {
        do {
            _ = try await call("/v3/lease/revoke", WireLeaseIDRequest(ID: I64(id)), as: WireLeaseRevokeResponse.self)
        } catch EtcdError.server(_, _, let message) where message.contains("lease not found") {
            throw EtcdError.leaseNotFound(id: id)
        }
    }
}
