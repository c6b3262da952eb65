/// The slots of the rings: each holds one message in the layout docs/protocol.md gives for the control socket
/// (`SendWorkRequest`, `ReceiveWorkRequest`, `WorkCompletion`), padded to the ring's slot size. Writers store fields
/// in place (no allocation); the router reads a slot by copying it once into its own memory and decoding that copy in
/// place with the socket path's checks (`decodeSend`, `decodeReceive`), so a client changing the slot meanwhile cannot
/// make it use a value it did not check, and a slot costs the router no allocation.
public enum RingSlots {
    /// Bytes of a completion slot (a 48-byte `WorkCompletion`, padded).
    public static let completionSlotSize = 64

    /// Slot size of a send ring for QPs with these capabilities: room for the fixed part and the larger of the SGE
    /// list and the inline payload.
    public static func sendSlotSize(maxSGE: Int, maxInline: Int) -> Int {
        let sge = min(max(0, maxSGE), WireLimits.maxSGEPerWR)
        let inline = min(max(0, maxInline), WireLimits.maxInlineData)
        return RingLayout.roundUp(64 + max(16 * sge, inline, 16), to: RingLayout.cacheLine)!
    }

    /// Slot size of a receive ring for `maxSGE` scatter entries.
    public static func receiveSlotSize(maxSGE: Int) -> Int {
        RingLayout.roundUp(16 + 16 * max(1, min(maxSGE, WireLimits.maxSGEPerWR)), to: RingLayout.cacheLine)!
    }

    /// Most SGEs a send slot of `slotSize` bytes holds.
    public static func sendSGECapacity(slotSize: Int) -> Int {
        min(WireLimits.maxSGEPerWR, max(0, (slotSize - 64) / 16))
    }
    /// Most inline bytes a send slot of `slotSize` bytes holds.
    public static func sendInlineCapacity(slotSize: Int) -> Int { min(WireLimits.maxInlineData, max(0, slotSize - 64)) }
    /// Most SGEs a receive slot of `slotSize` bytes holds.
    public static func receiveSGECapacity(slotSize: Int) -> Int {
        min(WireLimits.maxSGEPerWR, max(0, (slotSize - 16) / 16))
    }

    @inline(__always)
    static func put<T: FixedWidthInteger>(_ slot: UnsafeMutableRawPointer, _ offset: Int, _ value: T) {
        slot.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    @inline(__always)
    static func get<T: FixedWidthInteger>(_ slot: UnsafeRawPointer, _ offset: Int, _: T.Type) -> T {
        T(littleEndian: slot.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Writes the 64 fixed bytes of a send work request (raw values as verbs has them; the router checks them).
    @inline(__always)
    public static func writeSend(_ slot: UnsafeMutableRawPointer, wrID: UInt64, opcode: UInt32, flags: UInt32,
                                 immData: UInt32,
                                 rkey: UInt32, remoteAddress: UInt64, compareAdd: UInt64, swap: UInt64,
                                 addressHandle: UInt32,
                                 remoteQPN: UInt32, remoteQKey: UInt32, sgeCount: UInt16, inlineLength: UInt16) {
        put(slot, 0, wrID)
        put(slot, 8, opcode)
        put(slot, 12, flags)
        put(slot, 16, immData)
        put(slot, 20, rkey)
        put(slot, 24, remoteAddress)
        put(slot, 32, compareAdd)
        put(slot, 40, swap)
        put(slot, 48, addressHandle)
        put(slot, 52, remoteQPN)
        put(slot, 56, remoteQKey)
        put(slot, 60, sgeCount)
        put(slot, 62, inlineLength)
    }

    /// Writes SGE `index` of a send (`fixed` 64) or receive (`fixed` 16) slot.
    @inline(__always)
    public static func writeSGE(_ slot: UnsafeMutableRawPointer, fixed: Int, index: Int, address: UInt64,
                                length: UInt32, lkey: UInt32) {
        let at = fixed + 16 * index
        put(slot, at, address)
        put(slot, at + 8, length)
        put(slot, at + 12, lkey)
    }

    /// Where a send slot's inline payload goes.
    @inline(__always)
    public static func inlinePayload(_ slot: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer { slot + 64 }

    /// Writes the 16 fixed bytes of a receive work request.
    @inline(__always)
    public static func writeReceive(_ slot: UnsafeMutableRawPointer, wrID: UInt64, sgeCount: UInt16) {
        put(slot, 0, wrID)
        put(slot, 8, sgeCount)
        put(slot, 10, UInt16(0))
        put(slot, 12, UInt32(0))
    }

    /// Most bytes a slot can have (`RingMapLayout` refuses larger ones): the size of the router's slot copy.
    public static let maxSlotSize = 4096

    /// Copies a slot of `slotSize` bytes (at most `maxSlotSize`) into `copy`, once: the router decodes and uses only
    /// the copy, so a client changing the slot meanwhile cannot make it use a value it did not check.
    @inline(__always)
    public static func copy(_ slot: UnsafeRawPointer, slotSize: Int, into copy: UnsafeMutableRawPointer) {
        copy.copyMemory(from: slot, byteCount: min(max(0, slotSize), maxSlotSize))
    }

    /// A send work request decoded from a slot copy without allocating: the fixed fields, checked; its SGEs (`sge(_:)`)
    /// and inline payload (`inlinePayload`) stay in the copy.
    public struct DecodedSend {
        /// `wr_id`.
        public var wrID: UInt64
        /// Operation.
        public var opcode: SendOpcode
        /// Send flags (only supported bits).
        public var flags: SendFlags
        /// Immediate data, the verbatim `__be32` bits.
        public var immData: UInt32
        /// RDMA/atomic target rkey.
        public var rkey: UInt32
        /// RDMA/atomic target address.
        public var remoteAddress: UInt64
        /// Atomic compare value or addend.
        public var compareAdd: UInt64
        /// Atomic swap value.
        public var swap: UInt64
        /// UD address handle; nil for connected QPs.
        public var addressHandle: AHHandle?
        /// UD remote QP number (24 bits).
        public var remoteQPN: UInt32
        /// UD remote Q_Key.
        public var remoteQKey: UInt32
        /// SGEs in the copy (0 with `.inline`).
        public var sgeCount: Int
        /// Inline bytes in the copy (0 without `.inline`).
        public var inlineLength: Int
    }

    /// A receive work request decoded from a slot copy: its SGEs stay in the copy (`sge(_:fixed:index:)` with 16).
    public struct DecodedReceive {
        /// `wr_id`.
        public var wrID: UInt64
        /// SGEs in the copy.
        public var sgeCount: Int
    }

    /// Decodes a send slot copy of `slotSize` bytes with every check of the socket path's decoder
    /// (`SendWorkRequest(from:)`: opcode, flags, remote QPN, SGE/inline split and bounds) and that the SGEs or the
    /// inline payload fit the slot; bytes after the request are padding and ignored. Allocates nothing but an error.
    public static func decodeSend(_ copy: UnsafeRawPointer, slotSize: Int) throws(WireError) -> DecodedSend {
        guard slotSize >= 64 else { throw WireError(.truncated, field: "sendWR.wrID", offset: 0) }
        let rawOpcode = get(copy, 8, UInt32.self)
        guard let opcode = SendOpcode(rawValue: rawOpcode) else {
            throw WireError(.valueOutOfRange(UInt64(rawOpcode)), field: "sendWR.opcode", offset: 8)
        }
        let rawFlags = get(copy, 12, UInt32.self)
        guard rawFlags & ~SendFlags.supported.rawValue == 0 else {
            throw WireError(.valueOutOfRange(UInt64(rawFlags)), field: "sendWR.flags", offset: 12)
        }
        let flags = SendFlags(rawValue: rawFlags)
        let remoteQPN = get(copy, 52, UInt32.self)
        guard remoteQPN <= 0xFF_FFFF else {
            throw WireError(.valueOutOfRange(UInt64(remoteQPN)), field: "sendWR.remoteQPN", offset: 52)
        }
        let inline = flags.contains(.inline)
        let sgeCount = Int(get(copy, 60, UInt16.self))
        let sgeMax = inline ? 0 : WireLimits.maxSGEPerWR
        guard sgeCount <= sgeMax else {
            throw WireError(.countTooLarge(count: sgeCount, max: sgeMax), field: "sendWR.sgeCount", offset: 60)
        }
        let inlineLength = Int(get(copy, 62, UInt16.self))
        let inlineMax = inline ? WireLimits.maxInlineData : 0
        guard inlineLength <= inlineMax else {
            throw WireError(.countTooLarge(count: inlineLength, max: inlineMax), field: "sendWR.inlineLength",
                            offset: 62)
        }
        // Both counts are bounded above (≤ 32 SGEs, ≤ 512 bytes): the sum cannot overflow.
        guard 64 + 16 * sgeCount <= slotSize else {
            throw WireError(.truncated, field: "sge.address", offset: min(slotSize, 64 + 16 * sgeCount))
        }
        guard 64 + 16 * sgeCount + inlineLength <= slotSize else {
            throw WireError(.truncated, field: "sendWR.inlineData", offset: 64 + 16 * sgeCount)
        }
        let handle = get(copy, 48, UInt32.self)
        return DecodedSend(wrID: get(copy, 0, UInt64.self), opcode: opcode, flags: flags,
                           immData: get(copy, 16, UInt32.self),
                           rkey: get(copy, 20, UInt32.self), remoteAddress: get(copy, 24, UInt64.self),
                           compareAdd: get(copy, 32, UInt64.self),
                           swap: get(copy, 40, UInt64.self),
                           addressHandle: handle == 0 ? nil : AHHandle(rawValue: handle),
                           remoteQPN: remoteQPN, remoteQKey: get(copy, 56, UInt32.self), sgeCount: sgeCount,
                           inlineLength: inlineLength)
    }

    /// Decodes a receive slot copy of `slotSize` bytes with the socket path's checks (SGE count, zero reserved bytes)
    /// and that the SGEs fit the slot.
    public static func decodeReceive(_ copy: UnsafeRawPointer, slotSize: Int) throws(WireError) -> DecodedReceive {
        guard slotSize >= 16 else { throw WireError(.truncated, field: "recvWR.wrID", offset: 0) }
        let sgeCount = Int(get(copy, 8, UInt16.self))
        guard sgeCount <= WireLimits.maxSGEPerWR else {
            throw WireError(.countTooLarge(count: sgeCount, max: WireLimits.maxSGEPerWR), field: "recvWR.sgeCount",
                            offset: 8)
        }
        guard get(copy, 10, UInt16.self) == 0, get(copy, 12, UInt32.self) == 0 else {
            throw WireError(.nonZeroReserved, field: "recvWR.reserved", offset: 10)
        }
        guard 16 + 16 * sgeCount <= slotSize else {
            throw WireError(.truncated, field: "sge.address", offset: min(slotSize, 16 + 16 * sgeCount))
        }
        return DecodedReceive(wrID: get(copy, 0, UInt64.self), sgeCount: sgeCount)
    }

    /// SGE `index` of a decoded send (`fixed` 64) or receive (`fixed` 16) slot copy; `index` < its `sgeCount`.
    @inline(__always)
    public static func sge(_ copy: UnsafeRawPointer, fixed: Int, index: Int) -> ScatterGatherEntry {
        let at = fixed + 16 * index
        return ScatterGatherEntry(address: get(copy, at, UInt64.self), length: get(copy, at + 8, UInt32.self),
                                  lkey: get(copy, at + 12, UInt32.self))
    }

    /// The work request id of a slot (first 8 bytes of both request layouts), for the error completion of a slot that
    /// does not decode.
    public static func workRequestID(_ slot: UnsafeRawPointer) -> UInt64 { get(slot, 0, UInt64.self) }

    /// Writes a completion in its 48-byte layout (reserved bytes zero).
    @inline(__always)
    public static func writeCompletion(_ slot: UnsafeMutableRawPointer, _ c: WorkCompletion) {
        put(slot, 0, c.wrID)
        put(slot, 8, c.status.rawValue)
        put(slot, 12, c.opcode.rawValue)
        put(slot, 16, c.vendorError)
        put(slot, 20, c.byteLength)
        put(slot, 24, c.immData)
        put(slot, 28, c.qpNum)
        put(slot, 32, c.sourceQP)
        put(slot, 36, c.flags.rawValue)
        put(slot, 40, c.pkeyIndex)
        put(slot, 42, c.sourceLID)
        put(slot, 44, c.serviceLevel)
        put(slot, 45, c.dlidPathBits)
        put(slot, 46, UInt16(0))
    }

    /// The raw fields of a completion slot, as verbs' `struct ibv_wc` holds them (the client copies them without
    /// converting enums: the router wrote only values the protocol allows).
    public struct RawCompletion {
        /// `wr_id`.
        public var wrID: UInt64
        /// `status`.
        public var status: UInt32
        /// `opcode`.
        public var opcode: UInt32
        /// `vendor_err`.
        public var vendorError: UInt32
        /// `byte_len`.
        public var byteLength: UInt32
        /// `imm_data`.
        public var immData: UInt32
        /// `qp_num`.
        public var qpNum: UInt32
        /// `src_qp`.
        public var sourceQP: UInt32
        /// `wc_flags`.
        public var flags: UInt32
        /// `pkey_index`.
        public var pkeyIndex: UInt16
        /// `slid`.
        public var sourceLID: UInt16
        /// `sl`.
        public var serviceLevel: UInt8
        /// `dlid_path_bits`.
        public var dlidPathBits: UInt8
    }

    /// Reads a completion slot.
    @inline(__always)
    public static func readCompletion(_ slot: UnsafeRawPointer) -> RawCompletion {
        RawCompletion(wrID: get(slot, 0, UInt64.self), status: get(slot, 8, UInt32.self),
                      opcode: get(slot, 12, UInt32.self),
                      vendorError: get(slot, 16, UInt32.self), byteLength: get(slot, 20, UInt32.self),
                      immData: get(slot, 24, UInt32.self),
                      qpNum: get(slot, 28, UInt32.self), sourceQP: get(slot, 32, UInt32.self),
                      flags: get(slot, 36, UInt32.self),
                      pkeyIndex: get(slot, 40, UInt16.self), sourceLID: get(slot, 42, UInt16.self),
                      serviceLevel: get(slot, 44, UInt8.self),
                      dlidPathBits: get(slot, 45, UInt8.self))
    }
}
