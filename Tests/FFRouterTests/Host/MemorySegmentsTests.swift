import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Glibc
import XCTest

/// reg_mr over several memfds (`regMRSegments`): the router maps the segments side by side in one range and registers
/// it at the client's address; every hostile segment list gets the errno verbs would give and a reason, and the session
/// goes on.
final class MemorySegmentsTests: XCTestCase {
    private var backend: FakeBackend!
    private var client: SessionDriver!
    private var pd = PDHandle(rawValue: 0)
    private var a: SharedMemory!
    private var b: SharedMemory!
    /// The client's address of the buffer: any address, at page offset 0x100 like the first segment's.
    private let address: UInt64 = 0x7F00_1234_5100

    override func setUpWithError() throws {
        backend = FakeBackend()
        client = SessionDriver(backend: backend, capabilities: [.memorySegments])
        pd = client.allocPD()
        a = try SharedMemory(name: "segments-a", size: 3 * 4096)
        b = try SharedMemory(name: "segments-b", size: 2 * 4096)
    }

    /// The tail of page 1 of `a`, all of `b`, then the head of page 2 of `a`.
    private var threePieces: [MemorySegment] {
        [MemorySegment(descriptor: 0, memfdOffset: 0x1100, length: 0xF00), MemorySegment(descriptor: 1, memfdOffset: 0, length: 0x2000),
         MemorySegment(descriptor: 0, memfdOffset: 0x2000, length: 0x10)]
    }

    private func request(_ segments: [MemorySegment], descriptors: UInt8 = 2, address: UInt64? = nil, access: AccessFlags = [.localWrite]) -> RegMRSegmentsRequest {
        RegMRSegmentsRequest(pd: pd, access: access, address: address ?? self.address, length: segments.reduce(0) { $0 + $1.length },
                             descriptorCount: descriptors, segments: segments)
    }

    private func refused(_ segments: [MemorySegment], descriptors fds: [Int32]? = nil, address: UInt64? = nil) -> ErrorReply {
        let fds = fds ?? [a.descriptor.rawValue, b.descriptor.rawValue]
        return client.refused(Message(request(segments, descriptors: UInt8(fds.count), address: address)), descriptors: fds)
    }

    /// A regMRSegments datagram written field by field, so the test can send what no encoder would.
    private func datagram(_ r: RegMRSegmentsRequest, headerDescriptors: UInt8? = nil) -> [UInt8] {
        var body = WireWriter()
        body.u32(r.pd.rawValue); body.u32(r.access.rawValue); body.u64(r.address); body.u64(r.length)
        body.u8(r.descriptorCount); body.reserved(1); body.u16(UInt16(r.segments.count)); body.reserved(4)
        for s in r.segments { body.u8(s.descriptor); body.reserved(7); body.u64(s.memfdOffset); body.u64(s.length) }
        var w = WireWriter()
        WireHeader(version: 1, kind: RegMRSegmentsRequest.kind, descriptorCount: headerDescriptors ?? r.descriptorCount, bodyLength: UInt32(body.bytes.count),
                   requestID: 77).encode(to: &w)
        return w.bytes + body.bytes
    }

    /// EPROTO, answering request 77 (request 0 when the header itself is refused).
    private func malformed(_ bytes: [UInt8], descriptors: [Int32], headerRefused: Bool = false, _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        let reply = client.rawBytes(bytes, descriptors: descriptors)
        guard let e = reply.message.errorReply else { return XCTFail("\(what) was accepted", file: file, line: line) }
        XCTAssertEqual(e.errno, Errno.protocolError, "\(what): \(e.reason)", file: file, line: line)
        XCTAssertEqual(reply.requestID, headerRefused ? 0 : 77, what, file: file, line: line)
    }

    func testSegmentsOfTwoMemfdsBecomeOneMRAtTheClientsAddress() throws {
        for i in 0..<a.bytes.count { a.bytes[i] = UInt8(truncatingIfNeeded: i * 7 + 1) }
        for i in 0..<b.bytes.count { b.bytes[i] = UInt8(truncatingIfNeeded: i * 11 + 3) }
        let message = client.ok(Message(request(threePieces, access: [.localWrite, .remoteWrite])),
                                descriptors: [a.descriptor.rawValue, b.descriptor.rawValue])
        guard let reply = message.reply(to: RegMRSegmentsRequest.self) else { return XCTFail("\(message)") }
        weak var mapping: MemoryMapping?
        do {
            let entry = try XCTUnwrap(client.session.objects.mrs[reply.mr.rawValue])
            let mr = try XCTUnwrap(entry.mr as? FakeMR)
            XCTAssertEqual(entry.pinnedBytes, 4 * 4096, "one page of a, two of b, one of a: page-rounded")
            let expected = Array(a.bytes[0x1100..<0x2000]) + Array(b.bytes[0..<0x2000]) + Array(a.bytes[0x2000..<0x2010])
            let seen = try XCTUnwrap(mr.bytes(at: address, length: UInt64(expected.count)))
            XCTAssertEqual(Array(seen), expected, "the router sees the client's pages, in order")
            XCTAssertNil(mr.bytes(at: address, length: UInt64(expected.count) + 1), "the MR ends where the buffer does")
            // The same pages, not copies: a write on either side shows on the other.
            seen[0xF00 + 5] = 0xEE
            XCTAssertEqual(b.bytes[5], 0xEE)
            a.bytes[0x2008] = 0xDD
            XCTAssertEqual(seen[0xF00 + 0x2000 + 8], 0xDD)
            mapping = mr.keepAlive
        }
        XCTAssertNotNil(mapping)
        client.ok(Message(DeregMRRequest(mr: reply.mr)))
        XCTAssertNil(mapping, "dereg unmaps the segments")
        XCTAssertNil(backend.liveObjects["mr"])
    }

    func testTheOneDescriptorRequestAndASegmentListOfOneAgree() {
        let single = client.registerMemory(pd, a, offset: 0x100, length: 0x1000)
        XCTAssertNotEqual(single.lkey, 0)
        let list = client.ok(Message(request([MemorySegment(descriptor: 0, memfdOffset: 0x100, length: 0x1000)], descriptors: 1,
                                                    address: a.address + 0x100)), descriptors: [a.descriptor.rawValue])
        guard list.reply(to: RegMRSegmentsRequest.self) != nil else { return XCTFail("\(list)") }
        XCTAssertEqual(client.session.objects.mrs.values.map(\.pinnedBytes), [8192, 8192])
    }

    func testHostileSegmentListsAreRefusedWithAReasonAndTheSessionGoesOn() throws {
        func invalid(_ error: ErrorReply, _ phrase: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertEqual(error.errno, Errno.invalidArgument, "\(what): \(error.reason)", file: file, line: line)
            XCTAssertTrue(error.reason.contains(phrase), "\(what): \(error.reason)", file: file, line: line)
        }
        var overlapping = threePieces
        overlapping[2].memfdOffset = 0x1000       // page 1 of a, which segment 0 maps already
        invalid(refused(overlapping), "map the same pages", "overlapping segments of one memfd")
        let copy = dup(a.descriptor.rawValue)
        defer { close(copy) }
        var aliased = threePieces
        aliased[1] = MemorySegment(descriptor: 1, memfdOffset: 0x1000, length: 0x2000)
        invalid(refused(aliased, descriptors: [a.descriptor.rawValue, copy]), "map the same pages", "the same pages through two descriptors")

        var past = threePieces
        past[1].memfdOffset = 0x1000              // b has two pages: 0x1000 + 0x2000 passes its end
        invalid(refused(past), "outside the memfd", "a segment past its file")
        var far = threePieces
        far[2].memfdOffset = 1 << 62
        invalid(refused(far), "outside the memfd", "an offset far past the file")
        var unaligned = threePieces
        unaligned[1].memfdOffset = 0x10
        unaligned[1].length = 0x1000
        invalid(refused(unaligned), "not at a page", "an inner segment starting inside a page")
        var shortFirst = threePieces
        shortFirst[0].length = 0xE00
        invalid(refused(shortFirst), "not at a page", "a first segment ending inside a page")
        invalid(refused(threePieces, address: address + 8), "differ in page offset", "the buffer's page offset")
        var pipeFDs: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        invalid(refused(threePieces, descriptors: [a.descriptor.rawValue, pipeFDs[0]]), "descriptor 1", "a pipe as the second memfd")

        // Structure the codec refuses: EPROTO, whatever the encoder would have done.
        let fds = [a.descriptor.rawValue, b.descriptor.rawValue]
        var empty = request(threePieces)
        empty.segments[1].length = 0
        empty.length -= 0x2000
        malformed(datagram(empty), descriptors: fds, "a zero-length segment")
        var wrapping = request(threePieces)
        wrapping.segments[2].memfdOffset = UInt64.max - 4
        malformed(datagram(wrapping), descriptors: fds, "a segment wrapping 2^64")
        var sumWraps = request(threePieces)
        sumWraps.segments[1].length = UInt64.max - 0xF00 + 1
        sumWraps.length = sumWraps.segments[1].length &+ 0xF00 &+ 0x10
        malformed(datagram(sumWraps), descriptors: fds, "lengths whose sum wraps 2^64")
        var addressWraps = request(threePieces)
        addressWraps.address = UInt64.max - 0x1000
        malformed(datagram(addressWraps), descriptors: fds, "a buffer wrapping 2^64")
        malformed(datagram(request(threePieces), headerDescriptors: 65), descriptors: fds, headerRefused: true, "65 descriptors in the header")
        malformed(datagram(request(threePieces), headerDescriptors: 3), descriptors: fds + [a.descriptor.rawValue], "more descriptors than the body names")
        malformed(datagram(request(threePieces)), descriptors: [a.descriptor.rawValue], "fewer descriptors than the header says")

        // Limits: the router holds the descriptors while mapping (--max-descriptors); the pages count (--max-pinned-bytes).
        func limited(_ configure: (inout SessionLimits) -> Void, id: UInt64) -> ErrorReply {
            var limits = SessionLimits()
            configure(&limits)
            let tight = SessionDriver(backend: backend, id: id, limits: limits, capabilities: [.memorySegments])
            let request = RegMRSegmentsRequest(pd: tight.allocPD(), access: [.localWrite], address: address, length: 0x2F10, descriptorCount: 2,
                                               segments: threePieces)
            return tight.refused(Message(request), descriptors: fds)
        }
        let descriptors = limited({ $0.descriptors = 1 }, id: 2)
        XCTAssertEqual(descriptors.errno, Errno.tooManyDescriptors, descriptors.reason)
        XCTAssertTrue(descriptors.reason.contains("--max-descriptors"), descriptors.reason)
        let pinned = limited({ $0.pinnedBytes = 3 * 4096 }, id: 3)
        XCTAssertEqual(pinned.errno, Errno.outOfMemory, "four pages over a budget of three: \(pinned.reason)")
        XCTAssertTrue(pinned.reason.contains("--max-pinned-bytes"), pinned.reason)

        // Without the capability the kind is not part of the session's protocol.
        let plain = SessionDriver(backend: backend, id: 4)
        let plainPD = plain.allocPD()
        let notOffered = plain.refused(Message(RegMRSegmentsRequest(pd: plainPD, access: [.localWrite], address: address, length: 0x2F10,
                                                                           descriptorCount: 2, segments: threePieces)), descriptors: fds)
        XCTAssertEqual(notOffered.errno, Errno.protocolError)
        XCTAssertTrue(notOffered.reason.contains("memorySegments"), notOffered.reason)

        XCTAssertNil(backend.liveObjects["mr"], "nothing refused reached the device")
        // And the session still works.
        guard client.ok(Message(request(threePieces)), descriptors: fds).reply(to: RegMRSegmentsRequest.self) != nil else { return XCTFail() }
        XCTAssertEqual(backend.liveObjects["mr"], 1)
    }
}
