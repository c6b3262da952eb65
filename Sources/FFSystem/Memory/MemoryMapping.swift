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
    /// The file's device and inode: two descriptors of the same file have the same identity.
    public var identity: FileIdentity

    /// Checks that `fd` is memory a router may map and register without risk: a memfd or other shmem file (F_GET_SEALS
    /// succeeds only there) or a hugetlbfs file, and a regular file. Anything else (a disk or FUSE file, whose pages
    /// could make `ibv_reg_mr` block, a pipe, a socket, a device) is refused with EINVAL and the reason.
    public static func check(_ fd: Int32) throws(SystemError) -> MemoryFile {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError.last("fstat", "memory descriptor") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SystemError(operation: "fstat", errno: EINVAL,
                detail: "the memory descriptor is not a regular file (mode 0o\(String(st.st_mode & S_IFMT, radix: 8)))")
        }
        var fs = statfs()
        guard fstatfs(fd, &fs) == 0 else { throw SystemError.last("fstatfs", "memory descriptor") }
        let huge = Int(fs.f_type) == Int(FFS_HUGETLBFS_MAGIC)
        if !huge && fcntl(fd, FFS_F_GET_SEALS) < 0 {
            throw SystemError(operation: "fcntl(F_GET_SEALS)", errno: EINVAL,
                              detail: "the memory descriptor is not a memfd (filesystem type "
                                    + "0x\(String(UInt(bitPattern: Int(fs.f_type)), radix: 16)))")
        }
        let base = UInt64(max(4096, sysconf(Int32(_SC_PAGESIZE))))
        let block = UInt64(max(0, Int(st.st_blksize)))
        let page = huge && block > base && block & (block - 1) == 0 ? block : base
        return MemoryFile(size: UInt64(max(0, Int64(st.st_size))), pageSize: page, hugePages: huge,
                          identity: FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
    }
}

extension MemoryFile {
    /// Seals the memory file `fd` against shrinking (F_SEAL_SHRINK), or finds it sealed so already: then no process
    /// can cut pages off under a mapping of it, which a router that reads and writes registered memory itself needs
    /// (an access to a page past the end of the file raises SIGBUS). Refused with EINVAL and the reason when the file
    /// takes no seals: not a memfd (a hugetlbfs file opened by path), or a memfd created without MFD_ALLOW_SEALING.
    /// `check` after sealing, so that the size it reads stays true.
    public static func sealAgainstShrinking(_ fd: Int32) throws(SystemError) {
        let seals = fcntl(fd, FFS_F_GET_SEALS)
        guard seals >= 0 else {
            throw SystemError(operation: "fcntl(F_GET_SEALS)", errno: EINVAL,
                              detail: "the memory descriptor is not a memfd: only a memfd can be sealed")
        }
        if seals & FFS_F_SEAL_SHRINK != 0 { return }
        guard fcntl(fd, FFS_F_ADD_SEALS, FFS_F_SEAL_SHRINK) == 0 else {
            let error = errno
            throw SystemError(operation: "fcntl(F_ADD_SEALS)", errno: EINVAL,
                              detail: error == EPERM
                                  ? "the memfd does not allow sealing (memfd_create without MFD_ALLOW_SEALING), "
                                    + "and this router copies registered memory itself: it needs F_SEAL_SHRINK"
                                  : "F_SEAL_SHRINK refused (errno \(error))")
        }
    }
}

/// A file's identity (device and inode numbers, stat(2)).
public struct FileIdentity: Sendable, Hashable {
    /// `st_dev`.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64
    /// Creates an identity.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// One part of a composite `MemoryMapping`: `length` bytes at `offset` of `fd`, placed `at` bytes into the mapping.
public struct MappedSegment: Sendable, Equatable {
    /// The memory file (not kept: the mapping holds the pages).
    public var fd: Int32
    /// Offset in the file, a multiple of its page size.
    public var offset: UInt64
    /// Bytes to map, a multiple of the page size except for the last segment of the file.
    public var length: UInt64
    /// Where the segment starts inside the mapping, a multiple of the page size.
    public var at: UInt64
    /// Creates a segment.
    public init(fd: Int32, offset: UInt64, length: UInt64, at: UInt64) {
        self.fd = fd
        self.offset = offset
        self.length = length
        self.at = at
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
        guard let address, address != MAP_FAILED else {
            throw SystemError.last("mmap", "\(length) bytes at offset \(offset)")
        }
        bytes = UnsafeMutableRawBufferPointer(start: address, count: count)
    }

    /// Maps several files' pages into one contiguous range of `length` bytes: the range is reserved first
    /// (PROT_NONE, so nothing else can land inside it) and each segment is mapped over its place with MAP_FIXED.
    /// The segments must lie inside the range; the caller checked their files and alignment with `MemoryFile.check`.
    public convenience init(length: UInt64, segments: [MappedSegment]) throws(SystemError) {
        if segments.count == 1, segments[0].at == 0, segments[0].length == length {
            try self.init(fd: segments[0].fd, offset: segments[0].offset, length: length)
        } else {
            self.init(mapped: try Self.composite(length: length, segments: segments))
        }
    }

    private init(mapped: UnsafeMutableRawBufferPointer) { bytes = mapped }

    private static func composite(length: UInt64, segments: [MappedSegment]) throws(SystemError)
        -> UnsafeMutableRawBufferPointer {
        guard length > 0, let count = Int(exactly: length) else {
            throw SystemError(operation: "mmap", errno: EINVAL, detail: "a composite mapping of \(length) bytes")
        }
        let reserved = mmap(nil, count, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let reserved, reserved != MAP_FAILED else { throw SystemError.last("mmap", "reserving \(length) bytes") }
        for segment in segments {
            let (end, overflow) = segment.at.addingReportingOverflow(segment.length)
            guard !overflow, end <= length, segment.length > 0, let size = Int(exactly: segment.length),
                  let at = Int(exactly: segment.at),
                  let offset = off_t(exactly: segment.offset) else {
                munmap(reserved, count)
                throw SystemError(operation: "mmap", errno: EINVAL,
                                  detail: "segment of \(segment.length) bytes at \(segment.at) outside \(length)")
            }
            let placed = mmap(reserved + at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, segment.fd, offset)
            guard placed == reserved + at else {
                // Captured before munmap can change errno.
                let error = SystemError.last("mmap",
                    "\(segment.length) bytes at offset \(segment.offset) into place \(segment.at)")
                munmap(reserved, count)
                throw error
            }
        }
        return UnsafeMutableRawBufferPointer(start: reserved, count: count)
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }
}
