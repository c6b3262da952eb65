#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One descriptor held back for the moment a process runs out of them (EMFILE, ENFILE): freeing it lets a server
/// accept a connection it cannot serve and refuse it (its client reads end of file) instead of leaving the client
/// waiting in the backlog, and lets the accept loop sleep instead of spinning on a listener that stays readable.
/// Meant for one accept loop; the Mutex only makes it Sendable.
public final class DescriptorReserve: Sendable {
    /// What `shed` did.
    public enum Outcome: Equatable, Sendable {
        /// Nothing was waiting: accept(2) reports EMFILE before it looks at the queue, so a full descriptor
        /// table alone says nothing about pending connections.
        case nothingPending
        /// One pending connection was accepted and shut down; it is held as the reserve now.
        case refused
        /// A connection is waiting and there is no descriptor to refuse it with: it stays in the backlog until
        /// descriptors are freed. The caller should wait a moment before it polls the listener again.
        case waiting
    }

    /// /dev/null or a refused connection that has been shut down; -1 while none is held.
    private let held = Mutex<Int32>(-1)

    /// Opens the reserve (/dev/null); `isHeld` says whether that worked.
    public init() { refill() }

    deinit { close() }

    /// Whether a descriptor is held.
    public var isHeld: Bool { held.withLock { $0 >= 0 } }

    /// Opens /dev/null as the reserve when none is held; false while that fails (still out of descriptors).
    @discardableResult
    public func refill() -> Bool {
        held.withLock { fd in
            if fd < 0 { fd = Self.openNull() }
            return fd >= 0
        }
    }

    /// /dev/null, the reserve while no refused connection holds its place; -1 when out of descriptors.
    private static func openNull() -> Int32 { open("/dev/null", O_RDONLY | O_CLOEXEC) }

    /// Called when accepting on `listener` failed with EMFILE or ENFILE: refuses one pending connection with the
    /// reserve's slot. It closes the reserve, accepts, and shuts the accepted connection down, so that its client
    /// reads end of file (and a write gets EPIPE). The refused connection stays open as the new reserve: closing it
    /// would wake its client while the slot is free, and a thread that opens a file then (in the router's process,
    /// or the client's when both are one test) would take the slot before it could be held again.
    /// `refusing` runs once a connection has been accepted and before its client can tell, so that whoever counts
    /// refusals has counted this one when the client sees it.
    public func shed<Listener: UnixDomainSocket>(_ listener: Listener, refusing: () -> Void = {}) -> Outcome {
        var pending = [pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0)]
        guard (try? Poll.wait(&pending, timeoutMilliseconds: 0)) == 1 else {
            return refill() ? .nothingPending : .waiting
        }
        return held.withLock { fd in
            if fd < 0 { fd = Self.openNull() }
            guard fd >= 0 else { return .waiting }
            Glibc.close(fd)
            fd = -1
            switch Result(catching: { () throws(SystemError) in try UnixSocket.accept(listener.descriptor,
                path: listener.path) }) {
            case .success(let accepted?):
                refusing()
                Glibc.shutdown(accepted, Int32(SHUT_RDWR))
                fd = accepted
                return .refused
            case .success(nil):
                // The client left before it was accepted.
                fd = Self.openNull()
                return fd >= 0 ? .nothingPending : .waiting
            case .failure:
                // Another thread took the freed slot first.
                fd = Self.openNull()
                return .waiting
            }
        }
    }

    /// Frees the held descriptor.
    public func close() {
        held.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }
}
