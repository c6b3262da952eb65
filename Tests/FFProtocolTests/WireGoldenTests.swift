import FFProtocol
import Foundation
import Testing

/// The wire bytes do not change when the code that writes them does: every sample message encodes to the datagram
/// recorded in Golden/frames.txt, and decodes from it to the same message.
@Suite struct WireGoldenTests {
    private static let golden: [(kind: UInt16, bytes: [UInt8])]? = {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/frames.txt")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 2, let kind = UInt16(fields[0]) else { return nil }
            let hex = Array(fields[1].utf8)
            let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap {
                UInt8(String(decoding: hex[$0...($0 + 1)], as: UTF8.self), radix: 16)
            }
            return (kind, bytes)
        }
    }()

    @Test func everyRecordedSampleStillEncodesToItsBytesAndDecodesFromThem() throws {
        let golden = try #require(Self.golden, "Tests/FFProtocolTests/Golden/frames.txt is missing")
        #expect(golden.count >= 61, "the recording holds the 61 samples of e23896e")
        // One sample per kind: a kind added later has a sample and no recording, and is checked by the round trips.
        let samples = Dictionary(uniqueKeysWithValues: try Fixtures.encodedSamples().map { ($0.0.kind.rawValue, $0) })
        for recorded in golden {
            let sample = try #require(samples[recorded.kind], "no sample of kind \(recorded.kind) any more")
            #expect(sample.1 == recorded.bytes, "\(sample.0.kind) encodes to other bytes than recorded")
            #expect(try Frame.decode(recorded.bytes).message == sample.0, "\(sample.0.kind) decodes differently")
        }
    }
}
