import FFProtocol
import Verbs

/// The router's real device: the open context, the port it serves, and the GID index of the node's own IP,
/// which every translated address vector sends from.
public final class NodeDevice: Sendable {
    /// The open device.
    public let context: Context
    /// The physical port (1-based).
    public let port: UInt8
    /// The node's IP: its RoCEv2 GID is what peers reach this node at.
    public let nodeIP: IPv4Address
    /// GID table index of `nodeIP` on `port`.
    public let gidIndex: Int
    /// The real device attributes, queried once.
    public let attributes: Verbs.DeviceAttributes

    /// Opens `deviceName` (nil: the first device) and finds the RoCEv2 GID of `nodeIP` on `port`.
    public init(deviceName: String?, port: UInt8, nodeIP: IPv4Address) throws {
        context = try Devices.open(deviceName)
        self.port = port
        self.nodeIP = nodeIP
        attributes = try context.queryDevice()
        let portAttributes = try context.queryPort(port)
        guard portAttributes.state == .active else {
            throw RouterSetupError("port \(port) of \(context.name) is \(portAttributes.state.map(String.init(describing:)) ?? "in state \(portAttributes.rawState)"), not active")
        }
        guard let index = try context.gidIndex(ipv4: nodeIP.description, port: port) else {
            let known = try context.gidTable().compactMap { $0.gid.ipv4Address }.joined(separator: ", ")
            throw RouterSetupError("\(context.name) port \(port) has no RoCEv2 GID for node IP \(nodeIP) (IPv4 GIDs: \(known.isEmpty ? "none" : known))")
        }
        gidIndex = index
    }
}

/// A router that cannot start: what is wrong and how to see it.
public struct RouterSetupError: Error, CustomStringConvertible {
    /// The explanation.
    public var description: String
    /// Wraps an explanation.
    public init(_ description: String) { self.description = description }
}
