import FFProtocol
import Foundation
import Testing

@Suite struct DocumentationTests {
    private static let protocolDoc: String? = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try? String(contentsOf: root.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
    }()

    @Test func protocolDocumentNamesEveryMessageKindAndLimit() throws {
        let doc = try #require(Self.protocolDoc, "docs/protocol.md is missing")
        for kind in MessageKind.allCases {
            let hex = "0x" + String(kind.rawValue, radix: 16, uppercase: true).leftPadded(to: 4)
            #expect(doc.contains(hex), "docs/protocol.md does not mention kind \(kind) (\(hex))")
        }
        for limit in [WireLimits.maxClientNameLength, WireLimits.maxReasonLength, WireLimits.maxFirmwareVersionLength,
                      WireLimits.maxSGEPerWR, WireLimits.maxInlineData, WireLimits.maxWCsPerPoll] {
            #expect(doc.contains("\(limit)"), "limit \(limit) is not documented")
        }
        #expect(doc.contains("65,536") && WireLimits.maxMessageSize == 65_536)
        #expect(doc.contains("| 16     | 8    | `requestID`") && WireHeader.size == 24)
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
