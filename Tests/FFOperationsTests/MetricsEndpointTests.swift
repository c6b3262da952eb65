import FFOperations
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Synchronization
import Testing

/// A readiness (or health) answer the test flips between requests.
final class Switch: Sendable {
    let state = Mutex(MetricsEndpoint.Health(healthy: false, detail: "map not listed yet"))

    func set(_ healthy: Bool, _ detail: String) { state.withLock { $0 = .init(healthy: healthy, detail: detail) } }
    var current: MetricsEndpoint.Health { state.withLock { $0 } }
}

@Suite("the operations endpoint")
struct MetricsEndpointTests {
    func application(readiness: Switch?, health: Switch) -> some ApplicationProtocol {
        MetricsEndpoint.makeApplication(
            registry: PrometheusCollectorRegistry(), host: "127.0.0.1", port: 0, logger: Logger(label: "test"),
            readiness: readiness.map { r in { @Sendable in r.current } }, health: { health.current })
    }

    /// GETs `uri` and checks the status and the whole text.
    func expectAnswer(_ client: any TestClientProtocol, _ uri: String, _ status: HTTPResponse.Status, _ text: String) async throws {
        try await client.execute(uri: uri, method: .get) { response in
            #expect(response.status == status, "\(uri)")
            #expect(String(buffer: response.body) == text, "\(uri)")
        }
    }

    @Test func readyzAnswers503WithTheReasonUntilReadyThen200() async throws {
        let readiness = Switch()
        let health = Switch()
        health.set(true, "port active")
        try await application(readiness: readiness, health: health).test(.router) { client in
            try await expectAnswer(client, "/readyz", .serviceUnavailable, "not ready: map not listed yet\n")
            // /healthz has its own closure: it is not the readiness answer.
            try await expectAnswer(client, "/healthz", .ok, "ok: port active\n")
            readiness.set(true, "map listed at revision 7")
            try await expectAnswer(client, "/readyz", .ok, "ready: map listed at revision 7\n")
        }
    }

    @Test func readyzWithoutAReadinessClosureAnswersLikeHealthz() async throws {
        let health = Switch()
        try await application(readiness: nil, health: health).test(.router) { client in
            try await expectAnswer(client, "/readyz", .serviceUnavailable, "not ready: map not listed yet\n")
            try await expectAnswer(client, "/healthz", .serviceUnavailable, "not ready: map not listed yet\n")
            health.set(true, "synced")
            try await expectAnswer(client, "/readyz", .ok, "ready: synced\n")
        }
    }

    @Test func metricsServesThePrometheusText() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "ff_test_total").increment(by: Int64(3))
        let app = MetricsEndpoint.makeApplication(registry: registry, host: "127.0.0.1", port: 0, logger: Logger(label: "test"),
                                                  health: { .init(healthy: true, detail: "") })
        try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("ff_test_total 3"))
            }
        }
    }
}
