import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor this process owns; closed exactly once, when the last reference goes or on `close()`.
public final class OwnedDescriptor: Sendable {
    private let fd: Mutex<Int32>

    /// Takes ownership of `fd`.
    public init(taking fd: Int32) { self.fd = Mutex(fd) }

    deinit { close() }

    /// The descriptor number, or -1 once closed.
    public var rawValue: Int32 { fd.withLock { $0 } }

    /// Closes the descriptor now; later calls do nothing.
    public func close() {
        let old = fd.withLock { value -> Int32 in defer { value = -1 }; return value }
        if old >= 0 { Glibc.close(old) }
    }

    /// Gives up ownership: the caller must close the returned descriptor.
    public func release() -> Int32 {
        fd.withLock { value -> Int32 in defer { value = -1 }; return value }
    }
}
