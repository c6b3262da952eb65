import FFProtocol
import FFSystem
import Verbs

/// Checks of client values at the trust boundary. Each one either returns a value the verbs call can take as it is
/// or throws the errno verbs would give with a reason naming the field; none of them can trap, whatever the client
/// sent (every sum is overflow-checked, every conversion exact).
enum Check {
    static func invalid(_ reason: String) -> ErrorReply { ErrorReply(errno: Errno.invalidArgument, reason: reason) }

    /// `a + b`, or EOVERFLOW naming `what`.
    static func sum(_ a: UInt64, _ b: UInt64, _ what: String) throws(ErrorReply) -> UInt64 {
        let (total, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw ErrorReply(errno: Errno.overflow, reason: "\(what): \(a) + \(b) does not fit 64 bits") }
        return total
    }

    /// `value` within `range`, or EINVAL naming `field`.
    static func within<T: BinaryInteger>(_ value: T, _ range: ClosedRange<T>, _ field: String) throws(ErrorReply) -> T {
        guard range.contains(value) else { throw invalid("\(field) \(value) outside \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    /// An MR's access flags: remote write or atomic access only with local write (ibv_reg_mr(3)). Unknown bits never
    /// get this far: the decoder refuses them, for MRs and QPs alike. A QP may allow remote write without local write
    /// (perftest's do), so QP flags need no check here.
    static func memoryAccess(_ flags: FFProtocol.AccessFlags) throws(ErrorReply) -> Verbs.AccessFlags {
        if !flags.intersection([.remoteWrite, .remoteAtomic]).isEmpty && !flags.contains(.localWrite) {
            throw invalid("access flags 0x\(String(flags.rawValue, radix: 16)): remote write or atomic needs local write")
        }
        return Translate.access(flags)
    }

    /// Where a registration's pages lie in the memfd: the page-rounded mapping and the buffer inside it.
    struct MemoryPlan: Equatable {
        var mapOffset: UInt64
        var mapLength: UInt64
        var bufferOffset: Int
        var bufferLength: Int
    }

    /// Checks a `reg_mr` request against the memfd that came with it and plans the mapping.
    static func memory(_ r: RegMRRequest, file: MemoryFile, maxMRSize: UInt64) throws(ErrorReply) -> MemoryPlan {
        guard r.length > 0 else { throw invalid("reg_mr length 0") }
        guard r.length <= maxMRSize else { throw invalid("reg_mr length \(r.length) over the device's largest MR (\(maxMRSize) bytes)") }
        _ = try sum(r.address, r.length, "reg_mr address + length")
        let end = try sum(r.memfdOffset, r.length, "reg_mr memfd offset + length")
        // rxe (and ibv_reg_mr_iova(3) generally) needs the iova to keep the buffer's offset within its page, so the
        // memfd offset must sit at the same 4 KiB page offset as the client's address.
        guard r.memfdOffset % 4096 == r.address % 4096 else {
            throw invalid("memfd offset \(r.memfdOffset) and address 0x\(String(r.address, radix: 16)) differ in page offset")
        }
        guard end <= file.size else {
            throw invalid("reg_mr range \(r.memfdOffset)+\(r.length) outside the memfd's \(file.size) bytes")
        }
        let page = file.pageSize
        let mapOffset = r.memfdOffset - r.memfdOffset % page
        // end ≤ file size < 2^63, so rounding up to a page cannot overflow.
        let mapEnd = (end + page - 1) / page * page
        guard let bufferOffset = Int(exactly: r.memfdOffset - mapOffset), let bufferLength = Int(exactly: r.length) else {
            throw ErrorReply(errno: Errno.overflow, reason: "reg_mr range does not fit this router's address space")
        }
        return MemoryPlan(mapOffset: mapOffset, mapLength: mapEnd - mapOffset, bufferOffset: bufferOffset, bufferLength: bufferLength)
    }

    /// QP capabilities within the device's limits.
    static func capabilities(_ c: FFProtocol.QPCapabilities, _ limits: DeviceLimits) throws(ErrorReply) -> Verbs.QPCapabilities {
        _ = try within(c.maxSendWR, 0...limits.maxQPWR, "max_send_wr")
        _ = try within(c.maxRecvWR, 0...limits.maxQPWR, "max_recv_wr")
        _ = try within(c.maxSendSGE, 0...limits.maxSGE, "max_send_sge")
        _ = try within(c.maxRecvSGE, 0...limits.maxSGE, "max_recv_sge")
        _ = try within(c.maxInlineData, 0...limits.maxInlineData, "max_inline_data")
        return Translate.capabilities(c)
    }
}
