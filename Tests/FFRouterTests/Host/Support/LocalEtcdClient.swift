import Etcd
import FreeFlowTestSupport

/// Runs `body` against a fresh local etcd and a client for it (generous timeouts for a loaded machine); always stops
/// both, also when `body` throws.
func withLocalEtcd(_ body: (LocalEtcd, EtcdClient) async throws -> Void) async throws {
    let etcd = try await LocalEtcd.start()
    let client: EtcdClient
    do {
        client = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(10), connectTimeout: .seconds(3)))
    } catch {
        await etcd.stop()
        throw error
    }
    var failure: (any Error)?
    do { try await body(etcd, client) } catch { failure = error }
    try? await client.shutdown()
    await etcd.stop()
    if let failure { throw failure }
}
