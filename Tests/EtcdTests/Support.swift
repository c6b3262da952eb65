import Etcd
import FreeFlowTestSupport
import Foundation

/// Runs `body` against a fresh etcd and a client for it; always stops etcd and the client.
func withEtcd(
    extraArguments: [String] = [],
    _ body: (LocalEtcd, EtcdClient) async throws -> Void
) async throws {
    let etcd = try await LocalEtcd.start(extraArguments: extraArguments)
    let client: EtcdClient
    do {
        client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(5), connectTimeout: .seconds(1)))
    } catch {
        await etcd.stop()
        throw error
    }
    do {
        try await body(etcd, client)
    } catch {
        try? await client.shutdown()
        await etcd.stop()
        throw error
    }
    try await client.shutdown()
    await etcd.stop()
}

/// The map as a fresh range reads it, decoded like the mirror decodes it.
func freshMap(_ client: EtcdClient, _ schema: MapSchema) async throws -> (revision: Int64, vips: [String: VipEntry], nodes: [String: NodeEntry]) {
    let result = try await client.rangeAll(.prefix(schema.root), pageSize: 50)
    var vips: [String: VipEntry] = [:]
    var nodes: [String: NodeEntry] = [:]
    for kv in result.kvs {
        switch schema.classify(kv.key) {
        case .vip(let vip): vips[vip] = MapCodec.vip(kv.value)
        case .node(let node): nodes[node] = MapCodec.node(kv.value)
        default: break
        }
    }
    return (result.revision, vips, nodes)
}

func vipEntry(_ i: Int, node: String = "node-a", pip: String = "192.168.0.1") -> VipEntry {
    VipEntry(vip: "10.244.\(i / 250).\(i % 250 + 1)", pip: pip, node: node, namespace: "default", pod: "pod-\(i)", uid: "uid-\(i)")
}

/// Runs a mirror for the duration of `body` and always stops it.
func withMirror(_ mirror: MapMirror, _ body: () async throws -> Void) async throws {
    let task = Task { await mirror.run() }
    do {
        try await body()
    } catch {
        task.cancel()
        await task.value
        throw error
    }
    task.cancel()
    await task.value
}
