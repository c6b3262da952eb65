import Foundation
import XCTest

/// Issue 10's lab benchmark (not a test: `scripts/bench-datapath --lab` runs it in the Soft-RoCE guest; the name does
/// not end in LabTests, so CI's lab run leaves it out). perftest through the shim (preloaded, fast path on, in lab pods by vip) against
/// the same perftest directly on rxe0, interleaved (direct, shim, direct, shim, ...), `FFBENCH_RUNS` (default 3) runs
/// each; prints medians, the ratio shim/direct and the spread (max − min) / median of the direct runs, and says when
/// the difference lies inside that spread.
final class DatapathLabBenchmark: XCTestCase {
    private var routers: FakeRouterFixture!

    override func setUpWithError() throws {
        guard ProcessInfo.processInfo.environment["FFBENCH_LAB"] == "1" else {
            throw XCTSkip("SKIPPED: a benchmark; run scripts/bench-datapath --lab")
        }
        routers = try FakeRouterFixture(onRealDevice: true)
    }

    override func tearDown() { routers = nil }

    /// One run of `program` on both sides; the client's result line's `column` (BW average or t_typical), or nil.
    private func run(_ program: String, _ options: [String], way: Way, column: Int) throws -> Double? {
        for _ in 0..<4 {
            // Directly, the two sides use the two node GIDs (indices 1 and 2); in a pod, the one virtual GID (index 0).
            let client = try routers.pair(program, options, way: way) { side in
                if case .direct = way { return ["-x", "\(side + 1)"] }
                return ["-x", "0"]
            }.client
            // The first line of numbers after perftest's "#bytes" header.
            let lines = client.output.split(separator: "\n")
            if let header = lines.firstIndex(where: { $0.contains("#bytes") }), header + 1 < lines.count {
                let fields = lines[header + 1].split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
                if fields.count > column { return fields[column] }
            }
            // Under emulation perftest sometimes cannot fit the CPU clock for its report: run again.
        }
        return nil
    }

    private func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func testPerftestThroughTheShimAgainstDirectOnRxe() throws {
        let runs = Int(ProcessInfo.processInfo.environment["FFBENCH_RUNS"] ?? "") ?? 3
        // (program, options, column of the result line, higher is better)
        var cases: [(String, [String], Int, Bool)] = []
        for program in ["ib_write_bw", "ib_send_bw"] {
            for size in [2048, 8192, 65536, 1_048_576] {
                cases.append((program, ["-s", "\(size)", "-n", size >= 65536 ? "200" : "1000"], 3, true))
            }
        }
        cases.append(("ib_write_lat", ["-s", "2", "-n", "1000"], 4, false))
        cases.append(("ib_send_lat", ["-s", "2", "-n", "1000"], 4, false))
        // FFBENCH_ONLY=TEXT keeps the cases whose program name contains TEXT (e.g. `_lat`).
        if let only = ProcessInfo.processInfo.environment["FFBENCH_ONLY"], !only.isEmpty {
            cases = cases.filter { $0.0.contains(only) }
        }
        var report = ["case | direct median | shim median | ratio shim/direct | direct spread | verdict"]
        for (program, options, column, higherIsBetter) in cases {
            var direct: [Double] = [], shim: [Double] = []
            for _ in 0..<runs {
                if let d = try run(program, options, way: .direct, column: column) { direct.append(d) }
                if let s = try run(program, options, way: .shim(.preload), column: column) { shim.append(s) }
            }
            let label = "\(program) \(options.joined(separator: " "))"
            guard !direct.isEmpty, !shim.isEmpty else {
                XCTFail("\(label): no result (direct \(direct.count), shim \(shim.count) of \(runs))")
                continue
            }
            let d = median(direct), s = median(shim)
            let spread = ((direct.max()! - direct.min()!) / d)
            let ratio = s / d
            let inside = abs(ratio - 1) <= spread
            let verdict = inside ? "inside the direct spread" : ((ratio > 1) == higherIsBetter ? "shim better" : "shim worse")
            let unit = higherIsBetter ? "MB/s" : "µs"
            let added = higherIsBetter ? "" : String(format: " (%+.2f µs)", s - d)
            report.append(String(format: "%@ | %.2f %@ | %.2f %@ | %.3f%@ | %.1f %% | %@", label, d, unit, s, unit, ratio, added, spread * 100, verdict))
        }
        print("datapath lab (\(runs) interleaved runs each):\n" + report.joined(separator: "\n"))
    }
}
