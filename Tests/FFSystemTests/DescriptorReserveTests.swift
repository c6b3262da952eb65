import FFSystem
import Foundation
import XCTest

final class DescriptorReserveTests: XCTestCase {
    private var path = ""
    private var fillers: [Int32] = []
    private var limitBefore: ResourceLimit?

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "ffsystem-reserve-\(getpid()).sock"
        limitBefore = try ResourceLimits.current(.openFiles)
    }

    override func tearDownWithError() throws {
        freeFillers()
        if let limitBefore { try ResourceLimits.setSoft(.openFiles, to: limitBefore.soft) }
        unlink(path)
    }

    /// Lowers the soft limit just above the descriptors open now and opens /dev/null until the table is full.
    private func fillTheDescriptorTable() throws {
        let highest = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int32($0) }.max() ?? 0
        try ResourceLimits.setSoft(.openFiles, to: UInt64(highest) + 16)
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd < 0 { break }
            fillers.append(fd)
        }
        XCTAssertEqual(errno, EMFILE)
    }

    private func freeFillers() {
        for fd in fillers { close(fd) }
        fillers = []
    }

    func testOutOfDescriptorsAPendingConnectionIsRefusedAndItsSocketBecomesTheReserve() throws {
        let listener = try SeqPacketSocket.listen(path: path)
        let reserve = DescriptorReserve()
        XCTAssertTrue(reserve.isHeld)
        let first = try SeqPacketSocket.connect(path: path)
        let second = try SeqPacketSocket.connect(path: path)
        try fillTheDescriptorTable()
        XCTAssertThrowsError(try listener.accept()) { XCTAssertEqual(($0 as? SystemError)?.errno, EMFILE) }

        var counted = 0
        XCTAssertEqual(reserve.shed(listener) { counted += 1 }, .refused)
        XCTAssertEqual(counted, 1)
        XCTAssertNil(try first.receive(timeoutMilliseconds: 5000), "the refused client reads end of file")
        XCTAssertTrue(reserve.isHeld, "the refused connection is held in the freed slot")
        XCTAssertEqual(open("/dev/null", O_RDONLY), -1, "and no slot was left free")

        XCTAssertEqual(reserve.shed(listener) { counted += 1 }, .refused)
        XCTAssertNil(try second.receive(timeoutMilliseconds: 5000))
        XCTAssertEqual(counted, 2)
    }

    func testAFullTableWithNothingPendingKeepsTheReserveAndCountsNoRefusal() throws {
        let listener = try SeqPacketSocket.listen(path: path)
        let reserve = DescriptorReserve()
        try fillTheDescriptorTable()
        // accept(2) fails with EMFILE before it looks at the queue.
        XCTAssertThrowsError(try listener.accept()) { XCTAssertEqual(($0 as? SystemError)?.errno, EMFILE) }
        var counted = 0
        XCTAssertEqual(reserve.shed(listener) { counted += 1 }, .nothingPending)
        XCTAssertEqual(counted, 0)
        XCTAssertTrue(reserve.isHeld)
        XCTAssertEqual(open("/dev/null", O_RDONLY), -1, "the reserve did not leave its slot free")
    }

    func testWithoutAReserveAPendingConnectionWaitsAndIsServedOnceDescriptorsAreFree() throws {
        let listener = try SeqPacketSocket.listen(path: path)
        let reserve = DescriptorReserve()
        let client = try SeqPacketSocket.connect(path: path)
        reserve.close()
        try fillTheDescriptorTable()
        XCTAssertEqual(reserve.shed(listener), .waiting)
        XCTAssertFalse(reserve.isHeld)
        guard case .wouldBlock = try client.receive() else { return XCTFail("a waiting client is neither refused nor closed") }

        freeFillers()
        let accepted = try XCTUnwrap(try listener.accept(), "the connection waited in the backlog")
        try accepted.send([7])
        XCTAssertEqual(try client.receive(timeoutMilliseconds: 5000)?.bytes, [7])
        XCTAssertTrue(reserve.refill())
    }
}
