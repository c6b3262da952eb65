import Etcd
import FreeFlowTestSupport
import Foundation
import Testing

/// Collects watch updates in a task so a test can write meanwhile.
final class Collector: @unchecked Sendable {
    let lock = NSLock()
    var events: [WatchEvent] = []
    var updates: [WatchUpdate] = []
    var error: (any Error)?

    var snapshot: (events: [WatchEvent], updates: [WatchUpdate], error: (any Error)?) {
        lock.withLock { (events, updates, error) }
    }

    func start(_ watch: EtcdWatch) -> Task<Void, Never> {
        Task {
            do {
                for try await update in watch {
                    self.lock.withLock {
                        self.updates.append(update)
                        if case .events(let batch) = update { self.events += batch }
                    }
                }
                self.lock.withLock { self.error = EtcdError.watchStreamEnded(reason: "sequence ended") }
            } catch {
                self.lock.withLock { self.error = error }
            }
        }
    }
}

@Suite("etcd watch against a real etcd")
struct WatchTests {
    @Test func watchDeliversPutsAndDeletesWithRevisionsAndPreviousValues() async throws {
        try await withEtcd { _, client in
            let start = try await client.put("/w/seed", "0")
            let collector = Collector()
            let task = collector.start(client.watch(.prefix("/w/"), options: WatchOptions(startRevision: start.revision + 1)))
            try await client.put("/w/a", "1")
            try await client.put("/w/a", "2")
            try await client.delete(.key("/w/a"))
            try await client.put("/other", "ignored")
            // A later marker: once its event is in, the key outside the prefix would have shown before it.
            let sentinel = try await client.put("/w/sentinel", "end")
            try await eventually("the sentinel's event") {
                collector.snapshot.events.contains { $0.kv.key == "/w/sentinel" }
            }
            task.cancel()
            _ = await task.value
            let events = collector.snapshot.events
            #expect(events.map(\.kind) == [.put, .put, .delete, .put])
            #expect(events.map(\.kv.key) == ["/w/a", "/w/a", "/w/a", "/w/sentinel"])
            #expect(events[1].previous?.valueString == "1")
            #expect(events[1].kv.valueString == "2")
            #expect(events[2].previous?.valueString == "2")
            #expect(events.map(\.revision)
                    == [start.revision + 1, start.revision + 2, start.revision + 3, sentinel.revision])
        }
    }

    @Test func watchLosesAndRepeatsNoEventAcrossAnEtcdRestart() async throws {
        try await withEtcd { etcd, client in
            let start = try await client.put("/r/seed", "0")
            let collector = Collector()
            let task = collector.start(client.watch(.prefix("/r/"), options: WatchOptions(startRevision: start.revision + 1, initialBackoff: .milliseconds(200))))
            for i in 0..<30 { try await client.put("/r/\(i)", "\(i)") }
            try await eventually("first 30 events") { collector.snapshot.events.count >= 30 }
            await etcd.halt()
            try await etcd.resume()
            // These writes land while the watch is still disconnected or just reconnecting.
            for i in 30..<60 { try await client.put("/r/\(i)", "\(i)") }
            try await client.delete(.key("/r/3"))
            // A later marker: events come in revision order, so a lost or repeated one shows before the sentinel's.
            let sentinel = try await client.put("/r/sentinel", "end")
            try await eventually("the sentinel's event after the restart", timeout: .seconds(20)) {
                collector.snapshot.events.contains { $0.kv.key == "/r/sentinel" }
            }
            task.cancel()
            _ = await task.value
            let (events, updates, _) = collector.snapshot
            #expect(events.count == 62)
            // Every write is one revision: contiguous revisions mean nothing lost and nothing repeated.
            #expect(events.map(\.revision) == Array((start.revision + 1)...sentinel.revision))
            #expect(sentinel.revision == start.revision + 62)
            #expect(updates.contains { if case .reconnected = $0 { true } else { false } })
        }
    }

    @Test func watchFromACompactedRevisionThrowsCompacted() async throws {
        try await withEtcd { _, client in
            let first = try await client.put("/k/a", "1")
            try await client.put("/k/a", "2")
            let third = try await client.put("/k/a", "3")
            try await client.compact(revision: third.revision)
            var caught: EtcdError?
            do {
                for try await _ in client.watch(.prefix("/k/"), options: WatchOptions(startRevision: first.revision)) {}
            } catch let error as EtcdError {
                caught = error
            }
            #expect(caught == .compacted(requestedRevision: first.revision, compactRevision: third.revision))
        }
    }

    @Test func progressNotificationsReportTheStoreRevision() async throws {
        try await withEtcd(extraArguments: ["--experimental-watch-progress-notify-interval=300ms"]) { _, client in
            let collector = Collector()
            let task = collector.start(client.watch(.prefix("/quiet/"), options: WatchOptions(progressNotify: true)))
            let outside = try await client.put("/loud", "x")
            try await eventually("a progress notification at or past the outside write", timeout: .seconds(10)) {
                collector.snapshot.updates.contains { if case .progress(let r) = $0 { r >= outside.revision } else { false } }
            }
            task.cancel()
            _ = await task.value
            #expect(collector.snapshot.events.isEmpty)
        }
    }

    @Test func watchWithoutReconnectThrowsWhenEtcdStops() async throws {
        try await withEtcd { etcd, client in
            let collector = Collector()
            let task = collector.start(client.watch(.prefix("/s/"), options: WatchOptions(reconnect: false)))
            try await eventually("watch created") { !collector.snapshot.updates.isEmpty }
            await etcd.halt()
            try await eventually("stream end surfaces as an error") { collector.snapshot.error != nil }
            _ = await task.value
            let error = collector.snapshot.error
            #expect(error is EtcdError)
            if case .watchStreamEnded? = error as? EtcdError {} else { Issue.record("expected watchStreamEnded, got \(String(describing: error))") }
            try await etcd.resume()
        }
    }

    @Test func watchSkipsADeadEndpointAndUsesTheNextOne() async throws {
        try await withEtcd { etcd, client in
            let dead = "http://127.0.0.1:\(try LocalEtcdPort.free())"
            let both = try EtcdClient(EtcdConfiguration(endpoints: [dead, etcd.clientURL], connectTimeout: .milliseconds(500)))
            let collector = Collector()
            let task = collector.start(both.watch(.prefix("/m/")))
            try await eventually("watch created through the live endpoint") { !collector.snapshot.updates.isEmpty }
            try await client.put("/m/a", "1")
            try await eventually("event arrives") { collector.snapshot.events.count == 1 }
            task.cancel()
            _ = await task.value
            try await both.shutdown()
        }
    }

    @Test func cancellingTheConsumingTaskEndsTheWatch() async throws {
        try await withEtcd { _, client in
            let collector = Collector()
            let task = collector.start(client.watch(.prefix("/c/")))
            try await eventually("watch created") { !collector.snapshot.updates.isEmpty }
            task.cancel()
            _ = await task.value
            #expect(collector.snapshot.error is CancellationError)
        }
    }
}

@Suite("map mirror against a real etcd")
struct MapMirrorTests {
    let schema = MapSchema(root: "/freeflow-test/v1/")

    func assertMirrorMatches(_ mirror: MapMirror, _ client: EtcdClient) async throws {
        let fresh = try await freshMap(client, schema)
        let snapshot = try await mirror.waitForRevision(fresh.revision, timeout: .seconds(20))
        #expect(Dictionary(uniqueKeysWithValues: snapshot.vips.map { ($0.key, $0.value) }) == fresh.vips)
        #expect(Dictionary(uniqueKeysWithValues: snapshot.nodes.map { ($0.key, $0.value) }) == fresh.nodes)
    }

    @Test func mirrorListsThenAppliesChangesInOrder() async throws {
        try await withEtcd { _, client in
            for i in 0..<20 { try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))) }
            try await client.put(schema.nodeKey("node-a"), MapCodec.encode(NodeEntry(node: "node-a", pip: "192.168.0.1", addresses: ["InternalIP=192.168.0.1"], uid: "n1")))
            try await client.put(schema.vipKey("10.9.9.9"), "not json")
            let mirror = MapMirror(client: client, schema: schema)
            try await withMirror(mirror) {
                try await assertMirrorMatches(mirror, client)
                #expect(mirror.snapshot.vips.count == 20)
                #expect(mirror.snapshot.lookup(vip: vipEntry(3).vip)?.pod == "pod-3")
                #expect(mirror.snapshot.lookup(vip: "10.1.1.1") == nil)
                #expect(mirror.stats.invalidValues == 1)
                var moved = vipEntry(3, node: "node-b", pip: "192.168.0.2")
                moved.uid = "uid-3b"
                try await client.put(schema.vipKey(moved.vip), MapCodec.encode(moved))
                try await client.delete(.key(schema.vipKey(vipEntry(4).vip)))
                try await assertMirrorMatches(mirror, client)
                #expect(mirror.snapshot.lookup(vip: moved.vip) == moved)
                #expect(mirror.snapshot.lookup(vip: vipEntry(4).vip) == nil)
            }
        }
    }

    @Test func mirrorEqualsAFreshRangeAfterAnEtcdRestart() async throws {
        try await withEtcd { etcd, client in
            let mirror = MapMirror(client: client, schema: schema, watchOptions: WatchOptions(initialBackoff: .milliseconds(300)))
            try await withMirror(mirror) {
                for i in 0..<50 { try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))) }
                try await assertMirrorMatches(mirror, client)
                await etcd.halt()
                try await etcd.resume()
                for i in 50..<100 { try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))) }
                for i in stride(from: 0, to: 50, by: 5) { try await client.delete(.key(schema.vipKey(vipEntry(i).vip))) }
                try await assertMirrorMatches(mirror, client)
                #expect(mirror.snapshot.vips.count == 90)
                #expect(mirror.stats.lists == 1)
                #expect(mirror.stats.reconnects >= 1)
            }
        }
    }

    @Test func compactionDuringADisconnectLeadsToARelistAndACorrectMirror() async throws {
        try await withEtcd { etcd, client in
            // A long reconnect delay leaves time to write and compact before the mirror comes back.
            let mirror = MapMirror(client: client, schema: schema, watchOptions: WatchOptions(initialBackoff: .seconds(3), maxBackoff: .seconds(3)))
            try await withMirror(mirror) {
                for i in 0..<10 { try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))) }
                try await assertMirrorMatches(mirror, client)
                await etcd.halt()
                try await etcd.resume()
                for i in 10..<20 { try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))) }
                try await client.delete(.key(schema.vipKey(vipEntry(0).vip)))
                let last = try await client.put("/unrelated", "x")
                try await client.compact(revision: last.revision)
                try await assertMirrorMatches(mirror, client)
                #expect(mirror.stats.lists == 2)
                #expect(mirror.snapshot.vips.count == 19)
            }
        }
    }
}
