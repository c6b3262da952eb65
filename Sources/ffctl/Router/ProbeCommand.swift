import ArgumentParser
import FFClient
import FFProtocol
import FFSystem
import Foundation

/// `ffctl probe`: connect to a pod socket as that pod would and make one of each basic object.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Check that a pod can use its router: connect, then create a PD, MR, CQ and RC QP.",
        discussion: """
            Prints the pod's virtual GID and each object as it is made, then destroys them in order. With \
            --hold it keeps them and waits until killed, which shows what the router does with the objects \
            of a client that dies (they are destroyed; see `ffctl router status`).
            """
    )

    @Option(name: .long, help: "The pod's router socket.")
    var socket: String

    @Flag(name: .long, help: "Keep the objects and wait until killed.")
    var hold = false

    @Option(name: .customLong("mr-bytes"),
        help: "Size of the memory region to register (a large one shows what a client killed mid-registration leaves).")
    var mrBytes = 65536

    func validate() throws {
        guard mrBytes > 0 else { throw ValidationError("--mr-bytes \(mrBytes): give a positive size") }
    }

    func run() throws {
        let connection = try RouterConnection(path: socket, name: "ffctl-probe")
        print("connected: session \(connection.session.sessionID), vip \(connection.session.vip), gid "
            + "\(connection.session.gid)")
        let device = try connection.queryDevice()
        print("device: vendor 0x\(String(device.vendorID, radix: 16)) part 0x\(String(device.vendorPartID, radix: 16)) "
            + "max_qp \(device.maxQP)")
        let pd = try connection.allocatePD()
        let memory = try SharedMemory(name: "ffctl-probe", size: mrBytes)
        print("registering \(memory.bytes.count) bytes")
        fflush(nil)
        let mr = try connection.registerMemory(pd: pd, memory: memory, access: [.localWrite, .remoteWrite, .remoteRead])
        let cq = try connection.createCQ(entries: 16)
        let qp = try connection.createQP(CreateQPRequest(pd: pd, sendCQ: cq.cq, recvCQ: cq.cq, type: .rc,
                                                         signalAll: false,
                                                        capabilities: QPCapabilities(maxSendWR: 8, maxRecvWR: 8,
                                                            maxSendSGE: 1, maxRecvSGE: 1, maxInlineData: 0)))
        print("objects: \(pd) \(mr.mr) (rkey 0x\(String(mr.rkey, radix: 16))) \(cq.cq) \(qp.qp) (qpn \(qp.qpNum))")
        if hold {
            print("holding the objects; kill this process (pid \(getpid())) to end the session")
            fflush(nil)
            while true { sleep(3600) }
        }
        try connection.destroyQP(qp.qp)
        try connection.destroyCQ(cq.cq)
        try connection.deregisterMemory(mr.mr)
        try connection.deallocatePD(pd)
        print("destroyed: ok")
    }
}
