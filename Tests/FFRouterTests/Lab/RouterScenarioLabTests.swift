import XCTest

/// The router scenarios (`RouterScenarios`) on the lab's real device, driven in this process through a `NodeDevice`
/// as node 1's router opens it; skipped without the Soft-RoCE lab. The kernel's `rdma res` counts are the objects.
final class RouterScenarioLabTests: XCTestCase {
    private func scenarios() throws -> RouterScenarios { RouterScenarios(try .device()) }

    func testASessionCannotUseAnotherSessionsHandles() throws { try scenarios().handlesAreTheSessionsOwn() }
    func testAnotherPodsLkeyIsALocalErrorAndMovesNothing() throws { try scenarios().keysAreThePDsOwn() }
    func testClosingASessionDestroysAllItsObjects() throws { try scenarios().closingASessionDestroysAllItsObjects() }
    func testObjectCountsPerKindAreLimited() throws { try scenarios().objectCountsPerKindAreLimited() }
    func testDescriptorsHeldAreLimitedWithEMFILE() throws { try scenarios().descriptorsHeldAreLimitedWithEMFILE() }
    func testPinnedBytesAreCheckedBeforePinning() throws { try scenarios().pinnedBytesAreCheckedBeforePinning() }
    func testQueueDepthAndCQEntriesAreBudgeted() throws { try scenarios().queueDepthAndCQEntriesAreBudgeted() }
    func testVirtualGIDsBecomeTheirNodesPhysicalGIDs() throws {
        try scenarios().virtualGIDsBecomeTheirNodesPhysicalGIDs()
    }
    func testTranslationBeforeTheMapIsLoadedSaysTryAgain() throws {
        try scenarios().translationBeforeTheMapIsLoadedSaysTryAgain()
    }
    func testTwoSessionsMoveDataBetweenTheirRCQPs() throws { try scenarios().twoSessionsMoveDataBetweenTheirRCQPs() }
}
