#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// What a descriptor a client passed as memory turned out to be, once checked.
public struct MemoryFile: Sendable, Equatable {
    /// The file's size in bytes.
    public var size: UInt64
    /// The page size the file is mapped with: 4 KiB, or the huge page size of a hugetlbfs file.
    public var pageSize: UInt64
    /// The file lives on hugetlbfs.
    public var hugePages: Bool

    /// Checks that `fd` is memory a router may map and register without risk: a memfd or other shmem file (F_GET_SEALS
    /// succeeds only there) or a hugetlbfs file, and a regular file. Anything else (a disk or FUSE file, whose pages
    /// could make `ibv_reg_mr` block, a pipe, a socket, a device) is refused with EINVAL and the reason.
    public static func check(_ fd: Int32) throws(SystemError) -> MemoryFile {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError.last("fstat", "memory descriptor") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SystemError(operation: "fstat", errno: EINVAL, detail: "the memory descriptor is not a regular file (mode 0o\(String(st.st_mode & S_IFMT, radix: 8)))")
        }
        var fs = statfs()
        guard fstatfs(fd, &fs) == 0 else { throw SystemError.last("fstatfs", "memory descriptor") }
        let huge = Int(fs.f_type) == Int(FFS_HUGETLBFS_MAGIC)
        if !huge && fcntl(fd, FFS_F_GET_SEALS) < 0 {
            throw SystemError(operation: "fcntl(F_GET_SEALS)", errno: EINVAL,
                              detail: "the memory descriptor is not a memfd (filesystem type 0x\(String(UInt(bitPattern: Int(fs.f_type)), radix: 16)))")
        }
        let base = UInt64(max(4096, sysconf(Int32(_SC_PAGESIZE))))
        let block = UInt64(max(0, Int(st.st_blksize)))
        let page = huge && block > base && block & (block - 1) == 0 ? block : base
        return MemoryFile(size: UInt64(max(0, Int64(st.st_size))), pageSize: page, hugePages: huge)
    }
}

/// A read-write shared mapping of part of a memory file a client passed. It holds no descriptor: the mapping keeps
/// the file's pages alive by itself, so a registered MR costs the router no file descriptor.
public final class MemoryMapping: @unchecked Sendable {
    // @unchecked: immutable after init.
    /// The mapped bytes.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Maps `length` bytes at `offset` of `fd`; both must be multiples of the file's page size and lie inside the
    /// file (the caller checked them with `MemoryFile.check`).
    public init(fd: Int32, offset: UInt64, length: UInt64) throws(SystemError) {
        guard length > 0, let count = Int(exactly: length), let start = off_t(exactly: offset) else {
            throw SystemError(operation: "mmap", errno: EINVAL, detail: "\(length) bytes at offset \(offset)")
        }
        let address = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start)
        guard let address, address != MAP_FAILED else { throw SystemError.last("mmap", "\(length) bytes at offset \(offset)") }
        bytes = UnsafeMutableRawBufferPointer(start: address, count: count)
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }
}
