#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed libibverbs or librdmacm call: which operation failed and the errno it reported.
public struct VerbsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The C call that failed, e.g. `ibv_modify_qp`.
    public var operation: String
    /// The errno value the call reported (returned directly or through `errno`).
    public var errno: Int32
    /// Extra context from the caller, e.g. the QP state transition being attempted.
    public var detail: String?
    /// For a refused post: the index of the first work request the provider refused (`bad_wr`).
    public var failedWorkRequest: Int?

    /// Creates an error for `operation` failing with `errno`.
    public init(operation: String, errno: Int32, detail: String? = nil, failedWorkRequest: Int? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
        self.failedWorkRequest = failedWorkRequest
    }

    /// `strerror` of the errno, e.g. "Invalid argument".
    public var reason: String { String(cString: strerror(errno)) }

    /// The symbolic errno name where known (EINVAL, ENOMEM, …), else the number.
    public var errnoName: String { Self.names[errno] ?? "errno \(errno)" }

    /// "ibv_modify_qp failed: EINVAL (Invalid argument): RESET->INIT".
    public var description: String {
        var text = "\(operation) failed: \(errnoName) (\(reason))"
        if let detail { text += ": \(detail)" }
        return text
    }

    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", E2BIG: "E2BIG",
        EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT",
        EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL", ENOSPC: "ENOSPC",
        ENOSYS: "ENOSYS", EOPNOTSUPP: "EOPNOTSUPP", EPROTONOSUPPORT: "EPROTONOSUPPORT",
        EADDRINUSE: "EADDRINUSE", EADDRNOTAVAIL: "EADDRNOTAVAIL", ENETUNREACH: "ENETUNREACH",
        ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", ETIMEDOUT: "ETIMEDOUT",
        EHOSTUNREACH: "EHOSTUNREACH", ENODATA: "ENODATA", EPROTO: "EPROTO", ERANGE: "ERANGE",
    ]
}

/// Helpers for the three ways libibverbs and librdmacm report failure; each C call is wrapped once,
/// at its call site, through one of these.
enum Call {
    /// For calls that return 0 or an errno value (ibv_modify_qp, ibv_dealloc_pd, …; see their man pages).
    static func returnsErrno(_ operation: String, detail: @autoclosure () -> String? = nil, _ body: () -> Int32) throws(VerbsError) {
        let rc = body()
        if rc != 0 {
            // Some providers return -1 and set errno instead of returning the errno (rdma-core #1182).
            let code = rc > 0 ? rc : (Glibc.errno != 0 ? Glibc.errno : -rc)
            throw VerbsError(operation: operation, errno: code, detail: detail())
        }
    }

    /// For calls that return -1 and set errno (rdma_* calls, ibv_get_cq_event, ibv_req_notify_cq may return errno).
    static func returnsMinusOne(_ operation: String, detail: @autoclosure () -> String? = nil, _ body: () -> Int32) throws(VerbsError) {
        Glibc.errno = 0
        let rc = body()
        if rc != 0 {
            let code = rc > 0 ? rc : (Glibc.errno != 0 ? Glibc.errno : EIO)
            throw VerbsError(operation: operation, errno: code, detail: detail())
        }
    }

    /// For calls that return a pointer, NULL on failure with errno set (ibv_alloc_pd, ibv_create_qp, …).
    static func returnsPointer<T>(_ operation: String, detail: @autoclosure () -> String? = nil, _ body: () -> T?) throws(VerbsError) -> T {
        Glibc.errno = 0
        guard let value = body() else {
            throw VerbsError(operation: operation, errno: Glibc.errno != 0 ? Glibc.errno : ENOMEM, detail: detail())
        }
        return value
    }
}
