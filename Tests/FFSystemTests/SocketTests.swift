import FFSystem
import Foundation
import XCTest

final class SeqPacketSocketTests: XCTestCase {
    func testDatagramBoundariesAreKept() throws {
        let (a, b) = try SeqPacketSocket.pair()
        try a.send([1, 2, 3])
        try a.send([4])
        XCTAssertEqual(try b.receive().datagram?.bytes, [1, 2, 3])
        XCTAssertEqual(try b.receive().datagram?.bytes, [4])
        guard case .wouldBlock = try b.receive() else { return XCTFail("nothing waiting is wouldBlock, not end of file") }
    }

    func testAMemfdPassedWithSCMRightsMapsTheSamePages() throws {
        let (a, b) = try SeqPacketSocket.pair()
        let memory = try SharedMemory(name: "test", size: 10000)
        XCTAssertEqual(memory.bytes.count, 12288, "rounded up to whole pages")
        try a.send([9], descriptors: [memory.descriptor.rawValue])
        let datagram = try XCTUnwrap(b.receive().datagram)
        XCTAssertEqual(datagram.descriptors.count, 1)
        XCTAssertNotEqual(datagram.descriptors[0].rawValue, memory.descriptor.rawValue)
        let mapped = try SharedMemory(mapping: datagram.descriptors[0], offset: 4096, length: 4096)
        memory.bytes.storeBytes(of: 0xABCD_EF01 as UInt32, toByteOffset: 4096 + 8, as: UInt32.self)
        XCTAssertEqual(mapped.bytes.load(fromByteOffset: 8, as: UInt32.self), 0xABCD_EF01)
        mapped.bytes.storeBytes(of: 7 as UInt8, toByteOffset: 0, as: UInt8.self)
        XCTAssertEqual(memory.bytes[4096], 7)
    }

    func testMappingOutsideTheMemfdIsEINVAL() throws {
        let memory = try SharedMemory(name: "small", size: 4096)
        XCTAssertThrowsError(try SharedMemory(mapping: memory.descriptor, offset: 4096, length: 4096)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EINVAL)
        }
    }

    func testAnOversizedDatagramIsReportedTruncated() throws {
        let (a, b) = try SeqPacketSocket.pair()
        try a.send([UInt8](repeating: 1, count: 100))
        let datagram = try XCTUnwrap(b.receive(maxBytes: 10).datagram)
        XCTAssertTrue(datagram.truncated)
        XCTAssertEqual(datagram.bytes.count, 10)
    }

    func testPeerCloseIsEndOfFileForTheAsyncReader() async throws {
        let (a, b) = try SeqPacketSocket.pair()
        try a.send([5])
        a.close()
        let first = try await b.nextDatagram()
        XCTAssertEqual(first?.bytes, [5])
        let second = try await b.nextDatagram()
        XCTAssertNil(second)
    }

    func testListenConnectAndPeerCredentialsNameThisProcess() async throws {
        let path = NSTemporaryDirectory() + "ffsystem-\(getpid()).sock"
        // A stale socket file from a dead listener is replaced.
        _ = try SeqPacketSocket.listen(path: path)
        let listener = try SeqPacketSocket.listen(path: path)
        defer { unlink(path) }
        let client = try SeqPacketSocket.connect(path: path)
        let server = try await listener.nextConnection()
        let credentials = try server.peerCredentials()
        XCTAssertEqual(credentials.pid, getpid())
        XCTAssertEqual(credentials.uid, getuid())
        try client.send(Array("ping".utf8))
        let datagram = try await server.nextDatagram()
        XCTAssertEqual(datagram?.bytes, Array("ping".utf8))
    }

    func testConnectingToNoListenerNamesThePath() {
        XCTAssertThrowsError(try SeqPacketSocket.connect(path: "/nonexistent/ff.sock")) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ENOENT)
            XCTAssertTrue("\(error)".contains("/nonexistent/ff.sock"))
        }
    }

    func testAnEmptyDatagramIsAMessageAndOnlyACloseIsEndOfFile() throws {
        let (a, b) = try SeqPacketSocket.pair()
        try a.send([])
        try a.send([7])
        guard case .datagram(let empty) = try b.receive() else { return XCTFail("an empty datagram must not read as end of file") }
        XCTAssertTrue(empty.bytes.isEmpty)
        XCTAssertEqual(try b.receive().datagram?.bytes, [7])
        try a.send([])
        a.close()
        XCTAssertEqual(try b.receive(timeoutMilliseconds: 5000)?.bytes, [], "an empty datagram sent before the close still arrives")
        XCTAssertNil(try b.receive(timeoutMilliseconds: 5000), "then end of file")
    }

    func testTrySendReportsAFullBufferInsteadOfWaiting() throws {
        let (a, b) = try SeqPacketSocket.pair()
        var sent = 0
        while try a.trySend([UInt8](repeating: 1, count: 4096)) {
            sent += 1
            XCTAssertLessThan(sent, 100_000, "the socket buffer never filled")
        }
        XCTAssertGreaterThan(sent, 0)
        let started = Poll.nowMilliseconds()
        XCTAssertThrowsError(try a.send([1], waitMilliseconds: 200)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EAGAIN)
        }
        XCTAssertGreaterThanOrEqual(Poll.nowMilliseconds() - started, 150, "send waits for room up to its bound")
        XCTAssertNotNil(try b.receive().datagram)
        XCTAssertTrue(try a.trySend([2]), "room again once the peer reads")
    }
}

final class StreamSocketTests: XCTestCase {
    func testAReplyLargerThanAnySocketBufferArrivesWhole() throws {
        let path = NSTemporaryDirectory() + "ffstream-\(getpid()).sock"
        let listener = try StreamSocket.listen(path: path, mode: 0o600)
        defer { listener.close(); unlink(path) }
        var mode = stat()
        XCTAssertEqual(stat(path, &mode), 0)
        XCTAssertEqual(mode.st_mode & 0o777, 0o600)
        let client = try StreamSocket.connect(path: path)
        let reply = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let served = Latch()
        try NamedThread.start(name: "test-server", stackBytes: 256 * 1024) {
            defer { served.open() }
            var pfd = [pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0)]
            _ = try? Poll.wait(&pfd, timeoutMilliseconds: 5000)
            guard let connection = try? listener.accept() else { return }
            defer { connection.close() }
            let deadline = Poll.nowMilliseconds() + 10_000
            guard (try? connection.readLine(maxBytes: 100, deadline: deadline)) == Array("hello".utf8) else { return }
            try? connection.write(reply, deadline: deadline)
        }
        try client.write(Array("hello\n".utf8), deadline: Poll.nowMilliseconds() + 5000)
        let received = try client.readToEnd(maxBytes: 10_000_000, deadline: Poll.nowMilliseconds() + 10_000)
        XCTAssertEqual(received.count, reply.count)
        XCTAssertEqual(received, reply)
        XCTAssertTrue(served.wait(until: Poll.nowMilliseconds() + 5000))
    }

    func testAStalledPeerCostsAReaderOnlyItsDeadline() throws {
        let path = NSTemporaryDirectory() + "ffstream-stall-\(getpid()).sock"
        let listener = try StreamSocket.listen(path: path)
        defer { listener.close(); unlink(path) }
        let client = try StreamSocket.connect(path: path)
        defer { client.close() }
        let started = Poll.nowMilliseconds()
        XCTAssertThrowsError(try client.readToEnd(maxBytes: 100, deadline: started + 200)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ETIMEDOUT)
        }
        XCTAssertLessThan(Poll.nowMilliseconds() - started, 5000)
    }
}

final class ThreadingTests: XCTestCase {
    func testALatchReleasesABlockedThreadAndAnAwaitingTask() async throws {
        let latch = Latch()
        let wake = try WakeEvent()
        XCTAssertFalse(latch.wait(until: Poll.nowMilliseconds() + 50), "closed until opened")
        let threadSaw = Latch()
        try NamedThread.start(name: "test-waiter", stackBytes: 256 * 1024) {
            var pfd = [pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0)]
            _ = try? Poll.wait(&pfd, timeoutMilliseconds: 10_000)
            if pfd[0].revents != 0, latch.wait(until: Poll.nowMilliseconds() + 10_000) { threadSaw.open() }
        }
        wake.signal()
        latch.open()
        await latch.wait()
        XCTAssertTrue(threadSaw.wait(until: Poll.nowMilliseconds() + 10_000))
        XCTAssertTrue(latch.opened)
    }

    func testRaisingTheDescriptorLimitReachesTheHardLimit() throws {
        let before = try ResourceLimits.current(.openFiles)
        defer { try? ResourceLimits.setSoft(.openFiles, to: before.soft) }
        try ResourceLimits.setSoft(.openFiles, to: 512)
        let raised = ResourceLimits.raise(.openFiles, tryUnlimited: false)
        XCTAssertEqual(raised.soft, before.hard)
        XCTAssertTrue(raised.note.contains("raised from 512"), raised.note)
    }
}
