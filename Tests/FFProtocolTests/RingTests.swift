import FFProtocol
import Testing

/// The shared-memory rings: layout, SPSC indices with wraparound, and a hostile peer's indices and slots.
@Suite struct RingTests {
    /// A zeroed, page-aligned mapping stand-in with one ring of `capacity` slots.
    final class Mapping {
        let base: UnsafeMutableRawPointer
        let size: Int
        let rings: [RingDescriptor]
        init(_ requested: [(capacity: Int, slotSize: Int, kind: RingKind)]) throws {
            let plan = try #require(RingMapLayout.plan(requested))
            size = plan.size
            rings = plan.rings
            base = .allocate(byteCount: size, alignment: 4096)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            RingMapLayout.writeControl(base, rings: rings, size: size)
        }
        deinit { base.deallocate() }
        func ring(_ i: Int = 0) -> RingMemory { RingMemory(base: base, rings[i]) }
    }

    @Test func layoutPlacesRingsOnPagesAndReadsBack() throws {
        let m = try Mapping([(64, RingSlots.sendSlotSize(maxSGE: 4, maxInline: 128), .send), (16, RingSlots.receiveSlotSize(maxSGE: 2), .receive)])
        #expect(m.rings[0].offset == RingLayout.controlSize)
        #expect(m.rings[1].offset % 4096 == 0 && m.rings[1].offset >= m.rings[0].offset + m.rings[0].byteCount)
        #expect(m.size % 4096 == 0 && m.size >= m.rings[1].offset + m.rings[1].byteCount)
        #expect(RingMapLayout.readControl(m.base, size: m.size) == m.rings)
        #expect(RingSlots.sendSlotSize(maxSGE: 4, maxInline: 128) == 192)
        #expect(RingSlots.sendSlotSize(maxSGE: 32, maxInline: 512) == 576)
        #expect(RingSlots.receiveSlotSize(maxSGE: 1) == 64)
        // A layout that does not fit the mapping is refused by the reader.
        #expect(RingMapLayout.readControl(m.base, size: m.size - 4096) == nil)
        #expect(RingMapLayout.plan([(3, 64, .send)]) == nil)
    }

    @Test func headAndTailSitOnSeparateCacheLines() {
        #expect(RingLayout.tailOffset - RingLayout.headOffset >= RingLayout.cacheLine)
        #expect(RingLayout.headerSize >= RingLayout.tailOffset + RingLayout.cacheLine)
        #expect(RingLayout.sleepingOffset % RingLayout.cacheLine == 0)
    }

    @Test func producerAndConsumerWrapAroundManyTimes() throws {
        let m = try Mapping([(8, 64, .completion)])
        var producer = RingProducer(m.ring())
        var consumer = RingConsumer(m.ring())
        var written: UInt64 = 0, read: UInt64 = 0
        // 8 slots, batches of 1...5: crosses the end of the ring hundreds of times.
        for round in 0..<500 {
            let batch = 1 + round % 5
            for _ in 0..<batch {
                guard let slot = producer.reserve() else { break }
                slot.storeBytes(of: written, as: UInt64.self)
                producer.advance()
                written += 1
            }
            producer.publish()
            let available = consumer.available()
            #expect(available == Int(written - read))
            for i in 0..<available { #expect(consumer.slot(i).load(as: UInt64.self) == read + UInt64(i)) }
            consumer.release(available)
            read += UInt64(available)
        }
        #expect(read == written && written > 1000)
        #expect(!producer.corrupt && !consumer.corrupt)
    }

    @Test func fullRingRefusesMoreUntilTheConsumerReleases() throws {
        let m = try Mapping([(4, 64, .send)])
        var producer = RingProducer(m.ring())
        var consumer = RingConsumer(m.ring())
        for _ in 0..<4 {
            #expect(producer.reserve() != nil)
            producer.advance()
        }
        #expect(producer.reserve() == nil)
        #expect(consumer.available() == 0, "nothing is visible before publish")
        producer.publish()
        #expect(consumer.available() == 4)
        consumer.release(1)
        #expect(producer.freeSlots() == 1)
    }

    @Test func hostileIndicesNeverExposeMoreThanTheRing() throws {
        let m = try Mapping([(16, 64, .send)])
        var consumer = RingConsumer(m.ring())
        let tail = (m.ring().header + RingLayout.tailOffset)
        for bogus: UInt64 in [17, 1 << 40, .max, .max - 3] {
            tail.storeBytes(of: bogus, as: UInt64.self)
            #expect(consumer.available() == 0)
        }
        #expect(consumer.corrupt)
        tail.storeBytes(of: 16, as: UInt64.self)
        #expect(consumer.available() == 16, "a sane tail again is served")

        let c = try Mapping([(16, 64, .completion)])
        var producer = RingProducer(c.ring())
        let head = (c.ring().header + RingLayout.headOffset)
        for _ in 0..<16 { _ = producer.reserve(); producer.advance() }
        producer.publish()
        head.storeBytes(of: 1 << 33, as: UInt64.self)
        #expect(producer.freeSlots() == 0)
        #expect(producer.corrupt)
    }

    /// A decoded send slot as the socket path's request value (SGEs and inline bytes read from the copy).
    static func sendRequest(_ copy: UnsafeRawPointer, slotSize: Int) throws(WireError) -> SendWorkRequest {
        let d = try RingSlots.decodeSend(copy, slotSize: slotSize)
        return SendWorkRequest(wrID: d.wrID, opcode: d.opcode, flags: d.flags, immData: d.immData, remoteAddress: d.remoteAddress, rkey: d.rkey,
                               compareAdd: d.compareAdd, swap: d.swap, addressHandle: d.addressHandle, remoteQPN: d.remoteQPN,
                               remoteQKey: d.remoteQKey, sgList: (0..<d.sgeCount).map { RingSlots.sge(copy, fixed: 64, index: $0) },
                               inlineData: Array(UnsafeRawBufferPointer(start: copy + 64, count: d.inlineLength)))
    }

    /// A decoded receive slot as the socket path's request value.
    static func receiveRequest(_ copy: UnsafeRawPointer, slotSize: Int) throws(WireError) -> ReceiveWorkRequest {
        let d = try RingSlots.decodeReceive(copy, slotSize: slotSize)
        return ReceiveWorkRequest(wrID: d.wrID, sgList: (0..<d.sgeCount).map { RingSlots.sge(copy, fixed: 16, index: $0) })
    }

    /// What the socket path's decoder makes of the same bytes.
    static func socketDecoded<T>(_ slot: UnsafeRawPointer, slotSize: Int, _ decode: (inout WireReader) throws(WireError) -> T) -> T? {
        var reader = WireReader(Array(UnsafeRawBufferPointer(start: slot, count: slotSize)))
        return try? decode(&reader)
    }

    @Test func sendSlotDecodesInPlaceAsTheSocketDecoderReadsIt() throws {
        let size = RingSlots.sendSlotSize(maxSGE: 2, maxInline: 64)
        let slot = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { slot.deallocate() }
        slot.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        RingSlots.writeSend(slot, wrID: 7, opcode: SendOpcode.rdmaWriteWithImmediate.rawValue, flags: SendFlags.signaled.rawValue,
                            immData: 0x0102_0304, rkey: 9, remoteAddress: 0x1000, compareAdd: 0, swap: 0, addressHandle: 0,
                            remoteQPN: 0, remoteQKey: 0, sgeCount: 2, inlineLength: 0)
        RingSlots.writeSGE(slot, fixed: 64, index: 0, address: 0xA000, length: 10, lkey: 5)
        RingSlots.writeSGE(slot, fixed: 64, index: 1, address: 0xB000, length: 20, lkey: 6)
        let expected = SendWorkRequest(wrID: 7, opcode: .rdmaWriteWithImmediate, flags: .signaled, immData: 0x0102_0304, remoteAddress: 0x1000,
                                       rkey: 9, sgList: [ScatterGatherEntry(address: 0xA000, length: 10, lkey: 5),
                                                         ScatterGatherEntry(address: 0xB000, length: 20, lkey: 6)])
        #expect(try Self.sendRequest(slot, slotSize: size) == expected)
        #expect(Self.socketDecoded(slot, slotSize: size) { (r: inout WireReader) throws(WireError) in try SendWorkRequest(from: &r) } == expected)
        // A UD send with an AH and an inline payload.
        RingSlots.writeSend(slot, wrID: 8, opcode: SendOpcode.send.rawValue, flags: SendFlags.inline.rawValue, immData: 0, rkey: 0, remoteAddress: 0,
                            compareAdd: 0, swap: 0, addressHandle: 3, remoteQPN: 0x12, remoteQKey: 0x1111, sgeCount: 0, inlineLength: 5)
        RingSlots.inlinePayload(slot).copyMemory(from: Array("hello".utf8), byteCount: 5)
        let ud = try Self.sendRequest(slot, slotSize: size)
        #expect(ud == SendWorkRequest(wrID: 8, opcode: .send, flags: .inline, addressHandle: AHHandle(rawValue: 3), remoteQPN: 0x12,
                                      remoteQKey: 0x1111, inlineData: Array("hello".utf8)))
    }

    @Test func hostileSlotsAreRefusedByTheDecoder() throws {
        let size = RingSlots.sendSlotSize(maxSGE: 2, maxInline: 0)
        let slot = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { slot.deallocate() }
        func send(opcode: UInt32 = 2, flags: UInt32 = 2, sges: UInt16 = 0, inline: UInt16 = 0, qpn: UInt32 = 0) throws -> RingSlots.DecodedSend {
            slot.initializeMemory(as: UInt8.self, repeating: 0xEE, count: size)
            RingSlots.writeSend(slot, wrID: 1, opcode: opcode, flags: flags, immData: 0, rkey: 0, remoteAddress: 0, compareAdd: 0, swap: 0,
                                addressHandle: 0, remoteQPN: qpn, remoteQKey: 0, sgeCount: sges, inlineLength: inline)
            return try RingSlots.decodeSend(slot, slotSize: size)
        }
        #expect(throws: WireError.self) { try send(opcode: 99) }
        #expect(throws: WireError.self) { try send(flags: 1 << 20) }
        #expect(throws: WireError.self) { try send(sges: 5) }
        #expect(throws: WireError.self) { try send(sges: 33) }
        #expect(throws: WireError.self) { try send(flags: SendFlags.inline.rawValue, inline: 600) }
        #expect(throws: WireError.self) { try send(flags: SendFlags.inline.rawValue, inline: UInt16(size)) }
        #expect(throws: WireError.self) { try send(sges: 1, inline: 1) }
        #expect(throws: WireError.self) { try send(flags: SendFlags.inline.rawValue, sges: 1) }
        #expect(throws: WireError.self) { try send(qpn: 1 << 24) }
        #expect(try send(sges: 1).sgeCount == 1)
        #expect(RingSlots.workRequestID(slot) == 1)

        let receive = RingSlots.receiveSlotSize(maxSGE: 1)
        slot.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        RingSlots.writeReceive(slot, wrID: 2, sgeCount: 9)
        #expect(throws: WireError.self) { try RingSlots.decodeReceive(slot, slotSize: receive) }
        RingSlots.writeReceive(slot, wrID: 2, sgeCount: 1)
        slot.storeBytes(of: UInt8(1), toByteOffset: 11, as: UInt8.self)
        #expect(throws: WireError.self) { try RingSlots.decodeReceive(slot, slotSize: receive) }
    }

    /// The in-place decoder is the router's trust boundary for ring slots: on any bytes it must accept exactly what the
    /// socket decoder accepts, with the same values.
    @Test func inPlaceDecodersAgreeWithTheSocketDecoderOnRandomSlots() throws {
        var rng = SystemRandomNumberGenerator()
        for (sendSize, receiveSize) in [(RingSlots.sendSlotSize(maxSGE: 2, maxInline: 64), RingSlots.receiveSlotSize(maxSGE: 1)),
                                        (RingSlots.sendSlotSize(maxSGE: 32, maxInline: 512), RingSlots.receiveSlotSize(maxSGE: 32))] {
            let slot = UnsafeMutableRawPointer.allocate(byteCount: sendSize, alignment: 64)
            defer { slot.deallocate() }
            var accepted = (send: 0, receive: 0)
            for i in 0..<20_000 {
                for at in stride(from: 0, to: sendSize, by: 8) { slot.storeBytes(of: rng.next() as UInt64, toByteOffset: at, as: UInt64.self) }
                // Mostly plausible headers, so that acceptance is exercised as much as refusal.
                if i % 4 != 0 {
                    slot.storeBytes(of: UInt32.random(in: 0...7, using: &rng), toByteOffset: 8, as: UInt32.self)
                    slot.storeBytes(of: UInt32.random(in: 0...15, using: &rng), toByteOffset: 12, as: UInt32.self)
                    slot.storeBytes(of: UInt32.random(in: 0...0x100_0000, using: &rng), toByteOffset: 52, as: UInt32.self)
                    let inline = slot.load(fromByteOffset: 12, as: UInt32.self) & SendFlags.inline.rawValue != 0
                    slot.storeBytes(of: UInt16.random(in: 0...(inline ? 1 : 34), using: &rng), toByteOffset: 60, as: UInt16.self)
                    slot.storeBytes(of: UInt16.random(in: 0...(inline ? 600 : 1), using: &rng), toByteOffset: 62, as: UInt16.self)
                }
                let socketSend = Self.socketDecoded(slot, slotSize: sendSize) { (r: inout WireReader) throws(WireError) in try SendWorkRequest(from: &r) }
                let ringSend = try? Self.sendRequest(slot, slotSize: sendSize)
                #expect(ringSend == socketSend)
                if ringSend != nil { accepted.send += 1 }
                if i % 4 != 0 {
                    slot.storeBytes(of: UInt16.random(in: 0...34, using: &rng), toByteOffset: 8, as: UInt16.self)
                    if Bool.random(using: &rng) {
                        slot.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                        slot.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
                    }
                }
                let socketReceive = Self.socketDecoded(slot, slotSize: receiveSize) { (r: inout WireReader) throws(WireError) in
                    try ReceiveWorkRequest(from: &r)
                }
                let ringReceive = try? Self.receiveRequest(slot, slotSize: receiveSize)
                #expect(ringReceive == socketReceive)
                if ringReceive != nil { accepted.receive += 1 }
            }
            #expect(accepted.send > 100 && accepted.receive > 100, "the random slots exercised acceptance: \(accepted)")
        }
    }

    @Test func completionSlotCarriesEveryField() throws {
        let slot = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        defer { slot.deallocate() }
        let wc = WorkCompletion(wrID: .max, status: .retryExceeded, opcode: .receiveRDMAWithImmediate, vendorError: 3, byteLength: 4,
                                immData: 5, qpNum: 6, sourceQP: 7, flags: [.withImmediate], pkeyIndex: 8, sourceLID: 9, serviceLevel: 10,
                                dlidPathBits: 11)
        RingSlots.writeCompletion(slot, wc)
        let raw = RingSlots.readCompletion(slot)
        #expect(raw.wrID == .max && raw.status == wc.status.rawValue && raw.opcode == wc.opcode.rawValue && raw.vendorError == 3)
        #expect(raw.byteLength == 4 && raw.immData == 5 && raw.qpNum == 6 && raw.sourceQP == 7 && raw.flags == WCFlags.withImmediate.rawValue)
        #expect(raw.pkeyIndex == 8 && raw.sourceLID == 9 && raw.serviceLevel == 10 && raw.dlidPathBits == 11)
        // The same 48 bytes as the socket encoding.
        var w = WireWriter()
        try wc.encode(to: &w)
        #expect(Array(UnsafeRawBufferPointer(start: slot, count: 48)) == w.bytes)
    }
}
