import Foundation
import Verbs
import XCTest

final class VerbsErrorTests: XCTestCase {
    func testDescriptionNamesOperationErrnoAndDetail() {
        let error = VerbsError(operation: "ibv_modify_qp", errno: EINVAL, detail: "RC QP 17 to RTR")
        XCTAssertEqual(error.errnoName, "EINVAL")
        XCTAssertEqual(error.reason, "Invalid argument")
        XCTAssertEqual(error.description, "ibv_modify_qp failed: EINVAL (Invalid argument): RC QP 17 to RTR")
    }

    func testUnknownErrnoIsShownByNumber() {
        XCTAssertEqual(VerbsError(operation: "x", errno: 4000).errnoName, "errno 4000")
    }
}

final class NoDeviceTests: XCTestCase {
    /// The devices the kernel exposes, read from sysfs independently of libibverbs.
    private func sysfsDevices() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/infiniband")) ?? []).sorted()
    }

    func testListingDevicesMatchesSysfsAndIsEmptyWithoutRDMASupport() throws {
        let listed = try Devices.list().map(\.name).sorted()
        XCTAssertEqual(listed, sysfsDevices())
    }

    func testOpeningAMissingDeviceIsENODEVNamingTheDevicesThatExist() {
        XCTAssertThrowsError(try Devices.open("no-such-device0")) { error in
            let verbsError = error as? VerbsError
            XCTAssertEqual(verbsError?.errno, ENODEV)
            XCTAssertTrue(verbsError?.detail?.contains("no-such-device0") == true || verbsError?.detail?.contains("no RDMA") == true,
                          "\(error)")
        }
    }
}
