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

/// Helpers for the ways libibverbs and librdmacm report failure. Each C call is wrapped once, at its call site,
/// through the helper matching the return convention of its man page:
///
/// - 0, or the errno as the return value (ibv_modify_qp, ibv_post_send, ibv_req_notify_cq, …): `returnsErrno`
/// - 0, or -1 with errno set (every rdma_* call, ibv_get_cq_event, ibv_query_gid): `returnsMinusOne`
/// - a pointer, or NULL with errno set (ibv_alloc_pd, ibv_create_qp, ibv_get_device_list, …): `returnsPointer`
/// - a count, or a negative errno (ibv_query_gid_table): `returnsCountOrNegativeErrno`
/// - a count, or a negative value that is no errno (ibv_poll_cq): `returnsCountOrNegative`
///
/// The data path posts and polls through them, so they inline, take only non-escaping closures (nothing is
/// allocated) and evaluate `detail` only when the call failed.
enum Call {
    /// The largest errno (the kernel's MAX_ERRNO): a negated value beyond it is no errno, and is reported as EIO.
    static let maxErrno: Int32 = 4095

    /// For calls that return 0 or an errno value (ibv_modify_qp, ibv_post_send, …; see their man pages). The return
    /// value is the errno: `errno` itself is whatever an earlier call left there, so it is read only for -1.
    @inline(__always)
    static func returnsErrno(_ operation: String, detail: @autoclosure () -> String? = nil,
                             failedWorkRequest: @autoclosure () -> Int? = nil,
                             _ body: () -> Int32) throws(VerbsError) {
        let rc = body()
        if _slowPath(rc != 0) {
            throw VerbsError(operation: operation, errno: errnoReturned(rc), detail: detail(),
                             failedWorkRequest: failedWorkRequest())
        }
    }

    /// The errno that a failed errno-returning call means by `rc` (not 0). Some providers return the errno negated
    /// (rxe's posts return -ENOMEM for a full queue), and some -1 with errno set (rdma-core #1182); -1 is therefore
    /// read as "see errno" when errno is set (it can then only be stale if the provider meant -EPERM), else as -EPERM.
    static func errnoReturned(_ rc: Int32) -> Int32 {
        if rc > 0 { return rc }
        if rc < -1 { return rc >= -maxErrno ? -rc : EIO }
        let code = Glibc.errno
        return code != 0 ? code : EPERM
    }

    /// For calls that return -1 and set errno (rdma_* calls, ibv_get_cq_event, ibv_query_gid). errno is cleared
    /// first, so that a call which fails without setting it reports EIO rather than an earlier call's errno; a
    /// positive return (librdmacm passing on an ibv_* result) is the errno itself.
    @inline(__always)
    static func returnsMinusOne(_ operation: String, detail: @autoclosure () -> String? = nil,
                                _ body: () -> Int32) throws(VerbsError) {
        Glibc.errno = 0
        let rc = body()
        if _slowPath(rc != 0) {
            let code = rc > 0 ? rc : (Glibc.errno != 0 ? Glibc.errno : EIO)
            throw VerbsError(operation: operation, errno: code, detail: detail())
        }
    }

    /// For calls that return a pointer, NULL on failure with errno set (ibv_alloc_pd, ibv_create_qp, …). errno is
    /// cleared first; a NULL without errno reports `unsetErrno` (ENOMEM: most of these calls allocate).
    @inline(__always)
    static func returnsPointer<T>(_ operation: String, detail: @autoclosure () -> String? = nil,
                                  unsetErrno: Int32 = ENOMEM, _ body: () -> T?) throws(VerbsError) -> T {
        Glibc.errno = 0
        guard let value = body() else {
            throw VerbsError(operation: operation, errno: Glibc.errno != 0 ? Glibc.errno : unsetErrno, detail: detail())
        }
        return value
    }

    /// For calls that return a count, or a negative errno on failure (ibv_query_gid_table(3)); errno is not read.
    @inline(__always)
    static func returnsCountOrNegativeErrno<N: BinaryInteger>(_ operation: String,
                                                              detail: @autoclosure () -> String? = nil,
                                                              _ body: () -> N) throws(VerbsError) -> Int {
        let n = body()
        if _slowPath(n < 0) {
            let code = n.magnitude <= maxErrno ? Int32(n.magnitude) : EIO
            throw VerbsError(operation: operation, errno: code, detail: detail())
        }
        return Int(n)
    }

    /// For calls that return a count, or on failure a negative value that is no errno (ibv_poll_cq(3): mlx5 returns
    /// -2 for any error, and errno is not set): the failure is EIO, its detail the value returned.
    @inline(__always)
    static func returnsCountOrNegative(_ operation: String, detail: @autoclosure () -> String? = nil,
                                       _ body: () -> Int32) throws(VerbsError) -> Int {
        let n = body()
        if _slowPath(n < 0) {
            let returned = "returned \(n)"
            let extra = detail()
            throw VerbsError(operation: operation, errno: EIO, detail: extra.map { "\(returned), \($0)" } ?? returned)
        }
        return Int(n)
    }
}
