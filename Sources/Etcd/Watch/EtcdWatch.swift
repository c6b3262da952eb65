import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat

/// One change to a key as a watch reports it.
public struct WatchEvent: Sendable, Hashable {
    /// PUT (create or update) or DELETE.
    public enum Kind: String, Sendable {
        /// The key was created or updated.
        case put = "PUT"
        /// The key was deleted (or its lease ended).
        case delete = "DELETE"
    }

    /// What happened.
    public var kind: Kind
    /// The key-value after the change (for DELETE: the key and the delete's revision, no value).
    public var kv: KeyValue
    /// The key-value before the change, when the watch asked for it and it was not compacted.
    public var previous: KeyValue?

    /// The revision of the change.
    public var revision: Int64 { kv.modRevision }

    init(_ wire: WireEvent) {
        kind = wire.type == "DELETE" ? .delete : .put
        kv = KeyValue(wire.kv ?? WireKeyValue())
        previous = wire.prev_kv.map(KeyValue.init)
    }
}

/// What a watch yields.
public enum WatchUpdate: Sendable {
    /// The watch was created; `revision` is the store revision at creation. Yielded once.
    case created(revision: Int64)
    /// Changes, in revision order, each revision exactly once.
    case events([WatchEvent])
    /// A progress notification: every change up to `revision` has been delivered.
    case progress(revision: Int64)
    /// The stream broke and was re-established from `resumeRevision` (no change was lost or repeated).
    case reconnected(resumeRevision: Int64, endpoint: String, cause: String)
    /// The stream at `endpoint` went silent (see ``WatchOptions/silenceTimeout``) and was dropped; a
    /// ``reconnected(resumeRevision:endpoint:cause:)`` follows once a new stream is established.
    case silent(endpoint: String, cause: String)
}

/// Settings of a watch.
public struct WatchOptions: Sendable {
    /// First revision to report; 0 means "changes after now".
    public var startRevision: Int64
    /// Ask etcd for the previous key-value of every change.
    public var prevKV: Bool
    /// Ask etcd for periodic progress notifications (every `--experimental-watch-progress-notify-interval`
    /// of the member, 10 minutes by default). Each one advances the resume revision and proves the stream alive.
    public var progressNotify: Bool
    /// Reconnect after the stream breaks (etcd restart, network); false makes a break a thrown error.
    public var reconnect: Bool
    /// First delay before reconnecting; doubled per failed attempt up to `maxBackoff`.
    public var initialBackoff: Duration
    /// Longest delay between reconnection attempts.
    public var maxBackoff: Duration
    /// How long a stream may go without an event or a progress notification before it counts as broken
    /// (a stopped member or a half-open connection delivers neither, and nothing else would notice).
    /// Once half of it has passed quietly, the watch asks the stream's member a cheap serializable read
    /// with the other half as deadline, and again every half while the quiet lasts; a member that does not
    /// answer makes the stream silent: it is dropped, ``WatchUpdate/silent(endpoint:cause:)`` is yielded,
    /// and the watch reconnects from its last revision + 1. nil turns the check off.
    public var silenceTimeout: Duration?

    /// Makes watch options.
    public init(startRevision: Int64 = 0, prevKV: Bool = true, progressNotify: Bool = true, reconnect: Bool = true,
                initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5),
                silenceTimeout: Duration? = .seconds(30)) {
        self.startRevision = startRevision
        self.prevKV = prevKV
        self.progressNotify = progressNotify
        self.reconnect = reconnect
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.silenceTimeout = silenceTimeout
    }
}

extension EtcdClient {
    /// Watches keys (`/v3/watch`, one chunked response of newline-delimited `{"result":…}`).
    ///
    /// The sequence resumes from the last seen revision + 1 after the stream breaks, so it never
    /// loses or repeats a change. Compaction of the revision it needs throws
    /// ``EtcdError/compacted(requestedRevision:compactRevision:)`` and any other cancel throws
    /// ``EtcdError/watchCanceled(reason:)``; the sequence never ends silently.
    public func watch(_ keys: KeyRange, options: WatchOptions = WatchOptions()) -> EtcdWatch {
        EtcdWatch(client: self, keys: keys, options: options)
    }
}

/// An endless sequence of ``WatchUpdate``s; see ``EtcdClient/watch(_:options:)``.
public struct EtcdWatch: AsyncSequence, Sendable {
    /// The sequence's element.
    public typealias Element = WatchUpdate
    let client: EtcdClient
    let keys: KeyRange
    let options: WatchOptions

    /// Makes the iterator; the HTTP stream opens on the first `next()`.
    public func makeAsyncIterator() -> Iterator {
        Iterator(session: WatchSession(client: client, keys: keys, options: options))
    }

    /// Pulls from the HTTP body on demand, so a slow consumer slows the stream instead of buffering it.
    public struct Iterator: AsyncIteratorProtocol {
        let session: WatchSession
        /// Next update; throws on compaction, cancel, or a break when reconnecting is off.
        public mutating func next() async throws -> WatchUpdate? {
            try await session.next()
        }
    }
}

/// The state of one watch: the open stream, unparsed bytes, and the next revision to ask for.
final class WatchSession {
    let client: EtcdClient
    let keys: KeyRange
    let options: WatchOptions
    var body: StreamBody?
    var endpoint = ""
    var buffer = ByteBuffer()
    var pending: [WatchUpdate] = []
    /// The revision the next stream starts from: last delivered revision + 1.
    var nextRevision: Int64
    var announcedCreation = false
    var failures = 0
    var lastCause = ""
    /// The last stream was dropped as silent: the next creation is logged as its resumption.
    var resumingAfterSilence = false
    /// When the open stream last delivered bytes, and the gap before the latest chunk.
    var lastChunkAt = ContinuousClock.now
    var lastChunkGap = Duration.zero
    /// The longest wait for a progress notification seen on the open stream: once the member is known
    /// to send them, missing two of them makes the stream silent even if the member answers reads.
    var progressEvery: Duration?

    init(client: EtcdClient, keys: KeyRange, options: WatchOptions) {
        self.client = client
        self.keys = keys
        self.options = options
        nextRevision = options.startRevision
    }

    func next() async throws -> WatchUpdate? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            try Task.checkCancellation()
            if body == nil {
                do {
                    try await open()
                } catch let error as EtcdError where error.isPermanent {
                    // A member that is still starting answers with assorted transient codes;
                    // only a request etcd will never accept ends the watch here.
                    throw error
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    try await streamBroke("\(error)")
                }
                continue
            }
            do {
                if let chunk = try await nextChunk() {
                    let now = ContinuousClock.now
                    lastChunkGap = lastChunkAt.duration(to: now)
                    lastChunkAt = now
                    buffer.writeImmutableBuffer(chunk)
                    try parseLines()
                } else {
                    try await streamBroke("etcd closed the watch stream")
                }
            } catch let silence as SilentStream {
                try streamSilenced(silence.cause)
            } catch let error as EtcdError {
                body = nil
                throw error
            } catch is CancellationError {
                body = nil
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                try await streamBroke("\(error)")
            }
        }
    }

    /// Drops the stream and waits before the next attempt (or throws when reconnecting is off).
    func streamBroke(_ cause: String) async throws {
        body = nil
        buffer.clear()
        // Failed attempts after a silence keep the silence as the cause the resumption reports.
        if !resumingAfterSilence { lastCause = cause }
        guard options.reconnect else { throw EtcdError.watchStreamEnded(reason: cause) }
        let delay = min(options.maxBackoff, options.initialBackoff * (1 << min(failures, 16)))
        failures += 1
        client.logger.info("etcd watch stream broke; reconnecting", metadata: [
            "cause": "\(cause)", "resume_revision": "\(nextRevision)", "delay": "\(delay)",
        ])
        // Jitter of up to 20% so many watchers do not reconnect in lockstep.
        let jitter = Double.random(in: 0.8...1.0)
        try await Task.sleep(for: delay * jitter)
    }

    /// Drops a stream that went silent and queues the notice; the next `next()` reconnects at once
    /// (the silence already waited longer than any backoff would).
    func streamSilenced(_ cause: String) throws {
        body = nil
        buffer.clear()
        lastCause = "stream silent: \(cause)"
        client.logger.warning("etcd watch stream silent; dropping it and reconnecting", metadata: [
            "endpoint": "\(endpoint)", "cause": "\(cause)", "resume_revision": "\(nextRevision)",
        ])
        guard options.reconnect else { throw EtcdError.watchStreamEnded(reason: lastCause) }
        resumingAfterSilence = true
        pending.append(.silent(endpoint: endpoint, cause: cause))
    }

    /// The next chunk of the open stream (nil at its end), raced against the silence check; throws
    /// ``SilentStream`` when the check gave up on the stream, which cancels the pending read and with it
    /// the HTTP request.
    func nextChunk() async throws -> ByteBuffer? {
        let body = body!
        guard let quiet = options.silenceTimeout else { return try await body.next() }
        let (client, keys, endpoint, progressEvery) = (client, keys, endpoint, progressEvery)
        return try await withThrowingTaskGroup(of: Arrival.self) { group in
            group.addTask { .chunk(try await body.next()) }
            group.addTask {
                .silent(try await Self.silenceCheck(client: client, keys: keys, endpoint: endpoint, quiet: quiet,
                                                    progressEvery: progressEvery))
            }
            defer { group.cancelAll() }
            switch try await group.next()! {
            case .chunk(let chunk): return chunk
            case .silent(let cause): throw SilentStream(cause: cause)
            }
        }
    }

    enum Arrival: Sendable {
        case chunk(ByteBuffer?)
        case silent(String)
    }

    /// Thrown by ``nextChunk()`` for a stream that went silent.
    struct SilentStream: Error {
        var cause: String
    }

    /// Returns (with the reason) once the stream counts as silent: after each `quiet / 2` without a byte
    /// it asks the stream's member for a serializable count of one key, with `quiet / 2` as deadline; a
    /// member that answers keeps the stream, unless the stream is known to deliver progress
    /// notifications every `progressEvery` and two of them are overdue (the connection died, the member
    /// did not). Runs until cancelled (a chunk arrived) otherwise.
    ///
    /// Why a probe rather than etcd's own progress mechanisms: etcd 3.4's progress notifications come
    /// every `--experimental-watch-progress-notify-interval` (10 minutes unless the operator lowers it),
    /// far past any useful bound, and a `progress_request` would have to be written on the request body
    /// after the response began, which the JSON gateway's HTTP/1.1 server (Go's net/http before
    /// `EnableFullDuplex`) does not read. Progress notifications are still requested: they reset the
    /// quiet clock and advance the resume revision for free.
    static func silenceCheck(client: EtcdClient, keys: KeyRange, endpoint: String, quiet: Duration,
                             progressEvery: Duration?) async throws -> String {
        let half = quiet / 2
        let start = ContinuousClock.now
        while true {
            try await Task.sleep(for: half)
            if let progressEvery, start.duration(to: .now) >= max(quiet, progressEvery * 2) {
                return "no event for \(start.duration(to: .now)), and no progress notification although the member "
                     + "sent one every \(progressEvery)"
            }
            do {
                try await client.probeMember(endpoint, key: keys.wireKey, timeout: half)
            } catch {
                if Task.isCancelled { throw CancellationError() }
                return "no event or progress for \(start.duration(to: .now)), and the member did not answer a read "
                     + "within \(half): \(error)"
            }
        }
    }

    func open() async throws {
        let request = WireWatchRequest(create_request: WireWatchCreateRequest(
            key: keys.wireKey,
            range_end: keys.wireRangeEnd,
            start_revision: nextRevision == 0 ? nil : I64(nextRevision),
            progress_notify: options.progressNotify ? true : nil,
            prev_kv: options.prevKV ? true : nil
        ))
        let payload = try EtcdClient.encoder.encode(request)
        var lastError: any Error = EtcdError.unavailable(endpoints: client.configuration.endpoints,
                                                         underlying: "no attempt")
        for candidate in client.endpointOrder() {
            do {
                let response = try await client.streamHTTP.execute(
                    EtcdClient.request(candidate, "/v3/watch", body: payload),
                    timeout: client.configuration.requestTimeout.timeAmount,
                    logger: client.logger
                )
                guard response.status == .ok else {
                    let reply = try await response.body.collect(upTo: 1 << 20)
                    throw EtcdClient.serverError(status: response.status, body: reply)
                }
                client.markPreferred(candidate)
                endpoint = candidate
                lastChunkAt = .now
                progressEvery = nil
                body = StreamBody(response.body.makeAsyncIterator())
                return
            } catch let error as EtcdError where error.isPermanent {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    func parseLines() throws {
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readerIndex
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytes == 0 { continue }
            let decoded: WireStreamLine<WireWatchResponse>
            do {
                decoded = try JSONDecoder().decode(WireStreamLine<WireWatchResponse>.self, from: line)
            } catch {
                throw EtcdError.malformedResponse("watch line \(String(buffer: line)): \(error)")
            }
            if let error = decoded.error {
                // The gateway reports a broken gRPC stream (member stopping) this way: reconnect.
                throw StreamLineError(message: error.message ?? "stream error \(error.grpc_code ?? -1)")
            }
            if let result = decoded.result { try handle(result) }
        }
        buffer.discardReadBytes()
    }

    struct StreamLineError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    func handle(_ response: WireWatchResponse) throws {
        let headerRevision = response.header?.revision.int64 ?? 0
        if response.canceled == true {
            let compactRevision = response.compact_revision.int64
            if compactRevision > 0 {
                throw EtcdError.compacted(requestedRevision: nextRevision, compactRevision: compactRevision)
            }
            throw EtcdError.watchCanceled(reason: response.cancel_reason ?? "")
        }
        if response.created == true {
            if nextRevision == 0 { nextRevision = headerRevision + 1 }
            if !announcedCreation {
                announcedCreation = true
                pending.append(.created(revision: headerRevision))
            } else {
                if resumingAfterSilence {
                    resumingAfterSilence = false
                    client.logger.notice("etcd watch resumed after a silent stream", metadata: [
                        "endpoint": "\(endpoint)", "resume_revision": "\(nextRevision)",
                    ])
                }
                pending.append(.reconnected(resumeRevision: nextRevision, endpoint: endpoint, cause: lastCause))
            }
            failures = 0
            return
        }
        let events = (response.events ?? []).map(WatchEvent.init).filter { $0.revision >= nextRevision }
        if let last = events.last {
            nextRevision = last.revision + 1
            pending.append(.events(events))
        } else if (response.events ?? []).isEmpty, headerRevision > 0 {
            // An empty response is a progress notification: nothing below headerRevision is pending.
            nextRevision = max(nextRevision, headerRevision + 1)
            progressEvery = max(progressEvery ?? .zero, lastChunkGap)
            pending.append(.progress(revision: headerRevision))
        }
    }
}

/// The HTTP body of one watch stream. A class so that the read can run in a child task of
/// ``WatchSession/nextChunk()`` while the silence check runs beside it; only one task reads at a time.
final class StreamBody: @unchecked Sendable {
    var iterator: HTTPClientResponse.Body.AsyncIterator

    init(_ iterator: HTTPClientResponse.Body.AsyncIterator) {
        self.iterator = iterator
    }

    /// The next chunk, nil at the end of the body.
    func next() async throws -> ByteBuffer? {
        try await iterator.next()
    }
}

extension EtcdClient {
    /// Asks the member at `endpoint` (only that one) for a serializable count of `key`, within `timeout`:
    /// the cheapest read that proves the member serves requests (no quorum, no value read).
    func probeMember(_ endpoint: String, key: Data, timeout: Duration) async throws {
        let request = WireRangeRequest(key: key, count_only: true, serializable: true)
        _ = try await call("/v3/kv/range", request, as: WireRangeResponse.self, endpoints: [endpoint], timeout: timeout)
    }
}
