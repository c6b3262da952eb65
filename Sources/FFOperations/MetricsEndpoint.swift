import Hummingbird
import Logging
import Prometheus

/// The HTTP side every FreeFlow daemon exposes: `/metrics` in Prometheus text format and `/healthz`.
public enum MetricsEndpoint {
    /// What `/healthz` answers: 200 with the detail when healthy, 503 otherwise.
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

    /// A swift-service-lifecycle service serving `/metrics` from `registry` and `/healthz` from `health` on
    /// `host:port`. `beforeScrape` runs before each scrape, for gauges that are read rather than counted.
    public static func makeApplication(registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger,
                                       beforeScrape: @escaping @Sendable () async -> Void = {},
                                       health: @escaping @Sendable () async -> Health) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            await beforeScrape()
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: buffer))
        }
        router.get("/healthz") { _, _ -> Response in
            let answer = await health()
            return Response(status: answer.healthy ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: "\(answer.healthy ? "ok" : "not ready"): \(answer.detail)\n")))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }
}
