import FFProtocol
import FreeFlowTestSupport
import Testing

@Suite struct FuzzTests {
    /// 100k seeded inputs: pure noise, noise behind a valid header, and mutated valid messages.
    /// Decoding must never trap, must only throw WireError (typed throws), and whatever decodes
    /// must re-encode to exactly the same bytes (one canonical encoding per message).
    @Test func seededRandomInputsNeverCrashAndAcceptedOnesAreCanonical() throws {
        var rng = SplitMix64(seed: 0xF3EE_F10A)
        let samples = try Fixtures.encodedSamples().map(\.1)
        let kinds = MessageKind.allCases
        var accepted = 0
        var rejected = 0
        var noiseAccepted = 0
        for i in 0..<100_000 {
            var input: [UInt8]
            switch i % 3 {
            case 0:
                input = (0..<Int.random(in: 0...96, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                let kind = kinds.randomElement(using: &rng)!
                let body = (0..<Int.random(in: 0...160, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var w = WireWriter()
                WireHeader(version: 1, kind: kind, descriptorCount: kind.descriptorCounts.lowerBound, bodyLength: UInt32(body.count), requestID: rng.next()).encode(to: &w)
                input = w.bytes + body
            default:
                input = samples.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let at = Int.random(in: 0..<input.count, using: &rng)
                    switch UInt8.random(in: 0...3, using: &rng) {
                    case 0: input[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: input[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                    case 2: input.remove(at: at)
                    default: input.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                    }
                    if input.isEmpty { break }
                }
                if input.count >= WireHeader.size && Bool.random(using: &rng) { Fixtures.refreshLength(&input) }
            }
            do throws(WireError) {
                let frame = try Frame.decode(input)
                accepted += 1
                if i % 3 == 0 { noiseAccepted += 1 }
                let again = try frame.encode()
                #expect(again == input, "input \(i) decoded but does not re-encode identically")
            } catch {
                rejected += 1
                #expect(error.offset >= 0 && error.offset <= max(input.count, WireHeader.size), "input \(i): \(error)")
            }
        }
        // Pure noise lacks the magic (2^-32 per input) and a consistent length: none of it may decode.
        #expect(noiseAccepted == 0, "\(noiseAccepted) inputs of pure noise decoded")
        #expect(accepted > 100, "the mutation fuzzer should keep some inputs valid")
        #expect(rejected > 50_000)
    }
}
