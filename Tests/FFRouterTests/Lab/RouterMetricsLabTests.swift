import FFClient
import FFProtocol
import FreeFlowTestSupport
import Foundation
import XCTest

/// The router's Prometheus endpoint reflects clients, objects, posts and refusals.
final class RouterMetricsLabTests: XCTestCase {
    func testMetricsCountClientsObjectsPostsAndRefusedRequests() throws {
        let lab = try TwoNodeLab()
        // The HTTP endpoint may come up a moment after the sockets.
        var health = (0, "")
        try eventuallyBlocking("node 1's /healthz to answer 200", timeout: .seconds(30), every: .milliseconds(200)) {
            health = try lab.http(node: 1, "/healthz")
            return health.0 == 200
        }
        XCTAssertTrue(health.1.hasPrefix("ok: device rxe0 port 1 PORT_ACTIVE"), health.1)

        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        let b = try ClientEndpoint(RouterConnection(path: lab.socket("node2", "b"), name: "lab-b"))
        try a.connect(toVIP: TwoNodeLab.vipB, qpn: b.qp.qpNum)
        try b.connect(toVIP: TwoNodeLab.vipA, qpn: a.qp.qpNum)
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 1, opcode: .rdmaWrite, remoteAddress: b.address, rkey: b.mr.rkey,
                                                            sgList: [a.sge(offset: 0, length: 100)])])
        XCTAssertEqual(try a.completions().first?.status, .success)
        XCTAssertThrowsError(try a.connection.destroyQP(QPHandle(rawValue: 999)))
        XCTAssertThrowsError(try a.connection.createAH(pd: a.pd, attributes: AHAttributes(
            globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: IPv4Address("10.9.9.9")!)), port: 1)))

        let (code, text) = try lab.http(node: 1, "/metrics")
        XCTAssertEqual(code, 200)
        let lines = Set(text.split(separator: "\n").map(String.init))
        for expected in ["ffrouter_clients 1.0", #"ffrouter_objects{kind="qp"} 1.0"#, #"ffrouter_objects{kind="mr"} 1.0"#,
                         "ffrouter_posted_work_requests_total 1", "ffrouter_posted_bytes_total 100",
                         #"ffrouter_errors_total{kind="bad_handle"} 1"#, #"ffrouter_errors_total{kind="unknown_vip"} 1"#,
                         "ffrouter_map_entries 3.0", "ffrouter_sessions_total 1", "ffrouter_polled_completions_total 1"] {
            XCTAssertTrue(lines.contains(expected), "missing `\(expected)` in:\n\(text)")
        }
    }
}
