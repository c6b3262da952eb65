import CoreMetrics
import FFRouterAPI
import Metrics

/// The router's Prometheus metrics. Counters are counted where things happen; gauges are set from the
/// router's status just before each scrape (`update(from:)`).
public final class RouterMetrics: Sendable {
    let postedOperations: Counter
    let postedBytes: Counter
    let completions: Counter
    let sessions: Counter
    let slowClientsDisconnected: Counter
    private let refusedByReason: [String: Counter]
    private let errorsByKind: [String: Counter]
    private let clients: Gauge
    private let objects: [String: Gauge]
    private let mapEntries: Gauge
    private let mapRevision: Gauge

    /// The kinds of refused requests, as the `kind` label of `ffrouter_errors_total`.
    public static let errorKinds = ["malformed", "protocol", "bad_handle", "verbs", "system", "unknown_vip", "other"]
    static let objectKinds = ["pd", "mr", "comp_channel", "cq", "qp", "srq", "ah", "cm_id", "cm_listener"]

    /// Metrics made by `factory` (the bootstrapped one by default).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        postedOperations = Counter(label: "ffrouter_posted_work_requests_total", factory: factory)
        postedBytes = Counter(label: "ffrouter_posted_bytes_total", factory: factory)
        completions = Counter(label: "ffrouter_polled_completions_total", factory: factory)
        sessions = Counter(label: "ffrouter_sessions_total", factory: factory)
        slowClientsDisconnected = Counter(label: "ffrouter_slow_clients_disconnected_total", factory: factory)
        refusedByReason = Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map {
            ($0.rawValue, Counter(label: "ffrouter_refused_connections_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        errorsByKind = Dictionary(uniqueKeysWithValues: Self.errorKinds.map {
            ($0, Counter(label: "ffrouter_errors_total", dimensions: [("kind", $0)], factory: factory))
        })
        clients = Gauge(label: "ffrouter_clients", factory: factory)
        objects = Dictionary(uniqueKeysWithValues: Self.objectKinds.map {
            ($0, Gauge(label: "ffrouter_objects", dimensions: [("kind", $0)], factory: factory))
        })
        mapEntries = Gauge(label: "ffrouter_map_entries", factory: factory)
        mapRevision = Gauge(label: "ffrouter_map_revision", factory: factory)
    }

    /// Counts one refused request of `kind`.
    func error(_ kind: String) { (errorsByKind[kind] ?? errorsByKind["other"])?.increment() }

    /// Counts one connection refused for `reason`.
    func refused(_ reason: RefusalReason) { refusedByReason[reason.rawValue]?.increment() }

    /// Sets the gauges from the router's state.
    public func update(from status: RouterStatus) {
        clients.record(status.clients.count)
        let o = status.objects
        for (kind, value) in zip(Self.objectKinds, [o.pd, o.mr, o.compChannel, o.cq, o.qp, o.srq, o.ah, o.cmID, o.cmListener]) {
            objects[kind]?.record(value)
        }
        mapEntries.record(status.map.entries)
        mapRevision.record(Double(status.map.revision))
    }
}
