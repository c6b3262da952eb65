import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOSSL

/// How to reach the Kubernetes API server.
public struct KubeConfiguration: Sendable {
    /// Base URL, e.g. `https://10.96.0.1:443`.
    public var server: String
    /// Bearer token; ignored when `tokenFile` is set.
    public var token: String?
    /// File holding the bearer token, re-read for every request because projected
    /// service-account tokens rotate.
    public var tokenFile: String?
    /// PEM CA bundle that signed the API server's certificate.
    public var caFile: String?
    /// PEM CA bundle inline (kubeconfig's certificate-authority-data, decoded).
    public var caPEM: String?
    /// PEM client certificate and key (kubeconfig users with client certificates).
    public var clientCertPEM: String?
    /// PEM client key.
    public var clientKeyPEM: String?
    /// Skip server certificate verification (kubeconfig's insecure-skip-tls-verify).
    public var insecureSkipTLSVerify = false

    /// Makes a configuration for a server URL.
    public init(server: String, token: String? = nil, tokenFile: String? = nil, caFile: String? = nil) {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        self.server = s
        self.token = token
        self.tokenFile = tokenFile
        self.caFile = caFile
    }

    /// The in-cluster configuration: `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted service-account
    /// token and CA (see "Accessing the API from a Pod" in the Kubernetes docs).
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount")
        throws -> KubeConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"],
              let port = environment["KUBERNETES_SERVICE_PORT"] else {
            throw KubeError.configuration("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set (use "
                                        + "--kubeconfig or --api-server)")
        }
        let tokenFile = serviceAccountDirectory + "/token"
        guard FileManager.default.isReadableFile(atPath: tokenFile) else {
            throw KubeError.configuration("service-account token \(tokenFile) is not readable (is "
                                        + "automountServiceAccountToken off?)")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeConfiguration(server: "https://\(hostPart):\(port)", tokenFile: tokenFile,
                                 caFile: serviceAccountDirectory + "/ca.crt")
    }

    func bearerToken() throws -> String? {
        if let tokenFile {
            do {
                return try String(contentsOfFile: tokenFile,
                                  encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw KubeError.configuration("cannot read token file \(tokenFile): \(error)")
            }
        }
        return token
    }

    func tlsConfiguration() throws -> TLSConfiguration? {
        guard server.hasPrefix("https://") else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let caFile { tls.trustRoots = .file(caFile) }
            if let caPEM { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))) }
            if let clientCertPEM, let clientKeyPEM {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(clientCertPEM.utf8)).map {
                    .certificate($0)
                }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(clientKeyPEM.utf8), format: .pem))
            }
        } catch {
            throw KubeError.configuration("bad TLS material: \(error)")
        }
        if insecureSkipTLSVerify { tls.certificateVerification = .none }
        return tls
    }
}

/// Errors talking to the API server.
public enum KubeError: Error, Sendable, CustomStringConvertible {
    /// The resource version is too old (HTTP 410 or an ERROR event with code 410): relist.
    case gone(String)
    /// The API server refused the request (RBAC, bad selector ...).
    case status(KubeStatus)
    /// The configuration is unusable.
    case configuration(String)
    /// A reply could not be decoded.
    case malformed(String)

    public var description: String {
        switch self {
        case .gone(let message): return "resource version expired (410 Gone): \(message)"
        case .status(let status): return "kubernetes API error \(status)"
        case .configuration(let message): return "kubernetes configuration: \(message)"
        case .malformed(let message): return "malformed kubernetes reply: \(message)"
        }
    }
}

/// What a watch stream says, after decoding.
public enum KubeWatchEvent<Object: Sendable>: Sendable {
    /// ADDED.
    case added(Object)
    /// MODIFIED.
    case modified(Object)
    /// DELETED (the object's last state).
    case deleted(Object)
    /// BOOKMARK: nothing changed, but the collection is at this resource version.
    case bookmark(resourceVersion: String)
}

/// Objects that carry `metadata`.
public protocol KubeObject: Codable, Sendable {
    /// The object's metadata.
    var metadata: ObjectMeta { get }
}

extension Pod: KubeObject {}
extension Node: KubeObject {}

/// A minimal Kubernetes API client: paged list and streamed watch of one collection.
public final class KubeClient: Sendable {
    /// Where the API server is.
    public let configuration: KubeConfiguration
    let http: HTTPClient
    let logger: Logger

    /// Makes a client; `watchTimeout` bounds how long one watch request stays open (the server
    /// ends it after `timeoutSeconds`; the read timeout is a little longer).
    public init(_ configuration: KubeConfiguration, watchTimeout: Duration = .seconds(300),
                logger: Logger = Logger(label: "iphunter.kube")) throws {
        self.configuration = configuration
        self.logger = logger
        let config = HTTPClient.Configuration(
            tlsConfiguration: try configuration.tlsConfiguration(),
            timeout: .init(connect: .seconds(5), read: .seconds(watchTimeout.components.seconds + 60))
        )
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
    }

    /// Closes connections.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    func request(_ path: String, query: [(String, String)]) throws -> HTTPClientRequest {
        var components = URLComponents()
        components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
        let encoded = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        var request = HTTPClientRequest(url: configuration.server + path + encoded)
        request.headers.add(name: "accept", value: "application/json")
        if let token = try configuration.bearerToken() {
            request.headers.add(name: "authorization", value: "Bearer \(token)")
        }
        return request
    }

    static func status(from body: ByteBuffer, httpStatus: Int) -> KubeError {
        let status = (try? JSONDecoder().decode(KubeStatus.self, from: body))
            ?? KubeStatus(message: String(buffer: body), reason: nil, code: httpStatus)
        return httpStatus == 410 || status.code == 410 ? .gone(status.message ?? "") : .status(status)
    }

    /// Lists a collection completely, page by page (`limit`/`continue`); returns the items and the
    /// list's resourceVersion to watch from. A continue token that expired restarts the list.
    public func list<Object: KubeObject>(_ path: String, labelSelector: String?, pageSize: Int = 500,
                                         as: Object.Type) async throws -> (items: [Object], resourceVersion: String) {
        var attempts = 0
        restart: while true {
            attempts += 1
            var items: [Object] = []
            var continueToken: String?
            while true {
                var query = [("limit", String(pageSize))]
                if let labelSelector { query.append(("labelSelector", labelSelector)) }
                if let continueToken { query.append(("continue", continueToken)) }
                let response = try await http.execute(try request(path, query: query), timeout: .seconds(15),
                                                      logger: logger)
                let body = try await response.body.collect(upTo: 512 << 20)
                guard response.status == .ok else {
                    let error = Self.status(from: body, httpStatus: Int(response.status.code))
                    if case .gone = error, continueToken != nil, attempts < 5 { continue restart }
                    throw error
                }
                let page: KubeList<Object>
                do {
                    page = try JSONDecoder().decode(KubeList<Object>.self, from: body)
                } catch {
                    throw KubeError.malformed("list \(path): \(error)")
                }
                items += page.items
                if let next = page.metadata.continue, !next.isEmpty {
                    continueToken = next
                } else {
                    return (items, page.metadata.resourceVersion ?? "")
                }
            }
        }
    }

    /// Watches a collection from `resourceVersion` with bookmarks, calling `handle` for every event
    /// in order. Returns when the server ends the stream (its `timeoutSeconds`); throws
    /// ``KubeError/gone(_:)`` when the version is too old, as an HTTP 410 or an ERROR event.
    public func watch<Object: KubeObject>(
        _ path: String, labelSelector: String?, resourceVersion: String, timeoutSeconds: Int, as: Object.Type,
        _ handle: (KubeWatchEvent<Object>) async throws -> Void
    ) async throws {
        var query = [("watch", "true"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
                     ("timeoutSeconds", String(timeoutSeconds))]
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        let response = try await http.execute(try request(path, query: query), timeout: .seconds(15), logger: logger)
        guard response.status == .ok else {
            throw Self.status(from: try await response.body.collect(upTo: 1 << 20),
                              httpStatus: Int(response.status.code))
        }
        var buffer = ByteBuffer()
        let decoder = JSONDecoder()
        for try await chunk in response.body {
            buffer.writeImmutableBuffer(chunk)
            while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer.readSlice(length: newline - buffer.readerIndex)!
                buffer.moveReaderIndex(forwardBy: 1)
                if line.readableBytes == 0 { continue }
                let event: KubeWatchEvent<Object>
                do {
                    let type = try decoder.decode(KubeWatchLine.self, from: line).type
                    switch type {
                    case "ADDED": event = .added(try decoder.decode(KubeTypedWatchLine<Object>.self, from: line).object)
                    case "MODIFIED": event = .modified(try decoder.decode(KubeTypedWatchLine<Object>.self,
                        from: line).object)
                    case "DELETED": event = .deleted(try decoder.decode(KubeTypedWatchLine<Object>.self,
                        from: line).object)
                    case "BOOKMARK":
                        event = .bookmark(resourceVersion: try decoder.decode(KubeTypedWatchLine<KubeBookmark>.self,
                            from: line).object.metadata.resourceVersion ?? resourceVersion)
                    case "ERROR":
                        let status = try decoder.decode(KubeTypedWatchLine<KubeStatus>.self, from: line).object
                        if status.code == 410 { throw KubeError.gone(status.message ?? "") }
                        throw KubeError.status(status)
                    default:
                        throw KubeError.malformed("unknown watch event type \(type)")
                    }
                } catch let error as KubeError {
                    throw error
                } catch {
                    throw KubeError.malformed("watch line \(String(buffer: line)): \(error)")
                }
                try await handle(event)
            }
            buffer.discardReadBytes()
        }
    }
}

/// What an ``Informer`` tells its handler.
public enum InformerEvent<Object: Sendable>: Sendable {
    /// A complete list: replace everything known (first list and every relist after 410 Gone).
    case synced([Object])
    /// An object appeared.
    case added(Object)
    /// An object changed.
    case modified(Object)
    /// An object is gone.
    case deleted(Object)
}

/// List+watch of one collection, as client-go's reflector does it: list, watch from the list's
/// resourceVersion with bookmarks, resume from the last seen version after the stream ends or
/// breaks, and relist on 410 Gone.
public struct Informer<Object: KubeObject>: Sendable {
    let client: KubeClient
    let path: String
    let labelSelector: String?
    let watchTimeoutSeconds: Int
    let logger: Logger

    /// Makes an informer for `path` (e.g. `/api/v1/pods`).
    public init(client: KubeClient, path: String, labelSelector: String? = nil, watchTimeoutSeconds: Int = 300,
                logger: Logger) {
        self.client = client
        self.path = path
        self.labelSelector = labelSelector
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.logger = logger
    }

    /// Runs until the task is cancelled, calling `handle` in order; errors are logged and retried
    /// with backoff (`onError` is told about each).
    public func run(_ handle: @Sendable (InformerEvent<Object>) async -> Void,
                    onError: @Sendable (any Error) async -> Void = { _ in }) async {
        var resourceVersion: String?
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                if resourceVersion == nil {
                    let (items, version) = try await client.list(path, labelSelector: labelSelector, as: Object.self)
                    logger.info("listed", metadata: ["path": "\(path)", "items": "\(items.count)",
                                                     "resourceVersion": "\(version)"])
                    await handle(.synced(items))
                    resourceVersion = version
                }
                // Jitter the server-side timeout so replicas do not reconnect in lockstep.
                let timeout = watchTimeoutSeconds + Int.random(in: 0...max(1, watchTimeoutSeconds / 10))
                try await client.watch(path, labelSelector: labelSelector, resourceVersion: resourceVersion!,
                                       timeoutSeconds: timeout, as: Object.self) { event in
                    switch event {
                    case .added(let object):
                        resourceVersion = object.metadata.resourceVersion ?? resourceVersion
                        await handle(.added(object))
                    case .modified(let object):
                        resourceVersion = object.metadata.resourceVersion ?? resourceVersion
                        await handle(.modified(object))
                    case .deleted(let object):
                        resourceVersion = object.metadata.resourceVersion ?? resourceVersion
                        await handle(.deleted(object))
                    case .bookmark(let version):
                        resourceVersion = version
                    }
                    backoff = .milliseconds(200)
                }
            } catch KubeError.gone(let message) {
                logger.notice("resource version expired; relisting",
                              metadata: ["path": "\(path)", "message": "\(message)"])
                resourceVersion = nil
            } catch {
                if Task.isCancelled { return }
                await onError(error)
                logger.warning("list/watch failed; retrying", metadata: ["path": "\(path)", "error": "\(error)",
                    "delay": "\(backoff)"])
                do { try await Task.sleep(for: backoff * Double.random(in: 0.8...1.0)) } catch { return }
                backoff = min(backoff * 2, .seconds(10))
            }
        }
    }
}
