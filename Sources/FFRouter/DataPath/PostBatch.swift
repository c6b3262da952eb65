import FFProtocol
import Verbs

/// A data-path thread's preallocated memory for one batch: the copy of the slot being read, the decoded requests and
/// their SGEs, inline payloads, the completions of a poll, and the C work requests the device's post is built in. A
/// slot goes from the ring to the backend, and a completion from the backend to the ring, through these alone: the
/// poller allocates nothing per request.
final class PostBatch {
    /// Most requests (and polled completions) in one batch.
    let capacity: Int
    /// Where C work requests and completions are built for the real device.
    let scratch: WorkRequestScratch
    private let slotCopy: UnsafeMutableRawPointer
    private let sendStorage: UnsafeMutablePointer<BackendSendWR>
    private let receiveStorage: UnsafeMutablePointer<BackendReceiveWR>
    private let sgeStorage: UnsafeMutablePointer<ScatterGatherElement>
    private let inlineStorage: UnsafeMutableRawPointer
    private let completionStorage: UnsafeMutablePointer<FFProtocol.WorkCompletion>
    /// Requests staged since the last `reset()`.
    @exclusivity(unchecked) private(set) var count = 0
    @exclusivity(unchecked) private var sgeCount = 0
    @exclusivity(unchecked) private var inlineBytes = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        let sges = self.capacity * WireLimits.maxSGEPerWR
        scratch = WorkRequestScratch(capacity: self.capacity, sgeCapacity: sges)
        slotCopy = .allocate(byteCount: RingSlots.maxSlotSize, alignment: 64)
        sendStorage = .allocate(capacity: self.capacity)
        sendStorage.initialize(repeating: BackendSendWR(id: 0, operation: .send, scatterGather: UnsafeBufferPointer(start: nil, count: 0), flags: [],
                                                        addressHandle: nil, remoteQPN: 0, remoteQKey: 0), count: self.capacity)
        receiveStorage = .allocate(capacity: self.capacity)
        receiveStorage.initialize(repeating: BackendReceiveWR(id: 0, scatterGather: UnsafeBufferPointer(start: nil, count: 0)), count: self.capacity)
        sgeStorage = .allocate(capacity: sges)
        sgeStorage.initialize(repeating: ScatterGatherElement(address: 0, length: 0, lkey: 0), count: sges)
        inlineStorage = .allocate(byteCount: self.capacity * WireLimits.maxInlineData, alignment: 64)
        completionStorage = .allocate(capacity: self.capacity)
        completionStorage.initialize(repeating: FFProtocol.WorkCompletion(wrID: 0, status: .success, opcode: .send), count: self.capacity)
    }

    deinit {
        slotCopy.deallocate()
        sendStorage.deinitialize(count: capacity)
        sendStorage.deallocate()
        receiveStorage.deallocate()
        sgeStorage.deallocate()
        inlineStorage.deallocate()
        completionStorage.deallocate()
    }

    /// The sends staged so far.
    var sends: UnsafeBufferPointer<BackendSendWR> { UnsafeBufferPointer(start: sendStorage, count: count) }
    /// The receives staged so far.
    var receives: UnsafeBufferPointer<BackendReceiveWR> { UnsafeBufferPointer(start: receiveStorage, count: count) }
    /// Room for the completions of one poll.
    var completions: UnsafeMutableBufferPointer<FFProtocol.WorkCompletion> { UnsafeMutableBufferPointer(start: completionStorage, count: capacity) }

    /// Empties the batch, dropping the address handles its sends held.
    func reset() {
        for i in 0..<count where sendStorage[i].addressHandle != nil { sendStorage[i].addressHandle = nil }
        count = 0
        sgeCount = 0
        inlineBytes = 0
    }

    /// What became of a slot.
    enum Staged {
        /// Added to the batch.
        case staged
        /// Refused (it does not decode, or names an AH the session does not have): its `wrID`, for the error completion.
        case refused(UInt64)
    }

    /// Copies the send slot once, decodes the copy with the socket decoder's checks and adds it to the batch: its SGEs,
    /// or its inline payload (copied into router memory, which the device reads at post time, as one SGE with lkey 0:
    /// the device never reads an inline SGE from the client's addresses), with its AH looked up in `ahs`.
    func stageSend(_ slot: UnsafeRawPointer, slotSize: Int, ahs: (UInt32) -> (any BackendAH)?) -> Staged {
        precondition(count < capacity, "PostBatch: more sends than its capacity")
        RingSlots.copy(slot, slotSize: slotSize, into: slotCopy)
        guard let w = try? RingSlots.decodeSend(slotCopy, slotSize: slotSize) else { return .refused(RingSlots.workRequestID(slotCopy)) }
        var ah: (any BackendAH)?
        if let handle = w.addressHandle {
            guard let found = ahs(handle.rawValue) else { return .refused(w.wrID) }
            ah = found
        }
        let first = sgeStorage + sgeCount
        var sges = 0
        if w.inlineLength > 0 {
            let payload = inlineStorage + inlineBytes
            payload.copyMemory(from: slotCopy + 64, byteCount: w.inlineLength)
            first.pointee = ScatterGatherElement(address: UInt64(UInt(bitPattern: payload)), length: UInt32(w.inlineLength), lkey: 0)
            inlineBytes += w.inlineLength
            sges = 1
        } else {
            for i in 0..<w.sgeCount { first[i] = Translate.sge(RingSlots.sge(slotCopy, fixed: 64, index: i)) }
            sges = w.sgeCount
        }
        sgeCount += sges
        sendStorage[count] = BackendSendWR(
            id: w.wrID,
            operation: Translate.operation(w.opcode, immData: w.immData, remoteAddress: w.remoteAddress, rkey: w.rkey, compareAdd: w.compareAdd, swap: w.swap),
            scatterGather: UnsafeBufferPointer(start: first, count: sges), flags: Verbs.SendFlags(rawValue: w.flags.rawValue),
            addressHandle: ah, remoteQPN: w.remoteQPN, remoteQKey: w.remoteQKey)
        count += 1
        return .staged
    }

    /// Copies the receive slot once, decodes the copy and adds it to the batch.
    func stageReceive(_ slot: UnsafeRawPointer, slotSize: Int) -> Staged {
        precondition(count < capacity, "PostBatch: more receives than its capacity")
        RingSlots.copy(slot, slotSize: slotSize, into: slotCopy)
        guard let w = try? RingSlots.decodeReceive(slotCopy, slotSize: slotSize) else { return .refused(RingSlots.workRequestID(slotCopy)) }
        let first = sgeStorage + sgeCount
        for i in 0..<w.sgeCount { first[i] = Translate.sge(RingSlots.sge(slotCopy, fixed: 16, index: i)) }
        sgeCount += w.sgeCount
        receiveStorage[count] = BackendReceiveWR(id: w.wrID, scatterGather: UnsafeBufferPointer(start: first, count: w.sgeCount))
        count += 1
        return .staged
    }
}
