#if canImport(Glibc)
import CFFSystem
import Glibc
#endif

/// One resource limit of this process (getrlimit(2)); `nil` is unlimited (unlimitedValue).
public struct ResourceLimit: Sendable, Codable, Equatable {
    /// The soft limit, the one the kernel enforces.
    public var soft: UInt64?
    /// The hard limit, the ceiling an unprivileged process can raise the soft one to.
    public var hard: UInt64?
    /// What raising it did, or why it could not ("raised from 1024", "EPERM: ...").
    public var note: String

    /// A limit as read.
    public init(soft: UInt64?, hard: UInt64?, note: String = "") {
        self.soft = soft
        self.hard = hard
        self.note = note
    }
}

/// Reading and raising this process's descriptor and locked-memory limits, which a router needs high:
/// every session holds descriptors and every registered buffer is pinned.
public enum ResourceLimits {
    /// Which limit.
    public enum Kind: Sendable {
        /// RLIMIT_NOFILE: open descriptors.
        case openFiles
        /// RLIMIT_MEMLOCK: bytes pinned with mlock or by ibv_reg_mr.
        case lockedMemory

        fileprivate var resource: __rlimit_resource_t {
            switch self {
            case .openFiles: __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
            case .lockedMemory: __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)
            }
        }

        fileprivate var name: String { self == .openFiles ? "RLIMIT_NOFILE" : "RLIMIT_MEMLOCK" }
    }

    /// The current limit.
    public static func current(_ kind: Kind) throws(SystemError) -> ResourceLimit {
        var limit = rlimit()
        guard getrlimit(kind.resource, &limit) == 0 else { throw SystemError.last("getrlimit", kind.name) }
        return ResourceLimit(soft: value(limit.rlim_cur), hard: value(limit.rlim_max))
    }

    /// Sets the soft limit to `soft` (nil: unlimited), leaving the hard limit.
    public static func setSoft(_ kind: Kind, to soft: UInt64?) throws(SystemError) {
        var limit = rlimit()
        guard getrlimit(kind.resource, &limit) == 0 else { throw SystemError.last("getrlimit", kind.name) }
        limit.rlim_cur = soft.map { rlim_t($0) } ?? unlimitedValue
        guard setrlimit(kind.resource, &limit) == 0 else { throw SystemError.last("setrlimit", kind.name) }
    }

    /// Raises the limit as far as this process may: first to unlimited (soft and hard; needs
    /// CAP_SYS_RESOURCE) when `tryUnlimited`, else the soft limit to the hard one. Never throws: the
    /// result says what it is now and, in `note`, what was done or why not.
    public static func raise(_ kind: Kind, tryUnlimited: Bool) -> ResourceLimit {
        let before: ResourceLimit
        do { before = try current(kind) } catch { return ResourceLimit(soft: nil, hard: nil, note: "\(error)") }
        var note = ""
        if tryUnlimited, before.soft != nil || before.hard != nil {
            var limit = rlimit(rlim_cur: unlimitedValue, rlim_max: unlimitedValue)
            if setrlimit(kind.resource, &limit) == 0 {
                return ResourceLimit(soft: nil, hard: nil, note: "raised to unlimited from \(describe(before.soft))")
            }
            note = "unlimited refused (\(String(cString: strerror(Glibc.errno)))); "
        }
        if before.soft != before.hard {
            do {
                try setSoft(kind, to: before.hard)
                note += "soft raised from \(describe(before.soft)) to the hard limit"
            } catch {
                note += "could not raise the soft limit \(describe(before.soft)) to \(describe(before.hard)): \(error)"
                return ResourceLimit(soft: before.soft, hard: before.hard, note: note)
            }
        } else {
            note += "already at the hard limit"
        }
        let after = (try? current(kind)) ?? before
        return ResourceLimit(soft: after.soft, hard: after.hard, note: note)
    }

    /// RLIM_INFINITY, which Swift imports as a literal that overflows `rlim_t`.
    private static let unlimitedValue = rlim_t.max

    private static func value(_ raw: rlim_t) -> UInt64? { raw == unlimitedValue ? nil : UInt64(raw) }

    /// "1024" or "unlimited".
    public static func describe(_ value: UInt64?) -> String { value.map(String.init) ?? "unlimited" }
}
