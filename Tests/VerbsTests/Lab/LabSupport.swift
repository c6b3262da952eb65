import Foundation
import Verbs
import XCTest

/// The Soft-RoCE lab as the tests see it: the device and the GID indices of its two addresses
/// ("node 1" and "node 2"). Outside `scripts/rdma-lab` the lab tests are skipped, and say so.
struct Lab {
    let context: Context
    let ip1: String
    let ip2: String
    let gid1: Int
    let gid2: Int

    static func open() throws -> Lab {
        let env = ProcessInfo.processInfo.environment
        guard env["FFLAB"] == "1", let device = env["FFLAB_DEVICE"], let ip1 = env["FFLAB_IP1"], let ip2 = env["FFLAB_IP2"] else {
            throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run: scripts/rdma-lab -- swift test or scripts/test")
        }
        let context = try Devices.open(device)
        guard let gid1 = try context.gidIndex(ipv4: ip1), let gid2 = try context.gidIndex(ipv4: ip2) else {
            XCTFail("\(device) has no RoCEv2 GID for \(ip1) and \(ip2): \(try context.gidTable())")
            throw XCTSkip("lab GIDs missing")
        }
        return Lab(context: context, ip1: ip1, ip2: ip2, gid1: gid1, gid2: gid2)
    }

    func address(toIP ip: String, fromGID index: Int) -> AddressVector {
        AddressVector(global: GlobalRoute(destinationGID: GID(ipv4: ip)!, sourceGIDIndex: UInt8(index)))
    }
}

/// Polls `cq` until it yields `count` completions or `seconds` pass (a bounded wait, never a hang).
func waitForCompletions(_ cq: CompletionQueue, count: Int = 1, seconds: Double = 20,
                        file: StaticString = #filePath, line: UInt = #line) throws -> [WorkCompletion] {
    var result: [WorkCompletion] = []
    let deadline = Date().addingTimeInterval(seconds)
    while result.count < count {
        if let wc = try cq.pollOne() {
            result.append(wc)
        } else if Date() > deadline {
            XCTFail("only \(result.count) of \(count) completions after \(seconds)s", file: file, line: line)
            return result
        } else {
            usleep(200)
        }
    }
    return result
}

/// Two RC (or UC) QPs on one device, one per lab address, connected to each other with virtual-free
/// physical GIDs: the loop a router will later build between two nodes.
final class ConnectedPair {
    let pd: ProtectionDomain
    let cqA: CompletionQueue
    let cqB: CompletionQueue
    let a: QueuePair
    let b: QueuePair

    init(lab: Lab, type: QPType = .rc, srqForB: SharedReceiveQueue? = nil, pd: ProtectionDomain? = nil) throws {
        let pd = try pd ?? lab.context.allocateProtectionDomain()
        self.pd = pd
        cqA = try lab.context.createCompletionQueue(entries: 64)
        cqB = try lab.context.createCompletionQueue(entries: 64)
        let caps = QPCapabilities(maxSendWorkRequests: 32, maxReceiveWorkRequests: 32, maxSendSGE: 2, maxReceiveSGE: 2)
        a = try pd.createQueuePair(QueuePairConfiguration(type: type, sendCQ: cqA, receiveCQ: cqA, capabilities: caps))
        b = try pd.createQueuePair(QueuePairConfiguration(type: type, sendCQ: cqB, receiveCQ: cqB, sharedReceiveQueue: srqForB,
                                                          capabilities: caps))
        let access: AccessFlags = type == .rc ? [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic] : [.localWrite, .remoteWrite]
        try a.moveToInit(access: access)
        try b.moveToInit(access: access)
        try a.moveToReadyToReceive(RemotePath(address: lab.address(toIP: lab.ip2, fromGID: lab.gid1), destinationQPN: b.number, receivePSN: 200))
        try b.moveToReadyToReceive(RemotePath(address: lab.address(toIP: lab.ip1, fromGID: lab.gid2), destinationQPN: a.number, receivePSN: 100))
        try a.moveToReadyToSend(sendPSN: 100)
        try b.moveToReadyToSend(sendPSN: 200)
    }
}
