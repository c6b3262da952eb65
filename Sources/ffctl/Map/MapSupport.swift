import ArgumentParser
import Etcd
import FFCommandLine
import Foundation
import Logging

/// ffctl's way of using the shared etcd options (FFCommandLine): errors become one line and exit status 1.
extension EtcdOptions {
    /// Runs `body` with a client, turning etcd errors into a one-line message and exit code 1.
    func withClient<R: Sendable>(_ body: (EtcdClient) async throws -> R) async throws -> R {
        do {
            // The watch logs reconnections itself in its output; library logs only for problems.
            var logger = Logger(label: "ffctl")
            logger.logLevel = .warning
            return try await EtcdClient.withClient(configuration(), logger: logger, body)
        } catch let error as EtcdError {
            // Compaction has its own exit status and advice (ffctl watch).
            if case .compacted = error { throw error }
            throw FFCtlFailure(message: "ffctl: \(error)")
        }
    }
}

/// Prints a message to stderr and exits with status 1 (ArgumentParser prints it for us).
struct FFCtlFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Sorts IPv4 addresses numerically, anything else after them by text.
func ipOrder(_ a: String, _ b: String) -> Bool {
    func parts(_ s: String) -> [Int]? {
        let p = s.split(separator: ".").compactMap { Int($0) }
        return p.count == 4 ? p : nil
    }
    switch (parts(a), parts(b)) {
    case (let x?, let y?): return x.lexicographicallyPrecedes(y)
    case (.some, nil): return true
    case (nil, .some): return false
    default: return a < b
    }
}

/// Renders rows as left-aligned columns separated by two spaces.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// The IPv4-mapped GID (`::ffff:a.b.c.d`) RoCEv2 uses for an IPv4 address.
func mappedGID(_ ip: String) -> String {
    ip.contains(":") ? ip : "::ffff:\(ip)"
}

/// JSON text of an encodable value, sorted keys, one line.
func jsonLine<T: Encodable>(_ value: T) -> String {
    String(decoding: MapCodec.encode(value), as: UTF8.self)
}
