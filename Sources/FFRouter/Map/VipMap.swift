import FFProtocol
import FFRouterAPI
import Foundation
import Synchronization

/// Where the router learns which node (physical IP) hosts a pod's virtual IP. The etcd mirror and the
/// static map file both provide it; lookups must be cheap and never block.
public protocol VipResolver: Sendable {
    /// The physical IP of the node hosting `vip`, or nil when the map does not know it.
    func physicalIP(for vip: IPv4Address) -> IPv4Address?
    /// The map's size and revision, for status and metrics.
    var summary: MapSummary { get }
    /// Whether the map holds what its source says rather than nothing yet: a file once loaded, the etcd
    /// mirror once its first list completed. Until then every translation would fail, so the router is not ready.
    var isReady: Bool { get }
}

/// A vip→pip map read from a file of lines `VIP PIP [NODE]` (`#` starts a comment), for clusters without
/// etcd and for tests. `reload()` re-reads the file; a bad file keeps the previous map and says why.
public final class StaticVipMap: VipResolver {
    private let path: String
    private let state: Mutex<(entries: [IPv4Address: IPv4Address], revision: Int64)>

    /// Loads `path`; throws with the line number of the first malformed line.
    public init(path: String) throws {
        self.path = path
        self.state = Mutex((try Self.parse(path: path), 1))
    }

    /// Re-reads the file; on error the previous map stays in force.
    public func reload() throws {
        let entries = try Self.parse(path: path)
        state.withLock { $0 = (entries, $0.revision + 1) }
    }

    /// Parses the map text; throws `MapFileError` naming the line.
    static func parse(text: String, source: String) throws -> [IPv4Address: IPv4Address] {
        var entries: [IPv4Address: IPv4Address] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count >= 2, let vip = IPv4Address(String(fields[0])), let pip = IPv4Address(String(fields[1])) else {
                throw MapFileError(source: source, line: number + 1, text: String(rawLine))
            }
            entries[vip] = pip
        }
        return entries
    }

    private static func parse(path: String) throws -> [IPv4Address: IPv4Address] {
        try parse(text: try String(contentsOfFile: path, encoding: .utf8), source: path)
    }

    /// See `VipResolver`.
    public func physicalIP(for vip: IPv4Address) -> IPv4Address? { state.withLock { $0.entries[vip] } }

    /// See `VipResolver`.
    public var summary: MapSummary {
        state.withLock { MapSummary(entries: $0.entries.count, revision: $0.revision, source: "file \(path)") }
    }

    /// See `VipResolver`: `init` loaded the file or threw, so a static map is always ready.
    public var isReady: Bool { true }
}

/// A malformed line in a map file.
public struct MapFileError: Error, CustomStringConvertible {
    /// The file.
    public var source: String
    /// 1-based line number.
    public var line: Int
    /// The line as written.
    public var text: String
    /// "map.txt:3: expected `VIP PIP [NODE]`, got `10.1.0.x 10.0.2.15`".
    public var description: String { "\(source):\(line): expected `VIP PIP [NODE]` with IPv4 addresses, got `\(text)`" }
}
