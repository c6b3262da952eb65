import Etcd
import FFClient
import FFProtocol
import FreeFlowTestSupport
import Foundation
import XCTest

/// The whole chain: the map in etcd (as iphunter writes it), two routers mirroring it, two pods talking.
final class RouterEtcdLabTests: XCTestCase {
    func testRoutersResolveVIPsFromTheMapInEtcd() async throws {
        guard ProcessInfo.processInfo.environment["FFLAB"] == "1" else {
            throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run scripts/test")
        }
        let env = ProcessInfo.processInfo.environment
        try await withLocalEtcd { etcd, client in
            for (vip, pip) in [(TwoNodeLab.vipA, env["FFLAB_IP1"]!), (TwoNodeLab.vipB, env["FFLAB_IP2"]!)] {
                let entry = VipEntry(vip: vip.description, pip: pip, node: "node-\(pip)", namespace: "default", pod: "pod", uid: "u-\(vip)")
                _ = try await client.put(MapSchema.v1.vipKey(vip.description), MapCodec.encode(entry))
            }
            let lab = try TwoNodeLab(etcdEndpoint: etcd.clientURL)
            // The routers list the map at start; wait (bounded) until both have both entries.
            for node in [1, 2] {
                try await eventually("node \(node)'s router to list both entries", timeout: .seconds(60),
                                     every: .milliseconds(100)) {
                    try AdminStatus.fetch(lab.admin(node)).map.entries >= 2
                }
                let status = try AdminStatus.fetch(lab.admin(node))
                XCTAssertEqual(status.map.entries, 2, "node \(node)")
                XCTAssertTrue(status.map.source.hasPrefix("etcd "), status.map.source)
            }

            let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
            let b = try ClientEndpoint(RouterConnection(path: lab.socket("node2", "b"), name: "lab-b"))
            try a.connect(toVIP: TwoNodeLab.vipB, qpn: b.qp.qpNum)
            try b.connect(toVIP: TwoNodeLab.vipA, qpn: a.qp.qpNum)
            a.memory.bytes.copyBytes(from: Array("via etcd".utf8))
            try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 1, opcode: .rdmaWrite, remoteAddress: b.address, rkey: b.mr.rkey,
                                                                sgList: [a.sge(offset: 0, length: 8)])])
            XCTAssertEqual(try a.completions().first?.status, .success)
            XCTAssertEqual(String(decoding: b.memory.bytes[0..<8], as: UTF8.self), "via etcd")
            XCTAssertEqual(lab.stopRouters(), [0, 0], "SIGTERM stops both routers cleanly, etcd client included")
        }
    }
}
