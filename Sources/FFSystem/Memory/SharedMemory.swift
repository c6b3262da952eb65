#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// Memory backed by a memfd (memfd_create(2)) and mapped shared, so another process that receives the
/// descriptor can map the same pages: how an application's buffers reach the router without a copy.
public final class SharedMemory: @unchecked Sendable {
    // @unchecked: the mapping and the descriptor are immutable after init.
    /// The mapped bytes.
    public let bytes: UnsafeMutableRawBufferPointer
    /// The memfd holding the pages.
    public let descriptor: OwnedDescriptor

    /// Creates a memfd of `size` bytes (rounded up to whole pages) and maps it read-write. `sealed`: its size is
    /// sealed (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL), so a process it is passed to cannot truncate it under this
    /// process's mapping. Unsealed, it still allows sealing, so that a router that copies registered memory itself
    /// (the fake device) can seal it against shrinking when it is registered (`MemoryFile.sealAgainstShrinking`).
    public init(name: String, size: Int, sealed: Bool = false) throws(SystemError) {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let length = max(pageSize, (size + pageSize - 1) / pageSize * pageSize)
        let fd = memfd_create(name, FFS_MFD_CLOEXEC | FFS_MFD_ALLOW_SEALING)
        guard fd >= 0 else { throw SystemError.last("memfd_create", name) }
        let owned = OwnedDescriptor(taking: fd)
        guard ftruncate(fd, off_t(length)) == 0 else { throw SystemError.last("ftruncate", "\(name), \(length) bytes") }
        if sealed {
            guard fcntl(fd, FFS_F_ADD_SEALS, FFS_F_SEAL_SIZE_AND_SEALS) == 0 else {
                throw SystemError.last("fcntl(F_ADD_SEALS)", name)
            }
        }
        bytes = try Self.map(fd: fd, offset: 0, length: length, what: name)
        descriptor = owned
    }

    /// Maps `length` bytes at `offset` of a received memfd read-write; keeps the descriptor.
    public init(mapping descriptor: OwnedDescriptor, offset: Int, length: Int) throws(SystemError) {
        var st = stat()
        guard fstat(descriptor.rawValue, &st) == 0 else { throw SystemError.last("fstat", "memfd") }
        guard offset >= 0, length > 0, offset + length <= Int(st.st_size) else {
            throw SystemError(operation: "mmap", errno: EINVAL,
                              detail: "range \(offset)+\(length) outside the memfd's \(st.st_size) bytes")
        }
        bytes = try Self.map(fd: descriptor.rawValue, offset: offset, length: length, what: "memfd")
        self.descriptor = descriptor
    }

    private static func map(fd: Int32, offset: Int, length: Int, what: String) throws(SystemError)
        -> UnsafeMutableRawBufferPointer {
        let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset))
        guard let address, address != MAP_FAILED else {
            throw SystemError.last("mmap", "\(what), \(length) bytes at \(offset)")
        }
        return UnsafeMutableRawBufferPointer(start: address, count: length)
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }

    /// The address of the first mapped byte in this process.
    public var address: UInt64 { UInt64(UInt(bitPattern: bytes.baseAddress)) }
}
