import FFClient
import FFProtocol
import FFSystem
import FreeFlowTestSupport
import Foundation
import XCTest

/// Clients on two "nodes", each through its own router process, with only virtual GIDs.
final class RouterLabTests: XCTestCase {
    var lab: TwoNodeLab!

    override func setUpWithError() throws {
        lab = try TwoNodeLab()
    }

    override func tearDown() {
        lab = nil
    }

    private func write(_ text: String, to endpoint: ClientEndpoint, at offset: Int) {
        let bytes = Array(text.utf8)
        endpoint.memory.bytes.baseAddress!.advanced(by: offset).copyMemory(from: bytes, byteCount: bytes.count)
    }

    private func read(_ endpoint: ClientEndpoint, at offset: Int, count: Int) -> String {
        String(decoding: endpoint.memory.bytes[offset..<offset + count], as: UTF8.self)
    }

    func testPodsSeeVirtualIdentitiesNotTheRealDevice() throws {
        let a = try RouterConnection(path: lab.socket("node1", "a"), name: "lab-a")
        XCTAssertEqual(a.session.vip, TwoNodeLab.vipA)
        XCTAssertEqual(try a.queryGID(index: 0), GID(ipv4Mapped: TwoNodeLab.vipA))
        XCTAssertEqual(try a.queryPort().gidTableLength, 1)
        let device = try a.queryDevice()
        XCTAssertNotEqual(device.vendorID, 0x02c9, "must not pretend to be Mellanox")
        XCTAssertEqual(device.physicalPortCount, 1)
        XCTAssertThrowsError(try a.queryGID(index: 1)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.invalidArgument) }
        XCTAssertThrowsError(try a.queryPort(2)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.invalidArgument) }
    }

    func testClientsOnTwoNodesExchangeSendWriteAndReadOverVirtualGIDs() throws {
        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        let b = try ClientEndpoint(RouterConnection(path: lab.socket("node2", "b"), name: "lab-b"))
        try a.connect(toVIP: TwoNodeLab.vipB, qpn: b.qp.qpNum)
        try b.connect(toVIP: TwoNodeLab.vipA, qpn: a.qp.qpNum)

        // SEND → RECV
        try b.connection.postReceive(b.qp.qp, [ReceiveWorkRequest(wrID: 70, sgList: [b.sge(offset: 256, length: 64)])])
        write("send through two routers", to: a, at: 0)
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 1, opcode: .send, sgList: [a.sge(offset: 0, length: 24)])])
        XCTAssertEqual(try a.completions().first?.status, .success)
        let received = try XCTUnwrap(b.completions().first)
        XCTAssertEqual(received.status, .success)
        XCTAssertEqual(received.wrID, 70)
        XCTAssertEqual(received.byteLength, 24)
        XCTAssertEqual(read(b, at: 256, count: 24), "send through two routers", "the bytes land in B's own memory: zero copy")

        // RDMA WRITE at B's own virtual address (the MR was registered at B's address as iova).
        write("written by A", to: a, at: 1024)
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 2, opcode: .rdmaWrite, remoteAddress: b.address + 4096, rkey: b.mr.rkey,
                                                            sgList: [a.sge(offset: 1024, length: 12)])])
        XCTAssertEqual(try a.completions().first?.status, .success)
        XCTAssertEqual(read(b, at: 4096, count: 12), "written by A")

        // RDMA READ of B's memory into A's.
        write("read by A", to: b, at: 8192)
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 3, opcode: .rdmaRead, remoteAddress: b.address + 8192, rkey: b.mr.rkey,
                                                            sgList: [a.sge(offset: 2048, length: 9)])])
        let readCompletion = try XCTUnwrap(a.completions().first)
        XCTAssertEqual(readCompletion.status, .success)
        XCTAssertEqual(readCompletion.opcode, .rdmaRead)
        XCTAssertEqual(read(a, at: 2048, count: 9), "read by A")

        // SEND with immediate, inline payload: the immediate's bits survive the wire and the router.
        try b.connection.postReceive(b.qp.qp, [ReceiveWorkRequest(wrID: 71, sgList: [b.sge(offset: 512, length: 64)])])
        try a.connection.postSend(a.qp.qp, [SendWorkRequest(wrID: 4, opcode: .sendWithImmediate, flags: [.signaled, .inline],
                                                            immData: UInt32(0xBEEF).bigEndian, inlineData: Array("inline".utf8))])
        XCTAssertEqual(try a.completions().first?.status, .success)
        let withImmediate = try XCTUnwrap(b.completions().first)
        XCTAssertEqual(UInt32(bigEndian: withImmediate.immData), 0xBEEF)
        XCTAssertEqual(read(b, at: 512, count: 6), "inline")
        XCTAssertEqual(lab.stopRouters(), [0, 0], "SIGTERM with clients connected still stops cleanly")
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.socket("node1", "a")), "the socket file is removed")
    }

    func testAClientCannotNameUseOrDestroyAnotherClientsObjects() throws {
        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        let c = try RouterConnection(path: lab.socket("node1", "c"), name: "lab-c")
        // C has made nothing: every handle of A's is unknown to C's session.
        XCTAssertThrowsError(try c.destroyQP(a.qp.qp)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.badHandle, "\($0)") }
        XCTAssertThrowsError(try c.pollCQ(a.cq)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.badHandle) }
        XCTAssertThrowsError(try c.deregisterMemory(MRHandle(rawValue: a.mr.mr.rawValue))) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.badHandle) }
        XCTAssertThrowsError(try c.deallocatePD(a.pd)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.badHandle) }
        XCTAssertThrowsError(try c.postSend(a.qp.qp, [SendWorkRequest(wrID: 1, opcode: .send)])) {
            XCTAssertEqual(($0 as? ClientError)?.errno, Errno.badHandle)
        }
        // A's objects are untouched and still A's.
        XCTAssertEqual(try a.connection.queryQP(a.qp.qp).attributes.state, .reset)
        XCTAssertEqual(try a.connection.pollCQ(a.cq).count, 0)
        // A's own PD is busy while its MR and QP exist, as ibv_dealloc_pd(3) says.
        XCTAssertThrowsError(try a.connection.deallocatePD(a.pd)) { XCTAssertEqual(($0 as? ClientError)?.errno, Errno.busy) }
    }

    func testAnUnknownVIPFailsFastWithEHOSTUNREACHNamingIt() throws {
        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        let started = Date()
        XCTAssertThrowsError(try a.connect(toVIP: IPv4Address("10.9.9.9")!, qpn: 1)) { error in
            XCTAssertEqual((error as? ClientError)?.errno, Errno.hostUnreachable)
            XCTAssertTrue("\(error)".contains("10.9.9.9"), "\(error)")
        }
        XCTAssertThrowsError(try a.connection.createAH(pd: a.pd, attributes: AHAttributes(
            globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: IPv4Address("10.9.9.9")!)), port: 1))) { error in
            XCTAssertEqual((error as? ClientError)?.errno, Errno.hostUnreachable)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "an error, not a hang")
        // The session goes on: a known vip still works.
        let ah = try a.connection.createAH(pd: a.pd, attributes: AHAttributes(globalRoute: GlobalRoute(destinationGID: GID(ipv4Mapped: TwoNodeLab.vipB)), port: 1))
        try a.connection.destroyAH(ah)
    }

    /// Starts `ffctl probe` on pod a with `arguments` and returns once it printed `marker` (bounded).
    private func startProbe(_ arguments: [String], until marker: String) throws -> Process {
        let probe = Process()
        probe.executableURL = TwoNodeLab.binaries.appendingPathComponent("ffctl")
        probe.arguments = ["probe", "--socket", lab.socket("node1", "a")] + arguments
        let output = Pipe()
        probe.standardOutput = output
        try probe.run()
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while !text.contains(marker), Date() < deadline {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        XCTAssertTrue(text.contains(marker), "probe output: \(text)")
        return probe
    }

    /// Kills `probe` and waits (bounded) until the kernel's objects are back to `baseline` and router 1 has no client.
    private func killAndExpectNothingLeft(_ probe: Process, baseline: [String: Int], _ what: String) throws {
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        var after = try TwoNodeLab.kernelResources()
        var status = try AdminStatus.fetch(lab.admin(1))
        do {
            try eventuallyBlocking("\(what): the kernel's objects back to their baseline, router 1 without clients",
                                   timeout: .seconds(60), every: .milliseconds(100)) {
                after = try TwoNodeLab.kernelResources()
                status = try AdminStatus.fetch(lab.admin(1))
                return after == baseline && status.clients.isEmpty
            }
        } catch is ConditionTimedOut {
            // The assertions below name what was left.
        }
        XCTAssertEqual(after, baseline, "\(what): rdma res show counts are back to their baseline")
        XCTAssertEqual(status.objects.total, 0, what)
        XCTAssertEqual(status.clients.count, 0, what)
    }

    func testAKilledClientLeavesNoObjectBehind() throws {
        let baseline = try TwoNodeLab.kernelResources()
        let probe = try startProbe(["--hold"], until: "holding")
        let held = try TwoNodeLab.kernelResources()
        XCTAssertEqual(held["qp"], (baseline["qp"] ?? 0) + 1, "the probe's QP exists in the kernel")
        XCTAssertEqual(held["mr"], (baseline["mr"] ?? 0) + 1)
        let status = try AdminStatus.fetch(lab.admin(1))
        XCTAssertEqual(status.clients.count, 1)
        XCTAssertEqual(status.objects.qp, 1)
        try killAndExpectNothingLeft(probe, baseline: baseline, "killed while holding its objects")
    }

    func testAClientKilledWhileRegisteringALargeBufferLeavesNothingBehind() throws {
        let baseline = try TwoNodeLab.kernelResources()
        // Killed at once, a little later and much later after it starts a 128 MiB registration: before, during and
        // after the router pins the pages. Each time the router must end up with nothing of that client.
        for delay in [0, 50_000, 400_000] as [useconds_t] {
            let probe = try startProbe(["--mr-bytes", "\(128 << 20)", "--hold"], until: "registering")
            usleep(delay)
            try killAndExpectNothingLeft(probe, baseline: baseline, "killed \(delay) µs into a 128 MiB registration")
        }
    }

    func testGarbageFromOneClientDoesNotDisturbAnother() throws {
        let a = try ClientEndpoint(RouterConnection(path: lab.socket("node1", "a"), name: "lab-a"))
        var generator = SystemRandomNumberGenerator()
        for round in 0..<20 {
            let fuzzer = try SeqPacketSocket.connect(path: lab.socket("node1", "c"))
            for _ in 0..<25 {
                let count = Int.random(in: 1...200, using: &generator)
                var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if round % 2 == 0 && bytes.count >= 4 { bytes.replaceSubrange(0..<4, with: Array("FFRP".utf8)) }
                try fuzzer.send(bytes)
                if let reply = try fuzzer.receive(timeoutMilliseconds: 10_000), let frame = try? Frame.decode(reply.bytes) {
                    guard let error = frame.message.errorReply else { return XCTFail("garbage got \(frame.message.kind)") }
                    XCTAssertTrue([Errno.protocolError, Errno.protocolNotSupported].contains(error.errno), "\(error)")
                }
            }
            fuzzer.close()
            // Meanwhile the well-behaved client is served.
            XCTAssertEqual(try a.connection.pollCQ(a.cq).count, 0)
        }
        XCTAssertEqual(try a.connection.queryQP(a.qp.qp).attributes.state, .reset)
    }
}
