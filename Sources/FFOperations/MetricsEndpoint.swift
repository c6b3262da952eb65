import Hummingbird
import Logging
import Prometheus

/// The HTTP side every FreeFlow daemon exposes: `/metrics` in Prometheus text format, `/healthz` and `/readyz`.
public enum MetricsEndpoint {
    /// What `/healthz` or `/readyz` answers: 200 with the detail when healthy (ready), 503 otherwise.
    public struct Health: Sendable {
        /// Whether the daemon can do its job.
        public var healthy: Bool
        /// One line saying why.
        public var detail: String

        /// A health answer.
        public init(healthy: Bool, detail: String) {
            self.healthy = healthy
            self.detail = detail
        }
    }

    /// A swift-service-lifecycle service serving `/metrics` from `registry`, `/healthz` from `health` and
    /// `/readyz` from `readiness` (nil: the same answer as `/healthz`) on `host:port`. `beforeScrape` runs
    /// before each scrape, for gauges that are read rather than counted.
    public static func makeApplication(registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger,
                                       beforeScrape: @escaping @Sendable () async -> Void = {},
                                       readiness: (@Sendable () async -> Health)? = nil,
                                       health: @escaping @Sendable () async -> Health) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            await beforeScrape()
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: ResponseBody(byteBuffer: buffer))
        }
        router.get("/healthz") { _, _ -> Response in
            answer(await health(), good: "ok")
        }
        router.get("/readyz") { _, _ -> Response in
            answer(await (readiness ?? health)(), good: "ready")
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }

    /// `200 <good>: detail` or `503 not ready: detail`, as text.
    static func answer(_ health: Health, good: String) -> Response {
        Response(status: health.healthy ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: "\(health.healthy ? good : "not ready"): "
                                                                 + "\(health.detail)\n")))
    }
}
