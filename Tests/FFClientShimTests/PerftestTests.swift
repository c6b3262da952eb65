import Foundation
import XCTest

/// perftest between pod a (server) and pod b (client) through the fake router, drop-in mode: perftest links
/// libmlx5, libefa and librdmacm, which only load because the drop-in defines all of libibverbs' symbols.
final class PerftestTests: XCTestCase {
    private var router: FakeRouterFixture!

    override func setUpWithError() throws { router = try FakeRouterFixture() }
    override func tearDown() { router = nil }

    private func perftest(_ program: String, _ options: [String] = [], mode: ShimMode = .dropIn,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let (client, served) = try router.runPair(program, mode: mode) { ["-x", "0", "-p", "\($0)", "-n", "100"] + options }
        let label = "\(program) \(options.joined(separator: " ")) (\(mode))"
        XCTAssertEqual(client.status, 0, "\(label) client: \(client.output) \(client.errors)", file: file, line: line)
        XCTAssertEqual(served.status, 0, "\(label) server: \(served.output) \(served.errors)", file: file, line: line)
        for side in [client, served] {
            XCTAssertTrue(side.output.contains("Device         : freeflow0"), "\(label): \(side.output)", file: file, line: line)
        }
        // Bandwidth tests report on both sides, latency tests on the client.
        XCTAssertTrue(client.output.contains("#bytes"), "\(label): no results in \(client.output)", file: file, line: line)
        XCTAssertTrue(client.output.contains("GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:09:00:01"), client.output, file: file, line: line)
    }

    func testSendBandwidthDropIn() throws { try perftest("ib_send_bw") }
    func testSendBandwidthWithEventsDropIn() throws { try perftest("ib_send_bw", ["-e"]) }
    func testSendBandwidthUDDropIn() throws { try perftest("ib_send_bw", ["-c", "UD"]) }
    func testSendLatencyDropIn() throws { try perftest("ib_send_lat") }
    func testReadBandwidthDropIn() throws { try perftest("ib_read_bw") }
    func testReadLatencyPreloaded() throws { try perftest("ib_read_lat", mode: .preload) }
    // perftest's QPs allow REMOTE_WRITE without LOCAL_WRITE: valid for a QP (the MR rule is not the QP's).
    func testWriteBandwidthDropIn() throws { try perftest("ib_write_bw") }
    func testWriteLatencyPreloaded() throws { try perftest("ib_write_lat", mode: .preload) }
    func testAtomicBandwidthDropIn() throws { try perftest("ib_atomic_bw") }
}
