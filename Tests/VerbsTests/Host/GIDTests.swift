import Verbs
import XCTest

final class GIDTests: XCTestCase {
    func testIPv4TextBecomesTheIPv4MappedGIDThatRoCEv2Uses() throws {
        let gid = try XCTUnwrap(GID(ipv4: "10.0.2.15"))
        XCTAssertEqual(gid.bytes, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 2, 15])
        XCTAssertTrue(gid.isIPv4Mapped)
        XCTAssertEqual(gid.ipv4Address, "10.0.2.15")
    }

    func testDescriptionIsTheSysfsFormAndParsesBack() throws {
        let gid = try XCTUnwrap(GID(ipv4: "192.168.1.2"))
        XCTAssertEqual(gid.description, "0000:0000:0000:0000:0000:ffff:c0a8:0102")
        XCTAssertEqual(GID(gid.description), gid)
        XCTAssertEqual(GID("::ffff:192.168.1.2"), gid)
    }

    func testLinkLocalGIDIsNotIPv4Mapped() throws {
        let gid = try XCTUnwrap(GID("fe80::5054:ff:fe12:3456"))
        XCTAssertFalse(gid.isIPv4Mapped)
        XCTAssertNil(gid.ipv4Address)
        XCTAssertEqual(gid.description, "fe80:0000:0000:0000:5054:00ff:fe12:3456")
    }

    func testMalformedTextIsRejected() {
        XCTAssertNil(GID(ipv4: "10.0.2"))
        XCTAssertNil(GID(ipv4: "10.0.2.256"))
        XCTAssertNil(GID(ipv4: "fe80::1"))
        XCTAssertNil(GID("not a gid"))
        XCTAssertNil(GID("1:2:3:4:5:6:7:8:9"))
        XCTAssertNil(GID(bytes: [1, 2, 3]))
    }

    func testZeroGIDIsSixteenZeroBytes() {
        XCTAssertEqual(GID.zero.bytes, [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(GID(bytes: [UInt8](repeating: 0, count: 16)), .zero)
    }
}
