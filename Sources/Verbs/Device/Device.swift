import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// An RDMA device as listed by `ibv_get_device_list(3)`: a name and GUID that can be opened.
public struct DeviceInfo: Hashable, Sendable {
    /// Kernel name of the device, e.g. `rxe0` or `mlx5_0`.
    public var name: String
    /// Node GUID in host order.
    public var guid: UInt64
    /// Path of the device's sysfs folder.
    public var sysfsPath: String
}

/// Listing and opening devices.
public enum Devices {
    /// Lists the RDMA devices of this host. A host whose kernel has no RDMA support (no
    /// /sys/class/infiniband_verbs, where `ibv_get_device_list` fails with ENOSYS) has none: that is an
    /// empty list, not an error.
    public static func list() throws(VerbsError) -> [DeviceInfo] {
        var count: Int32 = 0
        let list: UnsafeMutablePointer<UnsafeMutablePointer<ibv_device>?>
        do {
            // A NULL without errno is taken as ENODEV: no devices, as with ENOSYS (no kernel support) and ENOENT.
            list = try Call.returnsPointer("ibv_get_device_list", unsetErrno: ENODEV) { ibv_get_device_list(&count) }
        } catch {
            if error.errno == ENOSYS || error.errno == ENOENT || error.errno == ENODEV { return [] }
            throw error
        }
        defer { ibv_free_device_list(list) }
        var result: [DeviceInfo] = []
        for i in 0..<Int(count) {
            guard let device = list[i] else { continue }
            result.append(DeviceInfo(
                name: String(cString: ibv_get_device_name(device)),
                guid: UInt64(bigEndian: ibv_get_device_guid(device)),
                sysfsPath: withUnsafeBytes(of: device.pointee.ibdev_path) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
            ))
        }
        return result
    }

    /// Opens the device called `name`, or the first device when `name` is nil.
    /// Throws ENODEV, naming the devices that exist, when there is no such device.
    public static func open(_ name: String? = nil) throws(VerbsError) -> Context {
        var count: Int32 = 0
        let list: UnsafeMutablePointer<UnsafeMutablePointer<ibv_device>?>
        do {
            list = try Call.returnsPointer("ibv_get_device_list", unsetErrno: ENODEV) { ibv_get_device_list(&count) }
        } catch {
            // ENOSYS: the kernel has no RDMA support at all; for the caller that is "no such device".
            let noSupport = error.errno == ENOSYS
            let why = "this host has no RDMA devices" + (noSupport ? " (no kernel RDMA support)" : "")
            throw VerbsError(operation: "ibv_open_device", errno: noSupport ? ENODEV : error.errno,
                             detail: name.map { "no device \($0): \(why)" } ?? why)
        }
        defer { ibv_free_device_list(list) }
        var names: [String] = []
        for i in 0..<Int(count) {
            guard let device = list[i] else { continue }
            let deviceName = String(cString: ibv_get_device_name(device))
            names.append(deviceName)
            if name == nil || name == deviceName {
                let raw = try Call.returnsPointer("ibv_open_device", detail: deviceName) { ibv_open_device(device) }
                return Context(owning: raw, name: deviceName)
            }
        }
        let detail = name.map { "no device \($0); devices: \(names.isEmpty ? "none" : names.joined(separator: ", "))" }
        throw VerbsError(operation: "ibv_open_device", errno: ENODEV, detail: detail ?? "this host has no RDMA devices")
    }
}

/// An open device context (`struct ibv_context`). Closed with `ibv_close_device` when the last
/// reference goes; every object made from it keeps it alive.
public final class Context: @unchecked Sendable {
    // Sendable: libibverbs objects may be used from any thread (rdma-core's libibverbs is thread-safe).
    let raw: UnsafeMutablePointer<ibv_context>
    private let owner: AnyObject?
    /// Kernel name of the device.
    public let name: String

    init(owning raw: UnsafeMutablePointer<ibv_context>, name: String) {
        self.raw = raw
        self.owner = nil
        self.name = name
    }

    /// A context librdmacm opened for a cm_id; librdmacm closes it, `owner` keeps that alive.
    init(borrowing raw: UnsafeMutablePointer<ibv_context>, owner: AnyObject) {
        self.raw = raw
        self.owner = owner
        self.name = String(cString: ibv_get_device_name(raw.pointee.device))
    }

    deinit {
        if owner == nil { ibv_close_device(raw) }
    }

    /// Completion vectors of the device (`ibv_context.num_comp_vectors`): valid CQ vectors are 0..<this.
    public var completionVectorCount: Int { Int(raw.pointee.num_comp_vectors) }

    /// `ibv_query_device(3)`.
    public func queryDevice() throws(VerbsError) -> DeviceAttributes {
        var attr = ibv_device_attr()
        try Call.returnsErrno("ibv_query_device", detail: name) { ibv_query_device(raw, &attr) }
        return DeviceAttributes(attr)
    }

    /// `ibv_query_port(3)`; ports are numbered from 1.
    public func queryPort(_ port: UInt8 = 1) throws(VerbsError) -> PortAttributes {
        var attr = ibv_port_attr()
        try Call.returnsErrno("ibv_query_port", detail: "\(name) port \(port)") { ffv_query_port(raw, port, &attr) }
        return PortAttributes(attr)
    }

    /// `ibv_query_gid(3)`: the GID at `index` of `port` (all zero for an empty slot).
    public func queryGID(port: UInt8 = 1, index: Int) throws(VerbsError) -> GID {
        var gid = ibv_gid()
        try Call.returnsMinusOne("ibv_query_gid", detail: "\(name) port \(port) index \(index)") {
            ibv_query_gid(raw, port, Int32(index), &gid)
        }
        return GID(gid)
    }

    /// `ibv_query_gid_table(3)`: every valid GID entry of every port.
    public func gidTable() throws(VerbsError) -> [GIDEntry] {
        let ports = try queryDevice().physicalPortCount
        var capacity = 0
        for port in 1...max(1, ports) { capacity += Int(try queryPort(UInt8(port)).gidTableLength) }
        capacity = max(capacity, 1)
        var entries = [ibv_gid_entry](repeating: ibv_gid_entry(), count: capacity)
        let n = try Call.returnsCountOrNegativeErrno("ibv_query_gid_table", detail: name) {
            ibv_query_gid_table(raw, &entries, capacity, 0)
        }
        return entries.prefix(n).map {
            GIDEntry(gid: GID($0.gid), index: Int($0.gid_index), port: Int($0.port_num),
                     type: GIDType(rawValue: $0.gid_type), netdevIndex: $0.ndev_ifindex)
        }
    }

    /// The GID table index whose GID is the IPv4-mapped form of `ipv4` with the given type
    /// (RoCE v2 by default), or nil when the port has no such GID.
    public func gidIndex(ipv4: String, port: UInt8 = 1, type: GIDType = .roceV2) throws(VerbsError) -> Int? {
        guard let wanted = GID(ipv4: ipv4) else {
            throw VerbsError(operation: "gidIndex", errno: EINVAL, detail: "not an IPv4 address: \(ipv4)")
        }
        return try gidTable().first { $0.gid == wanted && $0.port == Int(port) && $0.type == type }?.index
    }

    /// `ibv_alloc_pd(3)`.
    public func allocateProtectionDomain() throws(VerbsError) -> ProtectionDomain {
        let pd = try Call.returnsPointer("ibv_alloc_pd", detail: name) { ibv_alloc_pd(raw) }
        return ProtectionDomain(raw: pd, context: self)
    }

    /// `ibv_create_comp_channel(3)`.
    public func createCompletionChannel() throws(VerbsError) -> CompletionChannel {
        let channel = try Call.returnsPointer("ibv_create_comp_channel", detail: name) { ibv_create_comp_channel(raw) }
        return CompletionChannel(raw: channel, context: self)
    }

    /// `ibv_create_cq(3)` with room for at least `entries` completions, optionally reporting to `channel`.
    public func createCompletionQueue(entries: Int, channel: CompletionChannel? = nil,
                                      vector: Int = 0) throws(VerbsError) -> CompletionQueue {
        try CompletionQueue(context: self, entries: entries, channel: channel, vector: vector)
    }
}
