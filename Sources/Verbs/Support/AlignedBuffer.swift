#if canImport(Glibc)
import Glibc
#endif

/// Page-aligned, zero-filled heap memory for registration; freed when the last reference goes.
public final class AlignedBuffer: @unchecked Sendable {
    /// The memory.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Allocates `count` bytes aligned to `alignment` (a power of two, default 4096).
    public init(count: Int, alignment: Int = 4096) {
        precondition(count > 0 && alignment > 0 && alignment & (alignment - 1) == 0,
                     "bad AlignedBuffer size or alignment")
        let base = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: alignment)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        bytes = UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    deinit { bytes.deallocate() }

    /// The address of the first byte.
    public var address: UInt64 { UInt64(UInt(bitPattern: bytes.baseAddress)) }
}
