import Etcd
import FFProtocol
import FFRouterAPI

/// The vip→pip map as `iphunter` publishes it in etcd (docs/etcd-map-schema.md), read through a
/// `MapMirror`: listed at revision R, watched from R+1, relisted after compaction. Lookups read the
/// mirror's immutable snapshot and never wait for etcd; while etcd is down the last snapshot stays in force.
public final class EtcdVipMap: VipResolver {
    /// The mirror; `run()` keeps it current.
    public let mirror: MapMirror
    private let endpoints: String

    /// A map over `mirror`, whose etcd is at `endpoints` (for status).
    public init(mirror: MapMirror, endpoints: String) {
        self.mirror = mirror
        self.endpoints = endpoints
    }

    /// Keeps the mirror current until cancelled.
    public func run() async { await mirror.run() }

    /// See `VipResolver`.
    public func physicalIP(for vip: IPv4Address) -> IPv4Address? {
        mirror.snapshot.lookup(vip: vip.description).flatMap { IPv4Address($0.pip) }
    }

    /// See `VipResolver`.
    public var summary: MapSummary {
        let snapshot = mirror.snapshot
        let ready = mirror.isReady
        return MapSummary(entries: snapshot.vips.count, revision: snapshot.revision,
                          source: ready ? "etcd \(endpoints)" : "etcd \(endpoints) (not listed yet)", ready: ready)
    }

    /// See `VipResolver`: ready once the mirror's first list completed.
    public var isReady: Bool { mirror.isReady }
}
