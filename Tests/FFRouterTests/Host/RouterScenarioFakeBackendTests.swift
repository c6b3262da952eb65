import XCTest

/// The router scenarios (`RouterScenarios`) on the in-memory fake: they run on every host. The same scenarios run on
/// rxe0 in the lab as `RouterScenarioLabTests`; a test here and there of the same name is the same scenario.
final class RouterScenarioFakeBackendTests: XCTestCase {
    private var scenarios: RouterScenarios { RouterScenarios(.fake()) }

    func testASessionCannotUseAnotherSessionsHandles() throws { try scenarios.handlesAreTheSessionsOwn() }
    func testAnotherPodsLkeyIsALocalErrorAndMovesNothing() throws { try scenarios.keysAreThePDsOwn() }
    func testClosingASessionDestroysAllItsObjects() throws { try scenarios.closingASessionDestroysAllItsObjects() }
    func testObjectCountsPerKindAreLimited() throws { try scenarios.objectCountsPerKindAreLimited() }
    func testDescriptorsHeldAreLimitedWithEMFILE() { scenarios.descriptorsHeldAreLimitedWithEMFILE() }
    func testPinnedBytesAreCheckedBeforePinning() throws { try scenarios.pinnedBytesAreCheckedBeforePinning() }
    func testQueueDepthAndCQEntriesAreBudgeted() throws { try scenarios.queueDepthAndCQEntriesAreBudgeted() }
    func testVirtualGIDsBecomeTheirNodesPhysicalGIDs() throws {
        try scenarios.virtualGIDsBecomeTheirNodesPhysicalGIDs()
    }
    func testTranslationBeforeTheMapIsLoadedSaysTryAgain() { scenarios.translationBeforeTheMapIsLoadedSaysTryAgain() }
    func testTwoSessionsMoveDataBetweenTheirRCQPs() throws { try scenarios.twoSessionsMoveDataBetweenTheirRCQPs() }
}
