import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A fake Kubernetes API server for tests and benchmarks that speaks the real list/watch protocol
/// for `/api/v1/pods` and `/api/v1/nodes` over HTTP/1.1:
///
/// - list with `limit`/`continue` pages and `metadata.resourceVersion`;
/// - `?watch=true&resourceVersion=RV` streams every change after RV as chunked, newline-delimited
///   `{"type":"ADDED|MODIFIED|DELETED","object":{…}}`, plus `BOOKMARK` events (object with only
///   `metadata.resourceVersion`) when `allowWatchBookmarks=true`, and ends after `timeoutSeconds`;
/// - a resourceVersion older than the retained history gets
///   `{"type":"ERROR","object":{"kind":"Status","code":410,…}}`, an expired continue token gets HTTP 410, like the
///   real apiserver;
/// - ``expireWatches()`` sends that ERROR 410 into open watches (mid-watch), ``dropWatches()`` cuts them.
///
/// Objects are JSON; the server sets `metadata.resourceVersion` (one counter for all resources, as
/// etcd's revision is for the real server) and keeps a bounded history of changes.
public final class FakeKubeAPIServer: Sendable {
    let group: ServiceGroup
    let runTask: Task<Void, any Error>
    /// `http://127.0.0.1:<port>`.
    public let url: String

    /// Starts the server on a free loopback port.
    public static func start() async throws -> FakeKubeAPIServer {
        let store = FakeKubeStore()
        let router = Router()
        for resource in ["pods", "nodes"] {
            router.get("/api/v1/\(resource)") { request, _ -> Response in
                await store.handle(resource: resource, query: request.uri.queryParameters)
            }
        }
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "fake-kube-apiserver")
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: logger
        )
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        let task = Task { try await group.run() }
        var port = 0
        for await p in portStream { port = p }
        guard port > 0 else { throw LocalEtcdError(description: "fake API server did not start") }
        return FakeKubeAPIServer(store: store, group: group, task: task, url: "http://127.0.0.1:\(port)")
    }

    private init(store: FakeKubeStore, group: ServiceGroup, task: Task<Void, any Error>, url: String) {
        self.storeRef = store
        self.group = group
        self.runTask = task
        self.url = url
    }

    let storeRef: FakeKubeStore

    /// Stops the server, ending open watches first.
    public func stop() async {
        await storeRef.dropWatches()
        await group.triggerGracefulShutdown()
        _ = try? await runTask.value
    }

    /// Creates or replaces an object (JSON with `metadata.name` and, for pods, `metadata.namespace`);
    /// returns its new resourceVersion.
    @discardableResult
    public func apply(_ resource: String, _ object: Data) async throws -> Int {
        try await storeRef.apply(resource, object)
    }

    /// Deletes an object; returns the resourceVersion of the deletion (nil if it did not exist).
    @discardableResult
    public func delete(_ resource: String, namespace: String?, name: String) async -> Int? {
        await storeRef.delete(resource, key: FakeKubeStore.key(namespace, name))
    }

    /// Forgets history up to now: watches from an older resourceVersion get 410 Gone.
    public func compactHistory() async { await storeRef.compact() }

    /// Sends ERROR 410 into every open watch and ends it, as the apiserver does when the watch
    /// cache drops a slow watcher's window; also forgets history so resuming needs a relist.
    public func expireWatches() async { await storeRef.expireWatches() }

    /// Ends every open watch without a word (apiserver restart, network cut).
    public func dropWatches() async { await storeRef.dropWatches() }

    /// Sends a BOOKMARK to every open watch that asked for bookmarks.
    public func sendBookmarks() async { await storeRef.sendBookmarks() }

    /// Rejects every request with HTTP 503 while true (API server down).
    public func setUnavailable(_ unavailable: Bool) async { await storeRef.setUnavailable(unavailable) }

    /// Number of watch requests served so far per resource.
    public func watchCount(_ resource: String) async -> Int { await storeRef.watchCounts[resource, default: 0] }

    /// Number of list requests served so far per resource (first page of each list).
    public func listCount(_ resource: String) async -> Int { await storeRef.listCounts[resource, default: 0] }

    /// Current resourceVersion.
    public func resourceVersion() async -> Int { await storeRef.version }
}

/// The fake server's state: objects, history and open watches.
actor FakeKubeStore {
    struct Change {
        var version: Int
        var type: String
        var object: [String: Any]
    }

    final class Watcher: @unchecked Sendable {
        let resource: String
        let continuation: AsyncStream<ByteBuffer>.Continuation
        let bookmarks: Bool
        let selector: [(String, String)]
        init(resource: String, continuation: AsyncStream<ByteBuffer>.Continuation, bookmarks: Bool,
             selector: [(String, String)]) {
            self.resource = resource
            self.continuation = continuation
            self.bookmarks = bookmarks
            self.selector = selector
        }
    }

    var version = 100
    var objects: [String: [String: [String: Any]]] = [:]
    var history: [String: [Change]] = [:]
    /// Oldest resourceVersion a watch may start from.
    var oldestWatchable = 0
    var watchers: [UUID: Watcher] = [:]
    var unavailable = false
    var watchCounts: [String: Int] = [:]
    var listCounts: [String: Int] = [:]
    let historyLimit = 100_000

    static func key(_ namespace: String?, _ name: String) -> String { "\(namespace ?? "")/\(name)" }

    func setUnavailable(_ value: Bool) { unavailable = value }

    func apply(_ resource: String, _ data: Data) throws -> Int {
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              var metadata = object["metadata"] as? [String: Any], let name = metadata["name"] as? String else {
            throw LocalEtcdError(description: "object without metadata.name")
        }
        version += 1
        metadata["resourceVersion"] = String(version)
        object["metadata"] = metadata
        let key = Self.key(metadata["namespace"] as? String, name)
        let type = objects[resource]?[key] == nil ? "ADDED" : "MODIFIED"
        objects[resource, default: [:]][key] = object
        record(resource, Change(version: version, type: type, object: object))
        return version
    }

    func delete(_ resource: String, key: String) -> Int? {
        guard var object = objects[resource]?.removeValue(forKey: key) else { return nil }
        version += 1
        var metadata = object["metadata"] as? [String: Any] ?? [:]
        metadata["resourceVersion"] = String(version)
        object["metadata"] = metadata
        record(resource, Change(version: version, type: "DELETED", object: object))
        return version
    }

    func record(_ resource: String, _ change: Change) {
        history[resource, default: []].append(change)
        if history[resource]!.count > historyLimit {
            let dropped = history[resource]!.removeFirst()
            oldestWatchable = max(oldestWatchable, dropped.version)
        }
        let line = Self.line(type: change.type, object: change.object)
        for watcher in watchers.values where watcher.resource == resource
            && Self.matches(change.object, watcher.selector) {
            watcher.continuation.yield(line)
        }
    }

    func compact() { oldestWatchable = version }

    func expireWatches() {
        compact()
        let status = Self.status(code: 410, reason: "Expired", message: "too old resource version")
        for watcher in watchers.values {
            watcher.continuation.yield(Self.line(type: "ERROR", object: status))
            watcher.continuation.finish()
        }
        watchers = [:]
    }

    func dropWatches() {
        for watcher in watchers.values { watcher.continuation.finish() }
        watchers = [:]
    }

    func sendBookmarks() {
        for watcher in watchers.values where watcher.bookmarks {
            let kind = watcher.resource == "pods" ? "Pod" : "Node"
            watcher.continuation.yield(Self.line(type: "BOOKMARK", object: [
                "kind": kind, "apiVersion": "v1", "metadata": ["resourceVersion": String(version)],
            ]))
        }
    }

    func removeWatcher(_ id: UUID) { watchers[id] = nil }

    static func status(code: Int, reason: String, message: String) -> [String: Any] {
        ["kind": "Status", "apiVersion": "v1", "metadata": [String: Any](), "status": "Failure", "message": message,
         "reason": reason, "code": code]
    }

    static func line(type: String, object: [String: Any]) -> ByteBuffer {
        var data = (try? JSONSerialization.data(withJSONObject: ["type": type, "object": object])) ?? Data()
        data.append(UInt8(ascii: "\n"))
        return ByteBuffer(bytes: data)
    }

    static func selector(_ text: String?) -> [(String, String)] {
        guard let text, !text.isEmpty else { return [] }
        return text.split(separator: ",").compactMap { term in
            let parts = term.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }

    static func matches(_ object: [String: Any], _ selector: [(String, String)]) -> Bool {
        guard !selector.isEmpty else { return true }
        let labels = (object["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
        return selector.allSatisfy { labels[$0.0] == $0.1 }
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func handle(resource: String, query: Parameters) -> Response {
        if unavailable {
            return Self.json(.serviceUnavailable, Self.status(code: 503, reason: "ServiceUnavailable",
                                                              message: "fake apiserver is down"))
        }
        let selector = Self.selector(query.get("labelSelector"))
        if query.get("watch") == "true" || query.get("watch") == "1" {
            return watch(resource: resource, query: query, selector: selector)
        }
        return list(resource: resource, query: query, selector: selector)
    }

    func list(resource: String, query: Parameters, selector: [(String, String)]) -> Response {
        let limit = query.get("limit").flatMap(Int.init) ?? 0
        var offset = 0
        var listVersion = version
        if let token = query.get("continue") {
            let parts = token.split(separator: ":").compactMap { Int($0) }
            guard parts.count == 2, parts[1] >= oldestWatchable else {
                return Self.json(.gone, Self.status(code: 410, reason: "Expired",
                                                    message: "The provided continue parameter is too old"))
            }
            offset = parts[0]
            listVersion = parts[1]
        } else {
            listCounts[resource, default: 0] += 1
        }
        let all = (objects[resource] ?? [:]).sorted {
            $0.key < $1.key
        }.map(\.value).filter { Self.matches($0, selector) }
        let end = limit > 0 ? min(all.count, offset + limit) : all.count
        let page = offset < all.count ? Array(all[offset..<end]) : []
        var metadata: [String: Any] = ["resourceVersion": String(listVersion)]
        if end < all.count { metadata["continue"] = "\(end):\(listVersion)" }
        let kind = resource == "pods" ? "PodList" : "NodeList"
        return Self.json(.ok, ["kind": kind, "apiVersion": "v1", "metadata": metadata, "items": page])
    }

    func watch(resource: String, query: Parameters, selector: [(String, String)]) -> Response {
        watchCounts[resource, default: 0] += 1
        let from = query.get("resourceVersion").flatMap(Int.init) ?? version
        let bookmarks = query.get("allowWatchBookmarks") == "true"
        let timeout = query.get("timeoutSeconds").flatMap(Int.init) ?? 1800
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        if from < oldestWatchable {
            continuation.yield(Self.line(type: "ERROR", object: Self.status(code: 410, reason: "Expired",
                message: "too old resource version: \(from) (\(oldestWatchable))")))
            continuation.finish()
        } else {
            for change in history[resource] ?? [] where change.version > from && Self.matches(change.object, selector) {
                continuation.yield(Self.line(type: change.type, object: change.object))
            }
            let id = UUID()
            watchers[id] = Watcher(resource: resource, continuation: continuation, bookmarks: bookmarks,
                                   selector: selector)
            continuation.onTermination = { _ in Task { await self.removeWatcher(id) } }
            Task {
                try? await Task.sleep(for: .seconds(timeout))
                continuation.finish()
            }
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody { writer in
            for await buffer in stream {
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        })
    }
}
