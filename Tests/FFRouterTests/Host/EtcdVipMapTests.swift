import Etcd
import FFProtocol
import FFRouter
import FreeFlowTestSupport
import Foundation
import XCTest

/// The router's etcd map source against a real etcd: what iphunter writes is what the router resolves.
final class EtcdVipMapTests: XCTestCase {
    func testWritesDeletesAndMovesInEtcdReachTheRoutersLookups() async throws {
        let etcd = try await LocalEtcd.start()
        let client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(5), connectTimeout: .seconds(1)))
        let schema = MapSchema.v1
        func publish(_ vip: String, _ pip: String) async throws {
            let entry = VipEntry(vip: vip, pip: pip, node: "node-\(pip)", namespace: "default", pod: "pod-\(vip)", uid: "u-\(vip)")
            _ = try await client.put(schema.vipKey(vip), MapCodec.encode(entry))
        }
        try await publish("10.9.0.1", "10.0.2.15")
        let map = EtcdVipMap(mirror: MapMirror(client: client), endpoints: etcd.clientURL)
        let mirror = Task { await map.run() }
        let vip1 = IPv4Address("10.9.0.1")!, vip2 = IPv4Address("10.9.0.2")!

        try await eventually("the listed entry resolves") { map.physicalIP(for: vip1) == IPv4Address("10.0.2.15") }
        XCTAssertNil(map.physicalIP(for: vip2), "an unknown vip has no pip")

        try await publish("10.9.0.2", "10.0.2.16")
        try await eventually("a new pod resolves") { map.physicalIP(for: vip2) == IPv4Address("10.0.2.16") }
        try await publish("10.9.0.1", "10.0.2.16")
        try await eventually("a moved pod resolves to its new node") { map.physicalIP(for: vip1) == IPv4Address("10.0.2.16") }
        _ = try await client.delete(.key(schema.vipKey("10.9.0.2")))
        try await eventually("a deleted pod no longer resolves") { map.physicalIP(for: vip2) == nil }

        let summary = map.summary
        XCTAssertEqual(summary.entries, 1)
        XCTAssertGreaterThan(summary.revision, 1)
        XCTAssertTrue(summary.source.hasPrefix("etcd http://127.0.0.1:"), summary.source)

        // etcd down: the last snapshot stays in force, lookups do not wait.
        await etcd.halt()
        XCTAssertEqual(map.physicalIP(for: vip1), IPv4Address("10.0.2.16"))
        try await etcd.resume()

        mirror.cancel()
        await mirror.value
        try await client.shutdown()
        await etcd.stop()
    }

    func testTheMapIsNotReadyUntilTheMirrorsFirstListAndThenSaysSoInItsSummary() async throws {
        let etcd = try await LocalEtcd.start()
        let client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(2), connectTimeout: .seconds(1)))
        let entry = VipEntry(vip: "10.9.0.1", pip: "10.0.2.15", node: "node-a", namespace: "default", pod: "p", uid: "u")
        _ = try await client.put(MapSchema.v1.vipKey(entry.vip), MapCodec.encode(entry))
        let map = EtcdVipMap(mirror: MapMirror(client: client), endpoints: etcd.clientURL)
        // A frozen etcd cannot answer the first list, so nothing can make the map ready meanwhile.
        etcd.freeze()
        let mirror = Task { await map.run() }
        XCTAssertFalse(map.isReady)
        XCTAssertFalse(map.summary.ready)
        XCTAssertTrue(map.summary.source.hasSuffix("(not listed yet)"), map.summary.source)
        XCTAssertNil(map.physicalIP(for: IPv4Address("10.9.0.1")!))
        etcd.thaw()
        try await eventually("the first list makes the map ready", timeout: .seconds(30)) { map.isReady }
        XCTAssertTrue(map.summary.ready)
        XCTAssertEqual(map.summary.source, "etcd \(etcd.clientURL)")
        XCTAssertEqual(map.physicalIP(for: IPv4Address("10.9.0.1")!), IPv4Address("10.0.2.15"))

        mirror.cancel()
        await mirror.value
        try await client.shutdown()
        await etcd.stop()
    }
}
