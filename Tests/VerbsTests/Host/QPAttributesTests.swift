import Verbs
import XCTest

/// The attribute masks below are the `IBV_QP_*` bits of verbs.h; the required sets are the table in ibv_modify_qp(3).
final class QPAttributesTests: XCTestCase {
    let state: Int32 = 1, access: Int32 = 1 << 3, pkey: Int32 = 1 << 4, port: Int32 = 1 << 5, qkey: Int32 = 1 << 6
    let av: Int32 = 1 << 7, pathMTU: Int32 = 1 << 8, timeout: Int32 = 1 << 9, retry: Int32 = 1 << 10
    let rnrRetry: Int32 = 1 << 11, rqPSN: Int32 = 1 << 12, maxReadAtomic: Int32 = 1 << 13, minRNR: Int32 = 1 << 15
    let sqPSN: Int32 = 1 << 16, maxDestReadAtomic: Int32 = 1 << 17, destQPN: Int32 = 1 << 20

    func path() -> RemotePath {
        RemotePath(address: AddressVector(global: GlobalRoute(destinationGID: GID(ipv4: "10.0.0.2")!, sourceGIDIndex: 1)),
                   destinationQPN: 0x11, receivePSN: 0x22)
    }

    func testResetToInitOfAConnectedQPSetsAccessNotQKey() {
        for type in [QPType.rc, .uc] {
            let a = QPAttributes.toInit(type: type, port: 1, access: [.remoteWrite, .remoteRead])
            XCTAssertEqual(a.mask, state | pkey | port | access, "\(type)")
            XCTAssertNil(a.qkey)
            XCTAssertEqual(a.access, [.remoteWrite, .remoteRead])
        }
    }

    func testResetToInitOfAUDQPSetsQKeyNotAccess() {
        let a = QPAttributes.toInit(type: .ud, port: 1, qkey: 0x1111_1111)
        XCTAssertEqual(a.mask, state | pkey | port | qkey)
        XCTAssertEqual(a.qkey, 0x1111_1111)
        XCTAssertNil(a.access)
    }

    func testInitToRTRRequiresTheRemotePathPerType() throws {
        XCTAssertEqual(try QPAttributes.toReadyToReceive(type: .rc, path: path()).mask,
                       state | av | pathMTU | destQPN | rqPSN | maxDestReadAtomic | minRNR)
        XCTAssertEqual(try QPAttributes.toReadyToReceive(type: .uc, path: path()).mask, state | av | pathMTU | destQPN | rqPSN)
        XCTAssertEqual(try QPAttributes.toReadyToReceive(type: .ud, path: nil).mask, state)
    }

    func testInitToRTROfAnRCQPWithoutAPathIsEINVAL() {
        XCTAssertThrowsError(try QPAttributes.toReadyToReceive(type: .rc, path: nil)) { error in
            XCTAssertEqual((error as? VerbsError)?.errno, EINVAL)
            XCTAssertTrue("\(error)".contains("needs the remote path"), "\(error)")
        }
    }

    func testRTRToRTSAddsRetryAndTimeoutOnlyForRC() {
        XCTAssertEqual(QPAttributes.toReadyToSend(type: .rc, sendPSN: 7).mask, state | sqPSN | timeout | retry | rnrRetry | maxReadAtomic)
        XCTAssertEqual(QPAttributes.toReadyToSend(type: .uc, sendPSN: 7).mask, state | sqPSN)
        XCTAssertEqual(QPAttributes.toReadyToSend(type: .ud, sendPSN: 7).mask, state | sqPSN)
    }

    func testAnEmptyAttributeSetHasAnEmptyMask() {
        XCTAssertEqual(QPAttributes().mask, 0)
        var a = QPAttributes()
        a.destinationQPN = 5
        XCTAssertEqual(a.mask, destQPN)
    }

    func testAccessFlagsAndMTUUseLibibverbsValues() {
        XCTAssertEqual(AccessFlags.localWrite.rawValue, 1)
        XCTAssertEqual(AccessFlags.remoteWrite.rawValue, 2)
        XCTAssertEqual(AccessFlags.remoteRead.rawValue, 4)
        XCTAssertEqual(AccessFlags.remoteAtomic.rawValue, 8)
        XCTAssertEqual(MTU.mtu1024.rawValue, 3)
        XCTAssertEqual(MTU.allCases.map(\.bytes), [256, 512, 1024, 2048, 4096])
        XCTAssertEqual(QPState.readyToSend.description, "RTS")
    }
}
