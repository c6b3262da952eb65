import CVerbs

/// A registered memory region (`ibv_reg_mr(3)`); deregistered when the last reference goes. Keeps its
/// protection domain, and the buffer's owner if one was given, alive.
public final class MemoryRegion: @unchecked Sendable {
    let raw: UnsafeMutablePointer<ibv_mr>
    /// The protection domain the region belongs to.
    public let pd: ProtectionDomain
    /// The registered bytes, in this process.
    public let buffer: UnsafeMutableRawBufferPointer
    /// The address peers use in RDMA and atomic requests: the iova the region was registered at, or the
    /// buffer's own address. (libibverbs keeps the local address in `ibv_mr.addr` even for an iova.)
    public let address: UInt64
    private let keepAlive: AnyObject?

    init(raw: UnsafeMutablePointer<ibv_mr>, pd: ProtectionDomain, buffer: UnsafeMutableRawBufferPointer, iova: UInt64?,
         keepAlive: AnyObject?) {
        self.raw = raw
        self.pd = pd
        self.buffer = buffer
        self.address = iova ?? UInt64(UInt(bitPattern: buffer.baseAddress))
        self.keepAlive = keepAlive
    }

    deinit { ibv_dereg_mr(raw) }

    /// Local key, for scatter/gather entries.
    public var lkey: UInt32 { raw.pointee.lkey }
    /// Remote key, for peers' RDMA and atomic operations.
    public var rkey: UInt32 { raw.pointee.rkey }
    /// Registered length in bytes.
    public var length: Int { raw.pointee.length }

    /// A scatter/gather entry for `count` bytes at `offset` into the local buffer.
    public func sge(offset: Int = 0, count: Int? = nil) -> ScatterGatherElement {
        let base = UInt64(UInt(bitPattern: buffer.baseAddress))
        return ScatterGatherElement(address: base + UInt64(offset), length: UInt32(count ?? (buffer.count - offset)),
                                    lkey: lkey)
    }
}
