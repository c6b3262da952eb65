import Logging
import Metrics
import Prometheus

/// Process-wide logging and metrics set-up shared by the FreeFlow daemons.
public enum DaemonBootstrap {
    /// Sends swift-log output to stderr at `logLevel` (the container runtime collects it) and
    /// swift-metrics into a new Prometheus registry, which the caller serves with ``MetricsEndpoint``.
    /// Call once, at the start of `run()`: both systems can be bootstrapped only once per process.
    public static func start(logLevel: Logger.Level) -> PrometheusCollectorRegistry {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}
