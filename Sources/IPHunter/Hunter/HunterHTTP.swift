import Foundation
import Hummingbird
import Logging
import Prometheus

/// The IP hunter's HTTP endpoints: `/metrics` (Prometheus text) and `/healthz`.
public enum HunterHTTP {
    /// Whether the hunter is healthy: it has listed pods and nodes, and a leader has reconciled
    /// at least once (a follower is healthy as soon as it has listed).
    public static func isHealthy(_ stats: IPHunterStats) -> Bool {
        stats.synced && (!stats.isLeader || stats.lastSync != nil)
    }

    /// Makes the HTTP application (a swift-service-lifecycle Service) on `host:port`.
    public static func makeApplication(hunter: IPHunter, registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: buffer))
        }
        router.get("/healthz") { _, _ -> Response in
            let stats = await hunter.currentStats
            let healthy = isHealthy(stats)
            let lastSync = stats.lastSync.map { ISO8601DateFormatter().string(from: $0) } ?? "never"
            let text = "\(healthy ? "ok" : "not ready"): leader=\(stats.isLeader) listed=\(stats.synced) pods=\(stats.podsSeen) nodes=\(stats.nodesSeen) writes=\(stats.writes) errors=\(stats.errors) last_sync=\(lastSync)\n"
            return Response(status: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }
}
