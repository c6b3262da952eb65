import CVerbs

/// A protection domain (`ibv_alloc_pd(3)`); deallocated when the last reference goes. Keeps its context alive.
public final class ProtectionDomain: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_pd>
    /// The context the PD belongs to.
    public let context: Context

    init(raw: UnsafeMutablePointer<ibv_pd>, context: Context) {
        self.raw = raw
        self.context = context
    }

    deinit { ibv_dealloc_pd(raw) }

    /// `ibv_reg_mr(3)`: registers `buffer` so that the device may access it as `access` allows. The
    /// buffer must stay mapped while the region lives; pass its owner as `keepAlive` to tie the two.
    public func registerMemory(_ buffer: UnsafeMutableRawBufferPointer, access: AccessFlags,
                               keepAlive: AnyObject? = nil) throws(VerbsError) -> MemoryRegion {
        let mr = try Call.returnsPointer("ibv_reg_mr", detail: "\(buffer.count) bytes") {
            ffv_reg_mr(raw, buffer.baseAddress, buffer.count, Int32(bitPattern: access.rawValue))
        }
        return MemoryRegion(raw: mr, pd: self, buffer: buffer, iova: nil, keepAlive: keepAlive)
    }

    /// `ibv_reg_mr_iova(3)`: registers `buffer` so that remote peers address it at `iova` instead of its
    /// local address. FreeFlow's router uses this to expose an application's own virtual addresses.
    /// Soft-RoCE requires `iova` to keep the buffer's offset within its 4 KiB page.
    public func registerMemory(_ buffer: UnsafeMutableRawBufferPointer, iova: UInt64, access: AccessFlags,
                               keepAlive: AnyObject? = nil) throws(VerbsError) -> MemoryRegion {
        let mr = try Call.returnsPointer("ibv_reg_mr_iova",
                                         detail: "\(buffer.count) bytes at iova 0x\(String(iova, radix: 16))") {
            ffv_reg_mr_iova(raw, buffer.baseAddress, buffer.count, iova, Int32(bitPattern: access.rawValue))
        }
        return MemoryRegion(raw: mr, pd: self, buffer: buffer, iova: iova, keepAlive: keepAlive)
    }

    /// Registers the whole of an `AlignedBuffer`, keeping it alive as long as the region.
    public func registerMemory(_ buffer: AlignedBuffer, access: AccessFlags) throws(VerbsError) -> MemoryRegion {
        try registerMemory(buffer.bytes, access: access, keepAlive: buffer)
    }

    /// `ibv_create_ah(3)`.
    public func createAddressHandle(_ attributes: AddressVector) throws(VerbsError) -> AddressHandle {
        var attr = attributes.raw
        let ah = try Call.returnsPointer("ibv_create_ah", detail: attributes.description) { ibv_create_ah(raw, &attr) }
        return AddressHandle(raw: ah, pd: self, attributes: attributes)
    }
}

/// Access rights of a memory region or QP (`enum ibv_access_flags`).
public struct AccessFlags: OptionSet, Hashable, Sendable {
    /// The `IBV_ACCESS_*` bits.
    public let rawValue: UInt32
    /// Wraps `IBV_ACCESS_*` bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IBV_ACCESS_LOCAL_WRITE: the device may write (needed for receives and for remote write/atomic).
    public static let localWrite = AccessFlags(rawValue: IBV_ACCESS_LOCAL_WRITE.rawValue)
    /// IBV_ACCESS_REMOTE_WRITE.
    public static let remoteWrite = AccessFlags(rawValue: IBV_ACCESS_REMOTE_WRITE.rawValue)
    /// IBV_ACCESS_REMOTE_READ.
    public static let remoteRead = AccessFlags(rawValue: IBV_ACCESS_REMOTE_READ.rawValue)
    /// IBV_ACCESS_REMOTE_ATOMIC.
    public static let remoteAtomic = AccessFlags(rawValue: IBV_ACCESS_REMOTE_ATOMIC.rawValue)
    /// Everything a peer may do: local write, remote read/write/atomic.
    public static let all: AccessFlags = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
}
