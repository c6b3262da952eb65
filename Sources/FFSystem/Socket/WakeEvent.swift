#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// An eventfd (eventfd(2)) that one thread polls next to its sockets and any other thread signals: how a
/// thread blocked in poll(2) is told to look at its state again (stop, a pod removed, work handed back).
/// Non-blocking; signals before the wait are not lost (the counter stays readable until drained).
public final class WakeEvent: Sendable {
    private let owned: OwnedDescriptor

    /// A new, unsignalled event.
    public init() throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
        guard fd >= 0 else { throw SystemError.last("eventfd") }
        owned = OwnedDescriptor(taking: fd)
    }

    /// The descriptor to poll for POLLIN.
    public var descriptor: Int32 { owned.rawValue }

    /// Makes the descriptor readable; never blocks (the counter saturating is still "signalled").
    public func signal() {
        var one: UInt64 = 1
        _ = retryingEINTR { write(owned.rawValue, &one, 8) }
    }

    /// Resets the event to unsignalled.
    public func drain() {
        var value: UInt64 = 0
        _ = retryingEINTR { read(owned.rawValue, &value, 8) }
    }

    /// Closes the descriptor.
    public func close() { owned.close() }
}
