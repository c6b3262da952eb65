import Etcd
import FreeFlowTestSupport
import Foundation
import Testing

/// A watch stream whose member stops answering (SIGSTOP keeps the TCP connection open, so nothing
/// breaks at the socket level) and a mirror waiting for its first list.
@Suite("silent watch streams and map readiness against a real etcd")
struct SilentStreamTests {
    let schema = MapSchema(root: "/freeflow-silent/v1/")

    func silent(_ updates: [WatchUpdate]) -> Int {
        updates.filter { if case .silent = $0 { true } else { false } }.count
    }

    @Test func aFrozenEtcdIsDeclaredSilentWithinTheBoundAndTheWatchResumesAtItsRevision() async throws {
        try await withEtcd { etcd, client in
            let bound = Duration.seconds(2)
            let seed = try await client.put(schema.vipKey(vipEntry(0).vip), MapCodec.encode(vipEntry(0)))
            let collector = Collector()
            let watch = collector.start(client.watch(.prefix(schema.root), options: WatchOptions(
                startRevision: seed.revision + 1, initialBackoff: .milliseconds(200), silenceTimeout: bound)))
            let mirror = MapMirror(client: client, schema: schema, watchOptions: WatchOptions(initialBackoff: .milliseconds(200), silenceTimeout: bound))
            try await withMirror(mirror) {
                try await mirror.waitUntilReady(timeout: .seconds(20))
                let first = try await client.put(schema.vipKey(vipEntry(1).vip), MapCodec.encode(vipEntry(1)))
                try await eventually("the watch delivers the first change") { collector.snapshot.events.count == 1 }
                _ = try await mirror.waitForRevision(first.revision, timeout: .seconds(20))

                // Absence can only be checked over a span: two bounds of quiet on a healthy member mean
                // several answered probes, and neither stream may count as silent.
                try await Task.sleep(for: bound * 2)
                #expect(silent(collector.snapshot.updates) == 0)
                #expect(mirror.stats.silentStreams == 0)

                etcd.freeze()
                let frozenAt = ContinuousClock.now
                try await eventually("the watch declares its stream silent", timeout: bound * 5) { silent(collector.snapshot.updates) >= 1 }
                try await eventually("the mirror's watch declares its stream silent", timeout: bound * 5) { mirror.stats.silentStreams >= 1 }
                let detection = frozenAt.duration(to: .now)
                etcd.thaw()

                // Changes right after the thaw land while the watches are still reconnecting.
                var last = first.revision
                for i in 2..<12 { last = try await client.put(schema.vipKey(vipEntry(i).vip), MapCodec.encode(vipEntry(i))).revision }
                last = try await client.delete(.key(schema.vipKey(vipEntry(1).vip))).revision
                try await eventually("the watch delivers every change after the thaw", timeout: .seconds(30)) { collector.snapshot.events.count >= 12 }
                let fresh = try await freshMap(client, schema)
                let snapshot = try await mirror.waitForRevision(fresh.revision, timeout: .seconds(30))
                #expect(Dictionary(uniqueKeysWithValues: snapshot.vips.map { ($0.key, $0.value) }) == fresh.vips)
                #expect(snapshot.lookup(vip: vipEntry(11).vip) == vipEntry(11))
                #expect(snapshot.lookup(vip: vipEntry(1).vip) == nil)
                #expect(mirror.stats.reconnects >= 1)
                #expect(mirror.stats.lists == 1, "resumed by watch, not by a relist")

                let (events, updates, error) = collector.snapshot
                #expect(error == nil)
                // One revision per write: contiguous revisions mean nothing lost and nothing repeated.
                #expect(events.map(\.revision) == Array((seed.revision + 1)...last))
                let resumes = updates.compactMap { if case .reconnected(let from, _, let cause) = $0 { (from, cause) } else { nil } }
                #expect(resumes.first?.0 == first.revision + 1, "resumed right after the last change it had seen")
                #expect(resumes.first?.1.contains("silent") == true)
                // The check runs every half bound, each probe waiting at most half a bound: on an idle
                // machine detection takes about one bound; the slack absorbs a loaded CI host.
                #expect(detection < bound * 4, "declared silent after \(detection)")
            }
            watch.cancel()
            _ = await watch.value
        }
    }

    @Test func mirrorIsNotReadyUntilItsFirstListCompletes() async throws {
        try await withEtcd { etcd, client in
            try await client.put(schema.vipKey(vipEntry(1).vip), MapCodec.encode(vipEntry(1)))
            let mirror = MapMirror(client: client, schema: schema)
            #expect(!mirror.isReady)
            etcd.freeze()
            try await withMirror(mirror) {
                // A frozen etcd cannot answer the list, so the mirror cannot become ready meanwhile.
                await #expect(throws: MapMirrorNotReady.self) { try await mirror.waitUntilReady(timeout: .seconds(1)) }
                #expect(!mirror.isReady)
                #expect(mirror.snapshot.vips.isEmpty)
                etcd.thaw()
                try await mirror.waitUntilReady(timeout: .seconds(30))
                #expect(mirror.isReady)
                #expect(mirror.snapshot.lookup(vip: vipEntry(1).vip) == vipEntry(1))
            }
        }
    }
}
