import FFFakeDevice
import FFProtocol
@testable import FFRouter
import FFSystem
import Foundation
import FreeFlowTestSupport
import Synchronization
import Verbs
import XCTest

/// One backend the router scenarios run on: the backend behind a recorder of what sessions hand it, the vip map the
/// scenarios use, and a count of the objects the backend really holds (the fake's own table, or the kernel's).
struct ScenarioBackend {
    /// What sessions get as their backend: the real or fake one behind a recorder.
    let backend: RecordingBackend
    /// The node IP of the router (its GID is every translated source).
    let nodeIP: IPv4Address
    /// Another node's IP, where `remoteVIP` lives.
    let otherNodeIP: IPv4Address
    /// The object kinds `objects()` counts: the fake counts every kind, the kernel (rdma res) not AHs or channels.
    let countedKinds: Set<String>
    private let count: () throws -> [String: Int]

    /// Two pods on this node (data moves between them through one router) and one on the other node.
    static let vipA = SessionDriver.vipA, vipB = SessionDriver.vipB, remoteVIP = IPv4Address("10.9.0.3")!
    /// A vip no map knows.
    static let unknownVIP = IPv4Address("10.99.0.1")!

    /// The vip map of the scenarios, loaded unless `ready` is false. Both pods map to this node: rxe drops RC packets
    /// whose addresses are not the QP's own pair, so two pods of one router must share its node IP, as real pods do.
    func map(ready: Bool = true) -> MemoryVipMap {
        MemoryVipMap([Self.vipA: nodeIP, Self.vipB: nodeIP, Self.remoteVIP: otherNodeIP], ready: ready)
    }

    /// The RoCEv2 GID of node `ip`, as the device is handed it.
    func physicalGID(of ip: IPv4Address) -> Verbs.GID? { Verbs.GID(ipv4: ip.description) }

    /// The backend's live objects of the counted kinds; kinds with none are absent.
    func objects() throws -> [String: Int] {
        try count().filter { countedKinds.contains($0.key) && $0.value > 0 }
    }

    /// `base` with `added` objects more, of the counted kinds only.
    func objects(_ base: [String: Int], plus added: [String: Int]) -> [String: Int] {
        base.merging(added.filter { countedKinds.contains($0.key) }, uniquingKeysWith: +).filter { $0.value > 0 }
    }

    /// A session of pod `vip` on this backend, with the scenario map unless `map` is given.
    func session(_ vip: IPv4Address, id: UInt64, limits: SessionLimits = SessionLimits(),
                 map: MemoryVipMap? = nil) -> SessionDriver {
        SessionDriver(backend: backend, vip: vip, id: id, limits: limits, map: map ?? self.map())
    }

    /// The in-memory device. This is the one place the scenarios construct it: when the fake moves to a module of
    /// its own, only this factory's import and type change.
    static func fake() -> ScenarioBackend {
        let fake = FakeBackend()
        return ScenarioBackend(backend: RecordingBackend(fake), nodeIP: fake.nodeIP,
                               otherNodeIP: IPv4Address("10.0.2.16")!,
                               countedKinds: ["pd", "mr", "comp_channel", "cq", "qp", "srq", "ah"],
                               count: { fake.liveObjects })
    }

    /// The lab's device (rxe0) as node 1 serves it; skipped, as every lab test is, outside the Soft-RoCE guest.
    static func device() throws -> ScenarioBackend {
        let env = ProcessInfo.processInfo.environment
        guard env["FFLAB"] == "1", let name = env["FFLAB_DEVICE"],
              let ip1 = env["FFLAB_IP1"].flatMap({ IPv4Address($0) }),
              let ip2 = env["FFLAB_IP2"].flatMap({ IPv4Address($0) })
        else {
            throw XCTSkip("SKIPPED: needs the Soft-RoCE lab (no RDMA device here); run scripts/test")
        }
        let device = try NodeDevice(deviceName: name, port: 1, nodeIP: ip1)
        // What the kernel holds for every process on the device; the scenarios compare with a baseline they take.
        return ScenarioBackend(backend: RecordingBackend(device), nodeIP: ip1, otherNodeIP: ip2,
                               countedKinds: ["pd", "mr", "cq", "qp", "srq"],
                               count: { try TwoNodeLab.kernelResources() })
    }
}

/// A backend that passes every call to `inner` and remembers each address vector a session hands it (modify_qp's and
/// create_ah's), so that a scenario sees the translation on either backend. It wraps PDs and QPs only: the device
/// backend unwraps CQs, SRQs, AHs and channels to its own types, so those pass through untouched.
final class RecordingBackend: VerbsBackend {
    /// The backend doing the work.
    let inner: any VerbsBackend
    private let addresses = Mutex<[(call: String, address: AddressVector)]>([])

    init(_ inner: any VerbsBackend) { self.inner = inner }

    /// Every address vector passed to the backend so far, with the verbs call that carried it.
    var recordedAddresses: [(call: String, address: AddressVector)] { addresses.withLock { $0 } }

    func record(_ call: String, _ address: AddressVector) { addresses.withLock { $0.append((call, address)) } }

    var deviceName: String { inner.deviceName }
    var nodeIP: IPv4Address { inner.nodeIP }
    var gidIndex: Int { inner.gidIndex }
    var port: UInt8 { inner.port }
    var limits: DeviceLimits { inner.limits }
    var memoryAccess: BackendMemoryAccess { inner.memoryAccess }
    func virtualAttributes(vip: IPv4Address) -> FFProtocol.DeviceAttributes { inner.virtualAttributes(vip: vip) }
    func virtualPort() throws -> FFProtocol.PortAttributes { try inner.virtualPort() }
    func portHealth() -> (active: Bool, detail: String) { inner.portHealth() }
    func allocatePD() throws -> any BackendPD { RecordingPD(try inner.allocatePD(), recorder: self) }
    func createCompletionChannel() throws -> any BackendCompletionChannel { try inner.createCompletionChannel() }
    func createCQ(entries: Int32, channel: (any BackendCompletionChannel)?, vector: Int32) throws -> any BackendCQ {
        try inner.createCQ(entries: entries, channel: channel, vector: vector)
    }
}

/// What a recording PD or QP holds: the object doing the work and the recorder to tell.
private class Recording<Inner> {
    let inner: Inner
    let recorder: RecordingBackend
    init(_ inner: Inner, recorder: RecordingBackend) {
        self.inner = inner
        self.recorder = recorder
    }
}

/// A PD whose QPs and AHs report their address vectors to the recorder.
private final class RecordingPD: Recording<any BackendPD>, BackendPD {

    func registerMemory(_ region: UnsafeMutableRawBufferPointer, iova: UInt64, access: Verbs.AccessFlags,
                        keepAlive: MemoryMapping) throws -> any BackendMR {
        try inner.registerMemory(region, iova: iova, access: access, keepAlive: keepAlive)
    }
    func createQP(_ configuration: BackendQPConfiguration) throws -> any BackendQP {
        RecordingQP(try inner.createQP(configuration), recorder: recorder)
    }
    func createSRQ(maxWorkRequests: UInt32, maxSGE: UInt32) throws -> any BackendSRQ {
        try inner.createSRQ(maxWorkRequests: maxWorkRequests, maxSGE: maxSGE)
    }
    func createAH(_ address: AddressVector) throws -> any BackendAH {
        recorder.record("ibv_create_ah", address)
        return try inner.createAH(address)
    }
}

/// A QP whose modify_qp address vectors go to the recorder.
private final class RecordingQP: Recording<any BackendQP>, BackendQP {

    var number: UInt32 { inner.number }
    var type: Verbs.QPType { inner.type }
    var capabilities: Verbs.QPCapabilities { inner.capabilities }
    func modify(_ attributes: Verbs.QPAttributes) throws {
        if let address = attributes.address { recorder.record("ibv_modify_qp", address) }
        try inner.modify(attributes)
    }
    func state() throws -> Verbs.QPState { try inner.state() }
    func postSend(_ requests: UnsafeBufferPointer<BackendSendWR>, scratch: WorkRequestScratch) throws {
        try inner.postSend(requests, scratch: scratch)
    }
    func postReceive(_ requests: UnsafeBufferPointer<BackendReceiveWR>, scratch: WorkRequestScratch) throws {
        try inner.postReceive(requests, scratch: scratch)
    }
}

extension SessionDriver {
    /// Polls `cq` until `count` completions arrived (bounded): the device completes work after the post returns.
    func completions(_ cq: CQHandle, count: Int = 1, file: StaticString = #filePath,
                     line: UInt = #line) throws -> [FFProtocol.WorkCompletion] {
        var result: [FFProtocol.WorkCompletion] = []
        try eventuallyBlocking("\(count) completions on CQ \(cq.rawValue)", every: .milliseconds(1), file: file,
                               line: line) {
            result += poll(cq, max: UInt32(count - result.count))
            return result.count >= count
        }
        return result
    }
}
