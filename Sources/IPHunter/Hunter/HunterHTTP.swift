import FFOperations
import Foundation
import Hummingbird
import Logging
import Prometheus

/// The IP hunter's HTTP endpoints: `/metrics` (Prometheus text) and `/healthz`, served by the endpoint
/// every FreeFlow daemon shares (FFOperations).
public enum HunterHTTP {
    /// Whether the hunter is healthy: it has listed pods and nodes, and a leader has reconciled
    /// at least once (a follower is healthy as soon as it has listed).
    public static func isHealthy(_ stats: IPHunterStats) -> Bool {
        stats.synced && (!stats.isLeader || stats.lastSync != nil)
    }

    /// Makes the HTTP application (a swift-service-lifecycle Service) on `host:port`.
    public static func makeApplication(hunter: IPHunter, registry: PrometheusCollectorRegistry, host: String, port: Int,
                                       logger: Logger) -> some ApplicationProtocol {
        MetricsEndpoint.makeApplication(registry: registry, host: host, port: port, logger: logger) {
            let stats = await hunter.currentStats
            let lastSync = stats.lastSync.map { ISO8601DateFormatter().string(from: $0) } ?? "never"
            return MetricsEndpoint.Health(
                healthy: isHealthy(stats),
                detail: "leader=\(stats.isLeader) listed=\(stats.synced) pods=\(stats.podsSeen) "
                    + "nodes=\(stats.nodesSeen) writes=\(stats.writes) errors=\(stats.errors) last_sync=\(lastSync)")
        }
    }
}
