import Synchronization

/// Where things live in a ring mapping (docs/protocol.md "Shared-memory fast path"): a 4 KiB control page, then the
/// rings, each a 128-byte header (the consumer's `head` on its own cache line, the producer's `tail` on the next) and
/// its slots. All integers little-endian; both processes map the same memfd.
public enum RingLayout {
    /// Cache line the indices are separated by.
    public static let cacheLine = 64
    /// The control page at the start of every mapping.
    public static let controlSize = 4096
    /// `"FFRG"` as a little-endian u32 at offset 0 of the control page.
    public static let magic: UInt32 = 0x4752_4646
    /// Layout version at offset 4.
    public static let version: UInt32 = 1
    /// Offset of the ring count (u32).
    public static let ringCountOffset = 8
    /// Offset of the mapping's total size (u64).
    public static let mapSizeOffset = 16
    /// Offset of the router's "asleep" word (u32, its own cache line): non-zero while the data-path thread serving
    /// this mapping sleeps, so a producer rings the doorbell only then.
    public static let sleepingOffset = 64
    /// Offset of the first ring descriptor (32 bytes each: offset u64, capacity u32, slotSize u32, kind u32, reserved
    /// 12).
    public static let descriptorsOffset = 128
    /// Size of one ring descriptor.
    public static let descriptorSize = 32
    /// Rings per mapping at most (a QP's send and receive rings).
    public static let maxRings = 2
    /// Offset of `head` in a ring header.
    public static let headOffset = 0
    /// Offset of `tail` in a ring header.
    public static let tailOffset = 64
    /// Ring header size; slots start right after it.
    public static let headerSize = 128
    /// Most slots in one ring.
    public static let maxCapacity = 1 << 16

    /// `value` rounded up to a multiple of `alignment` (a power of two); nil if it would overflow.
    public static func roundUp(_ value: Int, to alignment: Int) -> Int? {
        let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
        return overflow ? nil : sum & ~(alignment - 1)
    }

    /// The smallest power of two ≥ `count` (and ≥ 1), or nil beyond `maxCapacity`.
    public static func capacity(for count: Int) -> Int? {
        guard count <= maxCapacity else { return nil }
        var c = 1
        while c < count { c <<= 1 }
        return c
    }
}

/// What a ring carries.
public enum RingKind: UInt32, Sendable {
    /// Send work requests, client → router (`SendWorkRequest` layout).
    case send = 1
    /// Receive work requests, client → router (`ReceiveWorkRequest` layout).
    case receive = 2
    /// Work completions, router → client (`WorkCompletion` layout).
    case completion = 3
}

/// One ring of a mapping as the control page describes it.
public struct RingDescriptor: Sendable, Equatable {
    /// Byte offset of the ring header in the mapping.
    public var offset: Int
    /// Slots (a power of two).
    public var capacity: Int
    /// Bytes per slot (a multiple of 64).
    public var slotSize: Int
    /// What it carries.
    public var kind: RingKind

    /// A descriptor with every field given.
    public init(offset: Int, capacity: Int, slotSize: Int, kind: RingKind) {
        self.offset = offset
        self.capacity = capacity
        self.slotSize = slotSize
        self.kind = kind
    }

    /// Bytes the ring takes (header and slots).
    public var byteCount: Int { RingLayout.headerSize + capacity * slotSize }
}

/// Lays out rings in a mapping and reads the layout back.
public enum RingMapLayout {
    /// Places `rings` (capacity, slot size, kind) one after the other after the control page, each page-aligned.
    /// Returns the descriptors and the total size, or nil if a capacity or slot size is out of range.
    public static func plan(_ rings: [(capacity: Int, slotSize: Int, kind: RingKind)], pageSize: Int = 4096)
        -> (rings: [RingDescriptor], size: Int)? {
        guard rings.count <= RingLayout.maxRings else { return nil }
        var offset = RingLayout.controlSize
        var out: [RingDescriptor] = []
        for r in rings {
            guard r.capacity >= 1, r.capacity <= RingLayout.maxCapacity, r.capacity & (r.capacity - 1) == 0,
                  r.slotSize >= RingLayout.cacheLine, r.slotSize <= 4096, r.slotSize % RingLayout.cacheLine == 0 else {
                      return nil
                  }
            let d = RingDescriptor(offset: offset, capacity: r.capacity, slotSize: r.slotSize, kind: r.kind)
            guard let next = RingLayout.roundUp(offset + d.byteCount, to: pageSize) else { return nil }
            out.append(d)
            offset = next
        }
        return (out, offset)
    }

    /// Writes the control page for `rings` into a zeroed mapping of `size` bytes.
    public static func writeControl(_ base: UnsafeMutableRawPointer, rings: [RingDescriptor], size: Int) {
        base.storeBytes(of: RingLayout.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: RingLayout.version.littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: UInt32(rings.count).littleEndian, toByteOffset: RingLayout.ringCountOffset, as: UInt32.self)
        base.storeBytes(of: UInt64(size).littleEndian, toByteOffset: RingLayout.mapSizeOffset, as: UInt64.self)
        for (i, r) in rings.enumerated() {
            let at = RingLayout.descriptorsOffset + i * RingLayout.descriptorSize
            base.storeBytes(of: UInt64(r.offset).littleEndian, toByteOffset: at, as: UInt64.self)
            base.storeBytes(of: UInt32(r.capacity).littleEndian, toByteOffset: at + 8, as: UInt32.self)
            base.storeBytes(of: UInt32(r.slotSize).littleEndian, toByteOffset: at + 12, as: UInt32.self)
            base.storeBytes(of: r.kind.rawValue.littleEndian, toByteOffset: at + 16, as: UInt32.self)
        }
    }

    /// Reads the control page of a mapping of `size` bytes, checking that every ring lies inside it; nil if it does not
    /// describe a valid layout (the client's check of what the router wrote).
    public static func readControl(_ base: UnsafeRawPointer, size: Int) -> [RingDescriptor]? {
        guard size >= RingLayout.controlSize,
              UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == RingLayout.magic,
              UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == RingLayout.version else {
                  return nil
              }
        let count = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: RingLayout.ringCountOffset,
                                                                as: UInt32.self)))
        guard count <= RingLayout.maxRings else { return nil }
        var out: [RingDescriptor] = []
        for i in 0..<count {
            let at = RingLayout.descriptorsOffset + i * RingLayout.descriptorSize
            let offset = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            let capacity = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self)))
            let slotSize = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self)))
            guard let kind = RingKind(rawValue: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at + 16,
                as: UInt32.self))),
                  offset <= UInt64(size), offset % UInt64(RingLayout.cacheLine) == 0,
                  capacity >= 1, capacity <= RingLayout.maxCapacity, capacity & (capacity - 1) == 0,
                  slotSize >= RingLayout.cacheLine, slotSize <= 4096, slotSize % RingLayout.cacheLine == 0 else {
                      return nil
                  }
            let d = RingDescriptor(offset: Int(offset), capacity: capacity, slotSize: slotSize, kind: kind)
            guard d.offset + d.byteCount <= size else { return nil }
            out.append(d)
        }
        return out
    }
}

/// The shared indices and slots of one ring inside a mapping; copies are views of the same memory. The mapping must
/// outlive every view.
public struct RingMemory: @unchecked Sendable {
    // @unchecked: a view of shared memory; the producer/consumer discipline (one of each) is the user's.
    /// The ring's header.
    public let header: UnsafeMutableRawPointer
    /// Slots (a power of two).
    public let capacity: Int
    /// Bytes per slot.
    public let slotSize: Int

    /// The ring `descriptor` describes in the mapping at `base`.
    public init(base: UnsafeMutableRawPointer, _ descriptor: RingDescriptor) {
        header = base + descriptor.offset
        capacity = descriptor.capacity
        slotSize = descriptor.slotSize
    }

    var head: UnsafeMutablePointer<Atomic<UInt64>> {
        (header + RingLayout.headOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }
    var tail: UnsafeMutablePointer<Atomic<UInt64>> {
        (header + RingLayout.tailOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// The slot for ring position `index` (any counter value; it wraps).
    @inline(__always)
    public func slot(_ index: UInt64) -> UnsafeMutableRawPointer {
        header + RingLayout.headerSize + Int(index & UInt64(capacity - 1)) * slotSize
    }
}

/// The producing side of a ring. It keeps its own `tail` and never reads it back from shared memory, and checks the
/// consumer's `head` it reads: a peer that writes garbage there makes the ring look full (`corrupt`), never lets the
/// producer overwrite unread slots or index outside the ring.
public struct RingProducer: @unchecked Sendable {
    // @unchecked: used by one thread (the producer).
    /// The ring.
    public let memory: RingMemory
    /// Next position to fill; published to the consumer by `publish()`.
    public private(set) var tail: UInt64
    private var published: UInt64
    private var cachedHead: UInt64
    /// Whether the consumer's `head` was ever seen outside `tail - capacity ... tail`.
    public private(set) var corrupt = false

    /// A producer starting at position 0 of a fresh ring.
    public init(_ memory: RingMemory) {
        self.memory = memory
        tail = 0
        published = 0
        cachedHead = 0
    }

    /// Free slots, reading the consumer's `head` (acquire) only when the cached value says the ring is full.
    @inline(__always)
    public mutating func freeSlots() -> Int {
        let used = tail &- cachedHead
        if used < UInt64(memory.capacity) { return memory.capacity - Int(used) }
        let head = memory.head.pointee.load(ordering: .acquiring)
        let distance = tail &- head
        guard distance <= UInt64(memory.capacity) else {
            corrupt = true
            return 0
        }
        cachedHead = head
        return memory.capacity - Int(distance)
    }

    /// The next slot to fill, or nil when the ring is full. Fill it, then `advance()`.
    @inline(__always)
    public mutating func reserve() -> UnsafeMutableRawPointer? {
        freeSlots() > 0 ? memory.slot(tail) : nil
    }

    /// Counts the reserved slot as filled (not yet visible to the consumer).
    @inline(__always)
    public mutating func advance() { tail &+= 1 }

    /// Makes every filled slot visible (release store of `tail`); false if there was nothing new.
    @inline(__always)
    @discardableResult
    public mutating func publish() -> Bool {
        guard published != tail else { return false }
        memory.tail.pointee.store(tail, ordering: .releasing)
        published = tail
        return true
    }
}

/// The consuming side of a ring. It keeps its own `head` and checks the producer's `tail`: a `tail` more than
/// `capacity` ahead (or behind) is a hostile or broken producer, reported as `corrupt` with nothing available.
public struct RingConsumer: @unchecked Sendable {
    // @unchecked: used by one thread (the consumer).
    /// The ring.
    public let memory: RingMemory
    /// Next position to read.
    public private(set) var head: UInt64
    /// Whether the producer's `tail` was ever seen outside `head ... head + capacity`.
    public private(set) var corrupt = false

    /// A consumer starting at position 0 of a fresh ring.
    public init(_ memory: RingMemory) {
        self.memory = memory
        head = 0
    }

    /// Slots ready to read (acquire load of `tail`); 0 for a corrupt `tail`.
    @inline(__always)
    public mutating func available() -> Int {
        let tail = memory.tail.pointee.load(ordering: .acquiring)
        let distance = tail &- head
        guard distance <= UInt64(memory.capacity) else {
            corrupt = true
            return 0
        }
        return Int(distance)
    }

    /// The `offset`-th ready slot (offset < `available()`).
    @inline(__always)
    public func slot(_ offset: Int) -> UnsafeMutableRawPointer { memory.slot(head &+ UInt64(offset)) }

    /// Hands `count` read slots back to the producer (release store of `head`).
    @inline(__always)
    public mutating func release(_ count: Int) {
        guard count > 0 else { return }
        head &+= UInt64(count)
        memory.head.pointee.store(head, ordering: .releasing)
    }
}

/// The "router asleep" word of a mapping's control page.
public struct RingSleepFlag: @unchecked Sendable {
    // @unchecked: a view of shared memory, written by the router, read by the client.
    private let word: UnsafeMutablePointer<Atomic<UInt32>>

    /// The flag of the mapping at `base`.
    public init(base: UnsafeMutableRawPointer) {
        word = (base + RingLayout.sleepingOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Router: about to sleep (true) or awake (false); sequentially consistent, paired with `needsDoorbell`.
    public func set(_ asleep: Bool) { word.pointee.store(asleep ? 1 : 0, ordering: .sequentiallyConsistent) }

    /// Producer, after publishing: whether the router may be asleep and must be woken. The fence orders the
    /// tail store before this load (the router stores the flag before its last look at the rings).
    @inline(__always)
    public func needsDoorbell() -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return word.pointee.load(ordering: .relaxed) != 0
    }
}
