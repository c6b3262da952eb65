import ArgumentParser
import Verbs

/// `ffctl devices`: the RDMA devices of this host, their ports and GID tables.
struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List this host's RDMA devices with their ports and GID tables.",
        discussion: """
            Opens every device (or the one named with --device) through libibverbs and prints each active \
            port's state, MTU and its GID table with the GID type and IPv4 address, which is what a router \
            uses to find the GID index of the node's IP. Exits with status 1 when the host has no RDMA device.
            """
    )

    @Option(name: .long, help: "Only this device (e.g. rxe0).")
    var device: String?

    func run() throws {
        let devices = try Devices.list().filter { device == nil || $0.name == device }
        guard !devices.isEmpty else {
            let what = device.map { "no RDMA device named \($0)" } ?? "no RDMA devices on this host"
            throw ValidationError("\(what) (is the rdma_rxe or a NIC driver loaded? see `rdma link`)")
        }
        for info in devices {
            let context = try Devices.open(info.name)
            let attributes = try context.queryDevice()
            print("\(info.name)  guid \(hex(info.guid))  vendor 0x\(String(attributes.vendorID, radix: 16))"
                  + "  part \(attributes.vendorPartID)  ports \(attributes.physicalPortCount)")
            let table = try context.gidTable()
            for port in 1...max(1, attributes.physicalPortCount) {
                let p = try context.queryPort(UInt8(port))
                print("  port \(port): \(p.state.map(String.init(describing:)) ?? "state \(p.rawState)")"
                      + "  active_mtu \(p.activeMTU.map(String.init(describing:)) ?? "?")"
                      + "  link \(p.linkLayer.map(String.init(describing:)) ?? "?")  gids \(p.gidTableLength)")
                for entry in table where entry.port == port {
                    let type = entry.type.map(String.init(describing:)) ?? "?"
                    let ip = entry.gid.ipv4Address.map { "  ipv4 \($0)" } ?? ""
                    print("    gid[\(entry.index)] \(entry.gid)  \(type)\(ip)")
                }
            }
        }
    }

    private func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}
