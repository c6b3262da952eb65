#if canImport(Glibc)
import Glibc
#endif
@testable import Verbs
import XCTest

/// The `Call` helpers with fake C calls: each return convention on success and on failure, and errno left over
/// from an earlier call (`staleErrno`), which must never be reported for a call that did not set it.
final class CallTests: XCTestCase {
    private let staleErrno = EBUSY
    private let noSGEs = UnsafeBufferPointer<ScatterGatherElement>(start: nil, count: 0)

    private func failure(_ body: () throws(VerbsError) -> Void) -> VerbsError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    // MARK: 0, or the errno returned

    func testErrnoReturningCallThatSucceedsIsNoErrorWhateverErrnoHolds() {
        Glibc.errno = staleErrno
        XCTAssertNil(failure { () throws(VerbsError) in try Call.returnsErrno("ibv_modify_qp") { 0 } })
    }

    func testErrnoReturningCallReportsTheReturnedErrnoNotAStaleOne() {
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in
            try Call.returnsErrno("ibv_modify_qp", detail: "RC QP 17 to RTR") { EINVAL }
        }
        XCTAssertEqual(error, VerbsError(operation: "ibv_modify_qp", errno: EINVAL, detail: "RC QP 17 to RTR"))
    }

    func testNegatedErrnoReturnedIsThatErrnoNotAStaleOne() {
        // rxe's posts return -ENOMEM for a full queue.
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in try Call.returnsErrno("ibv_post_recv") { -ENOMEM } }
        XCTAssertEqual(error?.errno, ENOMEM)
    }

    func testMinusOneReturnedWithErrnoSetByTheCallIsThatErrno() {
        let error = failure { () throws(VerbsError) in
            try Call.returnsErrno("ibv_query_port") {
                Glibc.errno = ENODEV
                return -1
            }
        }
        XCTAssertEqual(error?.errno, ENODEV)
    }

    func testMinusOneReturnedWithoutErrnoIsEPERM() {
        Glibc.errno = 0
        let error = failure { () throws(VerbsError) in try Call.returnsErrno("ibv_dealloc_pd") { -1 } }
        XCTAssertEqual(error?.errno, EPERM)
    }

    func testNegatedReturnBeyondAnyErrnoIsEIOAndDoesNotTrap() {
        let error = failure { () throws(VerbsError) in try Call.returnsErrno("ibv_post_send") { .min } }
        XCTAssertEqual(error?.errno, EIO)
    }

    func testErrnoReturningCallBuildsItsDetailAndIndexOnlyWhenItFailed() {
        var built = 0
        func detail() -> String {
            built += 1
            return "work request 2 of 3"
        }
        XCTAssertNil(failure { () throws(VerbsError) in
            try Call.returnsErrno("ibv_post_send", detail: detail(), failedWorkRequest: 2) { 0 }
        })
        XCTAssertEqual(built, 0)
        let error = failure { () throws(VerbsError) in
            try Call.returnsErrno("ibv_post_send", detail: detail(), failedWorkRequest: 2) { ENOMEM }
        }
        XCTAssertEqual(built, 1)
        XCTAssertEqual(error, VerbsError(operation: "ibv_post_send", errno: ENOMEM, detail: "work request 2 of 3",
                                         failedWorkRequest: 2))
    }

    func testRefusedPostNamesTheRequestTheProviderRefusedAndItsErrno() {
        let scratch = WorkRequestScratch(capacity: 4, sgeCapacity: 1)
        scratch.begin()
        for id in 0..<3 { XCTAssertTrue(scratch.appendReceive(id: UInt64(id), scatterGather: noSGEs)) }
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in
            try scratch.post(scratch.receives, operation: "ibv_post_recv") { list, bad in
                bad.pointee = list + 1
                return -ENOMEM
            }
        }
        XCTAssertEqual(error, VerbsError(operation: "ibv_post_recv", errno: ENOMEM, detail: "work request 1 of 3",
                                         failedWorkRequest: 1))
    }

    func testAcceptedPostIsNoErrorWhateverErrnoHolds() {
        let scratch = WorkRequestScratch(capacity: 1, sgeCapacity: 1)
        scratch.begin()
        XCTAssertTrue(scratch.appendReceive(id: 7, scatterGather: noSGEs))
        Glibc.errno = staleErrno
        XCTAssertNil(failure { () throws(VerbsError) in
            try scratch.post(scratch.receives, operation: "ibv_post_recv") { _, _ in 0 }
        })
    }

    // MARK: 0, or -1 with errno set

    func testMinusOneCallThatSucceedsIsNoErrorWhateverErrnoHolds() {
        Glibc.errno = staleErrno
        XCTAssertNil(failure { () throws(VerbsError) in try Call.returnsMinusOne("rdma_connect") { 0 } })
    }

    func testMinusOneCallReportsTheErrnoItSet() {
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in
            try Call.returnsMinusOne("rdma_get_cm_event") {
                Glibc.errno = EAGAIN
                return -1
            }
        }
        XCTAssertEqual(error, VerbsError(operation: "rdma_get_cm_event", errno: EAGAIN))
    }

    func testMinusOneCallThatSetNoErrnoIsEIONotAStaleErrno() {
        // ibv_query_gid returns -1 without promising errno.
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in try Call.returnsMinusOne("ibv_query_gid") { -1 } }
        XCTAssertEqual(error?.errno, EIO)
    }

    func testMinusOneCallReturningAPositiveValueReportsThatValue() {
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in try Call.returnsMinusOne("rdma_create_qp") { EINVAL } }
        XCTAssertEqual(error?.errno, EINVAL)
    }

    // MARK: a pointer, or NULL with errno set

    func testPointerCallThatSucceedsReturnsThePointerWhateverErrnoHolds() throws {
        var value = 42
        Glibc.errno = staleErrno
        let pointer = try withUnsafeMutablePointer(to: &value) { p in try Call.returnsPointer("ibv_alloc_pd") { p } }
        XCTAssertEqual(pointer.pointee, 42)
    }

    func testNullPointerReportsTheErrnoTheCallSet() {
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in
            _ = try Call.returnsPointer("ibv_create_qp", detail: "RC QP") { () -> UnsafeMutableRawPointer? in
                Glibc.errno = EINVAL
                return nil
            }
        }
        XCTAssertEqual(error, VerbsError(operation: "ibv_create_qp", errno: EINVAL, detail: "RC QP"))
    }

    func testNullPointerWithoutErrnoIsTheUnsetErrnoNotAStaleOne() {
        Glibc.errno = staleErrno
        let allocation = failure { () throws(VerbsError) in
            _ = try Call.returnsPointer("ibv_alloc_pd") { () -> UnsafeMutableRawPointer? in nil }
        }
        XCTAssertEqual(allocation?.errno, ENOMEM)
        Glibc.errno = staleErrno
        let listing = failure { () throws(VerbsError) in
            _ = try Call.returnsPointer("ibv_get_device_list", unsetErrno: ENODEV) { () -> UnsafeMutableRawPointer? in
                nil
            }
        }
        XCTAssertEqual(listing?.errno, ENODEV)
    }

    // MARK: a count, or a negative errno

    func testCountOrNegativeErrnoCallReturnsTheCountWhateverErrnoHolds() throws {
        Glibc.errno = staleErrno
        XCTAssertEqual(try Call.returnsCountOrNegativeErrno("ibv_query_gid_table") { 3 as Int }, 3)
        XCTAssertEqual(try Call.returnsCountOrNegativeErrno("ibv_query_gid_table") { 0 as Int }, 0)
    }

    func testNegativeCountIsTheNegatedErrnoNotAStaleOne() {
        Glibc.errno = staleErrno
        let error = failure { () throws(VerbsError) in
            _ = try Call.returnsCountOrNegativeErrno("ibv_query_gid_table", detail: "rxe0") { -Int(EOPNOTSUPP) }
        }
        XCTAssertEqual(error, VerbsError(operation: "ibv_query_gid_table", errno: EOPNOTSUPP, detail: "rxe0"))
    }

    func testNegativeCountBeyondAnyErrnoIsEIOAndDoesNotTrap() {
        let error = failure { () throws(VerbsError) in
            _ = try Call.returnsCountOrNegativeErrno("ibv_query_gid_table") { Int.min }
        }
        XCTAssertEqual(error?.errno, EIO)
    }

    // MARK: a count, or a negative value that is no errno

    func testPollReturnsTheCountWhateverErrnoHolds() throws {
        Glibc.errno = staleErrno
        XCTAssertEqual(try Call.returnsCountOrNegative("ibv_poll_cq") { 2 }, 2)
        XCTAssertEqual(try Call.returnsCountOrNegative("ibv_poll_cq") { 0 }, 0)
    }

    func testFailedPollIsEIONamingTheValueReturnedNotAStaleErrno() {
        // mlx5 returns -2 (CQ_POLL_ERR) for any error; -2 is not ENOENT.
        Glibc.errno = staleErrno
        let plain = failure { () throws(VerbsError) in _ = try Call.returnsCountOrNegative("ibv_poll_cq") { -2 } }
        XCTAssertEqual(plain, VerbsError(operation: "ibv_poll_cq", errno: EIO, detail: "returned -2"))
        let detailed = failure { () throws(VerbsError) in
            _ = try Call.returnsCountOrNegative("ibv_poll_cq", detail: "CQ 3") { -2 }
        }
        XCTAssertEqual(detailed?.detail, "returned -2, CQ 3")
    }
}
