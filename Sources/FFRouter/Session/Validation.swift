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

    /// Where a registration's pages lie: the page-rounded mapping, each segment's place in it, and the buffer inside it.
    struct MemoryPlan {
        var mapLength: UInt64
        /// Per segment: its descriptor (index into the request's) and what to map where.
        var segments: [(descriptor: Int, offset: UInt64, length: UInt64, at: UInt64)]
        var bufferOffset: Int
        var bufferLength: Int
    }

    /// Checks a registration's segments against the memory files that came with it and plans one contiguous mapping.
    ///
    /// The codec already made sure the segments are not empty, name descriptors that came, do not wrap around 2^64 and
    /// add up to `length`. Here: every segment inside its file; the first at the same 4 KiB page offset as the address
    /// (rxe, and ibv_reg_mr_iova(3) generally, keep the buffer's offset within its page); every other one starting at a
    /// page of its file, and every one but the last ending at one, so that the pieces fit side by side; one page size for
    /// all; huge pages in one segment only; no page of a file twice.
    static func segments(_ r: RegMRSegmentsRequest, files: [MemoryFile], maxMRSize: UInt64) throws(ErrorReply) -> MemoryPlan {
        guard r.length > 0 else { throw invalid("reg_mr length 0") }
        guard r.length <= maxMRSize else { throw invalid("reg_mr length \(r.length) over the device's largest MR (\(maxMRSize) bytes)") }
        _ = try sum(r.address, r.length, "reg_mr address + length")
        guard let first = r.segments.first, r.segments.allSatisfy({ Int($0.descriptor) < files.count }) else {
            throw invalid("reg_mr segments name descriptors that did not come")
        }
        let page = files[Int(first.descriptor)].pageSize
        if r.segments.count > 1, let huge = files.firstIndex(where: \.hugePages) {
            throw invalid("reg_mr descriptor \(huge) holds huge pages: huge-page memory registers as one segment")
        }
        if let other = files.firstIndex(where: { $0.pageSize != page }) {
            throw invalid("reg_mr descriptor \(other) has \(files[other].pageSize)-byte pages, the first segment \(page)-byte ones")
        }
        guard first.memfdOffset % 4096 == r.address % 4096 else {
            throw invalid("memfd offset \(first.memfdOffset) and address 0x\(String(r.address, radix: 16)) differ in page offset")
        }
        let lead = first.memfdOffset % page
        var planned: [(descriptor: Int, offset: UInt64, length: UInt64, at: UInt64)] = []
        var place: UInt64 = 0                          // where the next segment's first byte lands, from the mapping's start
        var taken: [(file: FileIdentity, from: UInt64, to: UInt64, segment: Int)] = []
        for (i, segment) in r.segments.enumerated() {
            let file = files[Int(segment.descriptor)]
            let end = try sum(segment.memfdOffset, segment.length, "reg_mr segment \(i) offset + length")
            guard end <= file.size else {
                throw invalid("reg_mr segment \(i): range \(segment.memfdOffset)+\(segment.length) outside the memfd's \(file.size) bytes")
            }
            if i > 0 && segment.memfdOffset % page != 0 {
                throw invalid("reg_mr segment \(i) starts at offset \(segment.memfdOffset), not at a page of its memfd")
            }
            if i < r.segments.count - 1 && end % page != 0 {
                throw invalid("reg_mr segment \(i) ends at offset \(end), not at a page of its memfd (only the last may)")
            }
            // end ≤ file size < 2^63, so rounding up to a page cannot overflow.
            let from = segment.memfdOffset - segment.memfdOffset % page, to = (end + page - 1) / page * page
            if let clash = taken.first(where: { $0.file == file.identity && $0.from < to && from < $0.to }) {
                throw invalid("reg_mr segments \(clash.segment) and \(i) map the same pages of one memfd")
            }
            taken.append((file.identity, from, to, i))
            planned.append((Int(segment.descriptor), from, to - from, place))
            // place + (to - from) ≤ lead + length, which fits: length ≤ maxMRSize and the sum was checked above.
            place = try sum(place, to - from, "reg_mr mapping length")
        }
        guard let bufferOffset = Int(exactly: lead), let bufferLength = Int(exactly: r.length), Int(exactly: place) != nil else {
            throw ErrorReply(errno: Errno.overflow, reason: "reg_mr range does not fit this router's address space")
        }
        return MemoryPlan(mapLength: place, segments: planned, bufferOffset: bufferOffset, bufferLength: bufferLength)
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
