import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Foundation
import Glibc
import XCTest

/// Well-formed requests with extreme values get the errno verbs would give and a reason naming the field; the
/// session goes on. The first cases are the ones that crashed the router (issue 8).
final class TrustBoundaryTests: XCTestCase {
    private var backend: FakeBackend!
    private var client: SessionDriver!
    private var pd = PDHandle(rawValue: 0)
    private var memory: SharedMemory!

    override func setUpWithError() throws {
        backend = FakeBackend()
        client = SessionDriver(backend: backend)
        pd = client.allocPD()
        memory = try SharedMemory(name: "boundary", size: 16384)
    }

    private func regMR(address: UInt64? = nil, length: UInt64, offset: UInt64, access: AccessFlags = [.localWrite], fd: Int32? = nil) -> ErrorReply {
        client.refused(Message(RegMRRequest(pd: pd, access: access, address: address ?? memory.address + offset % 4096, length: length, memfdOffset: offset)),
                       descriptors: [fd ?? memory.descriptor.rawValue])
    }

    func testACompletionVectorPastInt32IsInvalidNotATrap() {
        let error = client.refused(Message(CreateCQRequest(cqe: 16, compVector: 0x8000_0000)))
        XCTAssertEqual(error.errno, Errno.invalidArgument)
        XCTAssertTrue(error.reason.contains("comp_vector"), error.reason)
        XCTAssertEqual(client.refused(Message(CreateCQRequest(cqe: 1 << 30))).errno, Errno.invalidArgument, "past the device's max_cqe")
    }

    func testMemoryRangesThatOverflowOrPassTheMemfdAreRefused() {
        XCTAssertEqual(regMR(length: 4096, offset: 1 << 63).errno, Errno.invalidArgument)
        XCTAssertEqual(regMR(length: 1 << 63, offset: 0).errno, Errno.invalidArgument)
        XCTAssertEqual(regMR(length: UInt64.max - memory.address, offset: 0).errno, Errno.invalidArgument, "the longest length the wire lets through")
        XCTAssertEqual(regMR(length: (1 << 62) + 4096, offset: 1 << 62).errno, Errno.invalidArgument)
        // Ranges that wrap around 2^64 do not even decode (FFProtocol's tests); ones that end just below it are refused here.
        XCTAssertEqual(regMR(length: 4096, offset: UInt64.max - 4096 - 4095).errno, Errno.invalidArgument)
        let past = regMR(length: 8192, offset: 12288)
        XCTAssertEqual(past.errno, Errno.invalidArgument)
        XCTAssertTrue(past.reason.contains("outside the memfd"), past.reason)
        XCTAssertEqual(regMR(address: memory.address + 1, length: 16, offset: 0).errno, Errno.invalidArgument, "page offsets differ")
        XCTAssertEqual(regMR(length: 16, offset: 0, access: [.remoteWrite]).errno, Errno.invalidArgument, "remote write needs local write")
        // And the session still works.
        XCTAssertNotEqual(client.registerMemory(pd, memory).lkey, 0)
    }

    func testOnlyMemfdsAreAcceptedAsMemory() {
        var pipeFDs: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let pipeError = regMR(length: 16, offset: 0, fd: pipeFDs[0])
        XCTAssertEqual(pipeError.errno, Errno.invalidArgument)
        XCTAssertTrue(pipeError.reason.contains("not a regular file"), pipeError.reason)
        // A regular file of another filesystem (procfs here; a disk or FUSE file alike): its pages could make reg_mr block.
        let fd = open("/proc/self/stat", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let fileError = regMR(length: 16, offset: 0, fd: fd)
        XCTAssertEqual(fileError.errno, Errno.invalidArgument)
        XCTAssertTrue(fileError.reason.contains("not a memfd"), fileError.reason)
    }

    func testQueueSizesPastTheDeviceAreInvalid() {
        var limits = FakeBackend.defaultLimits
        limits.maxSGE = 4
        limits.maxInlineData = 64
        client = SessionDriver(backend: FakeBackend(limits: limits))
        pd = client.allocPD()
        let cq = client.createCQ()
        for caps in [QPCapabilities(maxSendWR: .max, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0),
                     QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 5, maxRecvSGE: 1, maxInlineData: 0),
                     QPCapabilities(maxSendWR: 1, maxRecvWR: 1, maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 65)] {
            let request = CreateQPRequest(pd: pd, sendCQ: cq, recvCQ: cq, type: .rc, signalAll: false, capabilities: caps)
            XCTAssertEqual(client.refused(Message(request)).errno, Errno.invalidArgument)
        }
        XCTAssertEqual(client.refused(Message(CreateSRQRequest(pd: pd, maxWR: .max, maxSGE: 1, limit: 0))).errno, Errno.invalidArgument)
        XCTAssertEqual(client.refused(Message(CreateSRQRequest(pd: pd, maxWR: 16, maxSGE: 1, limit: 17))).errno, Errno.invalidArgument)
    }

    func testAQPMayAllowRemoteWriteWithoutLocalWriteAsPerftestsDo() {
        let cq = client.createCQ()
        let (qp, _) = client.createQP(pd, cq)
        var a = FFProtocol.QPAttributes()
        a.state = .initialized
        a.port = 1
        a.accessFlags = [.remoteWrite]
        client.ok(Message(ModifyQPRequest(qp: qp, mask: [.state, .pkeyIndex, .port, .accessFlags], attributes: a)))
    }

    func testAnUnknownOrReservedQPStateCannotBeRequested() {
        let cq = client.createCQ()
        let (qp, _) = client.createQP(pd, cq)
        var a = FFProtocol.QPAttributes()
        a.state = .unknown
        XCTAssertEqual(client.refused(Message(ModifyQPRequest(qp: qp, mask: [.state], attributes: a))).errno, Errno.invalidArgument)
        a.state = .initialized
        a.port = 200
        XCTAssertEqual(client.refused(Message(ModifyQPRequest(qp: qp, mask: [.state, .port, .pkeyIndex, .accessFlags], attributes: a))).errno,
                       Errno.invalidArgument)
    }
}
