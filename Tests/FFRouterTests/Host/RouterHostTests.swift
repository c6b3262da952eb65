import FFProtocol
@testable import FFRouter
import FFRouterAPI
import Foundation
import Verbs
import XCTest

final class StaticVipMapTests: XCTestCase {
    func testLinesWithCommentsAndNodeNamesParse() throws {
        let entries = try StaticVipMap.parse(text: "# pods\n10.9.0.1 10.0.2.15 node-a\n\n10.9.0.2\t10.0.2.16 # b\n", source: "t")
        XCTAssertEqual(entries[IPv4Address("10.9.0.1")!], IPv4Address("10.0.2.15"))
        XCTAssertEqual(entries[IPv4Address("10.9.0.2")!], IPv4Address("10.0.2.16"))
        XCTAssertEqual(entries.count, 2)
    }

    func testAMalformedLineIsNamedByNumber() {
        XCTAssertThrowsError(try StaticVipMap.parse(text: "10.9.0.1 10.0.2.15\n10.9.0.x 10.0.2.16\n", source: "map.txt")) { error in
            XCTAssertTrue("\(error)".hasPrefix("map.txt:2:"), "\(error)")
        }
        XCTAssertThrowsError(try StaticVipMap.parse(text: "10.9.0.1\n", source: "m"))
    }

    func testReloadKeepsTheOldMapWhenTheNewFileIsBad() throws {
        let path = NSTemporaryDirectory() + "ffmap-\(getpid()).txt"
        defer { unlink(path) }
        try "10.9.0.1 10.0.2.15\n".write(toFile: path, atomically: true, encoding: .utf8)
        let map = try StaticVipMap(path: path)
        try "garbage\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try map.reload())
        XCTAssertEqual(map.physicalIP(for: IPv4Address("10.9.0.1")!), IPv4Address("10.0.2.15"))
        try "10.9.0.1 10.0.2.16\n".write(toFile: path, atomically: true, encoding: .utf8)
        try map.reload()
        XCTAssertEqual(map.physicalIP(for: IPv4Address("10.9.0.1")!), IPv4Address("10.0.2.16"))
        XCTAssertEqual(map.summary.revision, 2)
        XCTAssertTrue(map.isReady, "a loaded file is the map at once")
        XCTAssertTrue(map.summary.ready)
        XCTAssertNil(map.physicalIP(for: IPv4Address("10.9.9.9")!))
    }
}

final class RouterPieceTests: XCTestCase {
    func testPodDeclarationsParseNameEqualsVIP() {
        XCTAssertEqual(PodDeclaration(argument: "web-0=10.244.1.7"), PodDeclaration(name: "web-0", vip: IPv4Address("10.244.1.7")!))
        XCTAssertNil(PodDeclaration(argument: "web-0"))
        XCTAssertNil(PodDeclaration(argument: "=10.0.0.1"))
        XCTAssertNil(PodDeclaration(argument: "a/b=10.0.0.1"), "a pod name must not escape the socket folder")
        XCTAssertNil(PodDeclaration(argument: "a=10.0.0"))
    }

    func testImmediateDataKeepsItsWireBitsThroughTheRouter() {
        // The wire carries verbs' __be32 bits; Verbs takes host order and converts back on post.
        let raw: UInt32 = 0x1234_5678
        let request = FFProtocol.SendWorkRequest(wrID: 1, opcode: .sendWithImmediate, immData: raw)
        XCTAssertEqual(Translate.operation(request), .sendWithImmediate(UInt32(bigEndian: raw)))
    }

    func testObjectCountsAddUp() {
        let a = ObjectCounts(pd: 1, mr: 2, compChannel: 0, cq: 1, qp: 3, srq: 0, ah: 1)
        XCTAssertEqual((a + a).total, 16)
    }
}
