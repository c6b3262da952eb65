import Etcd
import FreeFlowTestSupport
import Foundation
import IPHunter
import Testing

@Suite("IP hunter against a fake API server and a real etcd")
struct IPHunterTests {
    @Test func initialSyncPublishesRunningPodsAndNodesAndSkipsTheOthers() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("nodes", nodeJSON("node-b", ip: "192.168.0.2"))
            try await world.kube.apply("pods", podJSON("web-0", ip: "10.244.1.5", node: "node-a"))
            try await world.kube.apply("pods", podJSON("web-1", ip: "10.244.2.5", node: "node-b", namespace: "prod"))
            try await world.kube.apply("pods", podJSON("pending", ip: nil, node: "node-a", phase: "Pending"))
            try await world.kube.apply("pods", podJSON("hostnet", ip: "192.168.0.1", node: "node-a", hostNetwork: true))
            try await world.kube.apply("pods", podJSON("done", ip: "10.244.1.9", node: "node-a", phase: "Succeeded"))
            try await world.kube.apply("pods", podJSON("failed", ip: "10.244.1.10", node: "node-b", phase: "Failed"))
            let hunter = try world.startHunter()
            try await eventually("map published") {
                let vips = try await world.vips().count, nodes = try await world.nodes().count
                return vips == 2 && nodes == 2
            }
            let vips = try await world.vips()
            #expect(vips["10.244.1.5"] == VipEntry(vip: "10.244.1.5", pip: "192.168.0.1", node: "node-a", namespace: "default", pod: "web-0", uid: "uid-default-web-0"))
            #expect(vips["10.244.2.5"]?.pip == "192.168.0.2")
            #expect(vips["10.244.2.5"]?.namespace == "prod")
            let nodes = try await world.nodes()
            #expect(nodes["node-a"]?.pip == "192.168.0.1")
            #expect(nodes["node-a"]?.addresses == ["InternalIP=192.168.0.1", "Hostname=node-a"])
            try await hunter.waitForSync()
            let stats = await hunter.hunter.currentStats
            #expect(stats.podsSeen == 6)
            #expect(stats.writes == 4)
            #expect(stats.isLeader)
            await hunter.stop()
        }
    }

    @Test func podChurnIsPublishedKeyByKey() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("nodes", nodeJSON("node-b", ip: "192.168.0.2"))
            for i in 0..<20 { try await world.kube.apply("pods", podJSON("p\(i)", ip: "10.244.0.\(i + 1)", node: "node-a")) }
            let hunter = try world.startHunter()
            try await eventually("initial map") { try await world.vips().count == 20 }
            try await hunter.waitForSync()
            let afterSync = await hunter.hunter.currentStats.writes
            // etcd's own record of what the hunter writes from now on, in revision order.
            let synced = try await world.client.rangeAll(.prefix(world.schema.vipsPrefix)).revision
            let written = WatchedWrites()
            let watching = written.start(world.client.watch(.prefix(world.schema.vipsPrefix),
                                                            options: WatchOptions(startRevision: synced + 1)))
            // A pod gets an IP late, one is deleted, one finishes, one is rescheduled with a new IP on node-b.
            try await world.kube.apply("pods", podJSON("late", ip: nil, node: "node-b", phase: "Pending"))
            try await world.kube.apply("pods", podJSON("late", ip: "10.244.9.9", node: "node-b"))
            await world.kube.delete("pods", namespace: "default", name: "p0")
            try await world.kube.apply("pods", podJSON("p1", ip: "10.244.0.2", node: "node-a", phase: "Succeeded"))
            await world.kube.delete("pods", namespace: "default", name: "p2")
            try await world.kube.apply("pods", podJSON("p2", ip: "10.244.5.5", node: "node-b", uid: "uid-p2-new"))
            try await eventually("churn published") {
                let placement = try await world.placement()
                return placement.count == 19 && placement["10.244.9.9"] == "node-b 192.168.0.2 default/late"
                    && placement["10.244.5.5"] == "node-b 192.168.0.2 default/p2" && placement["10.244.0.1"] == nil
                    && placement["10.244.0.2"] == nil && placement["10.244.0.3"] == nil
            }
            // A later marker: the churn's events all reached the hunter before this pod's, so whatever the churn
            // writes, etcd shows before this pod's key.
            try await world.kube.apply("pods", podJSON("sentinel", ip: "10.244.7.7", node: "node-a"))
            let sentinel = "PUT \(world.schema.vipKey("10.244.7.7"))"
            try await eventually("the sentinel pod's key written") { written.writes.contains(sentinel) }
            // Only the touched keys were written: 1 add (late) + 3 deletes (p0, p1, old p2) + 1 add (new p2).
            let churn = written.writes.prefix { $0 != sentinel }
            let expected = [("PUT", "10.244.9.9"), ("DELETE", "10.244.0.1"), ("DELETE", "10.244.0.2"),
                            ("DELETE", "10.244.0.3"), ("PUT", "10.244.5.5")]
                .map { "\($0.0) \(world.schema.vipKey($0.1))" }
            #expect(churn.sorted() == expected.sorted())
            // The counters are updated when the transaction returns, just after etcd shows the change.
            try await eventually("counters caught up") { await hunter.hunter.currentStats.writes - afterSync >= 6 }
            #expect(await hunter.hunter.currentStats.writes - afterSync == 6, "the churn's 5 keys and the sentinel's")
            watching.cancel()
            _ = await watching.value
            await hunter.stop()
        }
    }

    @Test func nodeIPChangeMovesEveryVipOnThatNode() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("nodes", nodeJSON("node-b", ip: "192.168.0.2"))
            for i in 0..<5 { try await world.kube.apply("pods", podJSON("a\(i)", ip: "10.1.0.\(i + 1)", node: "node-a")) }
            try await world.kube.apply("pods", podJSON("b0", ip: "10.2.0.1", node: "node-b"))
            let hunter = try world.startHunter()
            try await eventually("initial map") { try await world.vips().count == 6 }
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.7.7"))
            try await eventually("vips on node-a moved") {
                let vips = try await world.vips()
                return vips.values.filter { $0.node == "node-a" }.allSatisfy { $0.pip == "192.168.7.7" }
            }
            #expect(try await world.vips()["10.2.0.1"]?.pip == "192.168.0.2")
            #expect(try await world.nodes()["node-a"]?.pip == "192.168.7.7")
            await hunter.stop()
        }
    }

    @Test func relistAfterGoneFindsPodsDeletedWhileDisconnected() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            for i in 0..<10 { try await world.kube.apply("pods", podJSON("p\(i)", ip: "10.3.0.\(i + 1)", node: "node-a")) }
            let hunter = try world.startHunter()
            try await eventually("initial map") { try await world.vips().count == 10 }
            // The API server goes away; meanwhile pods are deleted and history is compacted.
            await world.kube.setUnavailable(true)
            await world.kube.dropWatches()
            for i in 0..<4 { await world.kube.delete("pods", namespace: "default", name: "p\(i)") }
            try await world.kube.apply("pods", podJSON("new", ip: "10.3.1.1", node: "node-a"))
            await world.kube.compactHistory()
            await world.kube.setUnavailable(false)
            try await eventually("relisted map") {
                let vips = try await world.vips()
                return vips.count == 7 && vips["10.3.0.1"] == nil && vips["10.3.1.1"] != nil
            }
            #expect(await world.kube.listCount("pods") >= 2)
            await hunter.stop()
        }
    }

    @Test func goneInTheMiddleOfAWatchLeadsToARelist() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("pods", podJSON("p0", ip: "10.4.0.1", node: "node-a"))
            let hunter = try world.startHunter()
            try await eventually("initial map") { try await world.vips().count == 1 }
            await world.kube.sendBookmarks()
            await world.kube.expireWatches()
            try await world.kube.apply("pods", podJSON("p1", ip: "10.4.0.2", node: "node-a"))
            try await eventually("pod added after the relist is published") { try await world.vips().count == 2 }
            #expect(await world.kube.listCount("pods") == 2)
            #expect(await world.kube.listCount("nodes") == 2)
            await hunter.stop()
        }
    }

    @Test func reconcileWritesOnlyTheDifferenceAndLeavesOtherKeysAlone() async throws {
        try await HunterWorld.with { world in
            let schema = world.schema
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            for i in 0..<5 { try await world.kube.apply("pods", podJSON("p\(i)", ip: "10.5.0.\(i + 1)", node: "node-a")) }
            // etcd already holds: three correct vips, one wrong, one stale, the node, and a foreign key.
            for i in 0..<3 {
                let entry = VipEntry(vip: "10.5.0.\(i + 1)", pip: "192.168.0.1", node: "node-a", namespace: "default", pod: "p\(i)", uid: "uid-default-p\(i)")
                try await world.client.put(schema.vipKey(entry.vip), MapCodec.encode(entry))
            }
            let wrong = VipEntry(vip: "10.5.0.4", pip: "192.168.9.9", node: "node-z", namespace: "default", pod: "p3", uid: "uid-default-p3")
            try await world.client.put(schema.vipKey(wrong.vip), MapCodec.encode(wrong))
            try await world.client.put(schema.vipKey("10.5.9.9"), MapCodec.encode(VipEntry(vip: "10.5.9.9", pip: "1.1.1.1", node: "gone", namespace: "x", pod: "y", uid: "z")))
            try await world.client.put(schema.nodeKey("node-a"), MapCodec.encode(NodeEntry(node: "node-a", pip: "192.168.0.1", addresses: ["InternalIP=192.168.0.1", "Hostname=node-a"], uid: "node-uid-node-a")))
            try await world.client.put(schema.root + "operator-note", "keep me")
            let before = try await world.client.rangeAll(.prefix(schema.root))
            let hunter = try world.startHunter()
            try await eventually("reconciled") {
                let vips = try await world.vips()
                return vips.count == 5 && vips["10.5.0.4"]?.pip == "192.168.0.1" && vips["10.5.9.9"] == nil
            }
            try await hunter.waitForSync()
            // wrong fixed, stale deleted, p4 added: three writes; the correct keys kept their revisions.
            #expect(await hunter.hunter.currentStats.writes == 3)
            let after = try await world.client.rangeAll(.prefix(schema.root))
            for key in (0..<3).map({ schema.vipKey("10.5.0.\($0 + 1)") }) + [schema.nodeKey("node-a")] {
                #expect(after.kvs.first { $0.key == key }?.modRevision == before.kvs.first { $0.key == key }?.modRevision)
            }
            #expect(try await world.client.get(schema.root + "operator-note")?.valueString == "keep me")
            await hunter.stop()
        }
    }

    @Test func aWriteBehindTheHuntersBackIsRepairedWithoutClobberingLaterState() async throws {
        try await HunterWorld.with { world in
            let schema = world.schema
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("pods", podJSON("p0", ip: "10.6.0.1", node: "node-a"))
            let hunter = try world.startHunter()
            try await eventually("initial map") { try await world.vips().count == 1 }
            // Someone else rewrites the key; the hunter's cached revision is now stale.
            try await world.client.put(schema.vipKey("10.6.0.1"), "tampered")
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.9"))
            try await eventually("the guarded write conflicted, re-read and repaired the key") {
                try await world.vips()["10.6.0.1"]?.pip == "192.168.0.9"
            }
            try await eventually("the conflict was counted") { await hunter.hunter.currentStats.conflicts >= 1 }
            await hunter.stop()
        }
    }

    @Test func changesMadeWhileEtcdIsDownArePublishedWhenItIsBack() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            for i in 0..<5 { try await world.kube.apply("pods", podJSON("p\(i)", ip: "10.10.0.\(i + 1)", node: "node-a")) }
            let hunter = try world.startHunter(leaderElection: true, identity: "hunter-1", ttl: 2)
            try await eventually("initial map") { try await world.vips().count == 5 }
            await world.etcd.halt()
            await world.kube.delete("pods", namespace: "default", name: "p0")
            try await world.kube.apply("pods", podJSON("p9", ip: "10.10.0.9", node: "node-a"))
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.7"))
            // Gone for longer than the lease: the hunter sees a whole TTL without a renewal and steps down.
            try await eventually("the hunter to step down while etcd is gone", timeout: .seconds(15)) {
                await !hunter.hunter.currentStats.isLeader
            }
            try await world.etcd.resume()
            try await eventually("map repaired after etcd came back", timeout: .seconds(30)) {
                let vips = try await world.vips()
                return vips.count == 5 && vips["10.10.0.1"] == nil && vips["10.10.0.9"] != nil
                    && vips.values.allSatisfy { $0.pip == "192.168.0.7" }
            }
            // It stepped down while etcd was gone for longer than the TTL; it leads again once it
            // has revoked its own stale lease, without waiting for that lease to expire.
            try await eventually("the hunter leads again", timeout: .seconds(10)) { await hunter.hunter.currentStats.isLeader }
            await hunter.stop()
        }
    }

    @Test func labelSelectorLimitsThePods() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("pods", podJSON("rdma", ip: "10.7.0.1", node: "node-a", labels: ["freeflow": "true"]))
            try await world.kube.apply("pods", podJSON("plain", ip: "10.7.0.2", node: "node-a"))
            let hunter = try world.startHunter(labelSelector: "freeflow=true")
            try await eventually("selected pod published") { try await world.vips().keys.sorted() == ["10.7.0.1"] }
            try await world.kube.apply("pods", podJSON("rdma-2", ip: "10.7.0.3", node: "node-a", labels: ["freeflow": "true"]))
            try await eventually("second selected pod published") { try await world.vips().count == 2 }
            #expect(try await world.vips()["10.7.0.2"] == nil)
            await hunter.stop()
        }
    }
}

@Suite("IP hunter leader election")
struct LeaderElectionTests {
    @Test func twoHuntersElectOneLeaderAndACrashedLeaderIsReplacedWithinTheLeaseTTL() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            try await world.kube.apply("pods", podJSON("p0", ip: "10.8.0.1", node: "node-a"))
            let first = try world.startHunter(leaderElection: true, identity: "hunter-1", ttl: 2)
            let second = try world.startHunter(leaderElection: true, identity: "hunter-2", ttl: 2)
            try await eventually("one leader published the map") { try await world.vips().count == 1 }
            try await Task.sleep(for: .milliseconds(500))
            let leaders = [await first.hunter.currentStats.isLeader, await second.hunter.currentStats.isLeader]
            #expect(leaders.filter { $0 }.count == 1)
            let (leader, follower) = leaders[0] ? (first, second) : (second, first)
            let holder = try await world.client.get(world.schema.leaderKey)?.valueString
            #expect(holder == (leaders[0] ? "hunter-1" : "hunter-2"))
            #expect(await follower.hunter.currentStats.writes == 0)
            // The leader dies without resigning; the follower must take over within the TTL (+ slack).
            let crashed = ContinuousClock.now
            await leader.crash()
            try await eventually("follower leads", timeout: .seconds(10)) { await follower.hunter.currentStats.isLeader }
            let takeover = ContinuousClock.now - crashed
            // The lease expires at most 2 s after the last renewal; allow scheduling slack on a loaded machine.
            #expect(takeover < .seconds(5), "takeover took \(takeover) with a 2 s lease")
            try await world.kube.apply("pods", podJSON("p1", ip: "10.8.0.2", node: "node-a"))
            try await eventually("new leader writes") { try await world.vips().count == 2 }
            await follower.stop()
            #expect(try await world.client.get(world.schema.leaderKey) == nil, "a graceful stop resigns")
        }
    }

    @Test func gracefulStopHandsOverAtOnce() async throws {
        try await HunterWorld.with { world in
            try await world.kube.apply("nodes", nodeJSON("node-a", ip: "192.168.0.1"))
            let first = try world.startHunter(leaderElection: true, identity: "hunter-1", ttl: 10)
            try await eventually("first leads") { await first.hunter.currentStats.isLeader }
            let second = try world.startHunter(leaderElection: true, identity: "hunter-2", ttl: 10)
            try await Task.sleep(for: .milliseconds(300))
            #expect(await !second.hunter.currentStats.isLeader)
            let stopped = ContinuousClock.now
            await first.stop()
            try await eventually("second leads well before the 10 s TTL", timeout: .seconds(5)) { await second.hunter.currentStats.isLeader }
            #expect(ContinuousClock.now - stopped < .seconds(3))
            await second.stop()
        }
    }
}
