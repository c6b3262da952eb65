import FFSystem
import Foundation
import XCTest

final class SeqPacketSocketTests: XCTestCase {
    func testDatagramBoundariesAreKept() throws {
        let (a, b) = try SeqPacketSocket.pair()
        try a.send([1, 2, 3])
        try a.send([4])
        XCTAssertEqual(try b.receive()?.bytes, [1, 2, 3])
        XCTAssertEqual(try b.receive()?.bytes, [4])
        XCTAssertNil(try b.receive(), "nothing waiting is nil, not end of file")
    }

    func testAMemfdPassedWithSCMRightsMapsTheSamePages() throws {
        let (a, b) = try SeqPacketSocket.pair()
        let memory = try SharedMemory(name: "test", size: 10000)
        XCTAssertEqual(memory.bytes.count, 12288, "rounded up to whole pages")
        try a.send([9], descriptors: [memory.descriptor.rawValue])
        let datagram = try XCTUnwrap(b.receive())
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
        let datagram = try XCTUnwrap(b.receive(maxBytes: 10))
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
}
