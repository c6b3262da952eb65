import DevicePluginAPI
import GRPCCore
import Logging

/// The `DevicePlugin` service the kubelet calls: options, the device list with health, preferred allocations and
/// `Allocate`, which hands a container the router socket, the shim and the environment that loads it (as mounts and
/// environment, and as CDI device names).
struct DevicePluginService: V1beta1_DevicePlugin.SimpleServiceProtocol {
    let configuration: PluginConfiguration
    let health: DeviceHealth
    let logger: Logger

    func getDevicePluginOptions(request: V1beta1_Empty, context: ServerContext) async throws
        -> V1beta1_DevicePluginOptions {
        .with {
            $0.preStartRequired = false
            $0.getPreferredAllocationAvailable = true
        }
    }

    /// The device list now, then again whenever health changes, until the kubelet hangs up.
    func listAndWatch(request: V1beta1_Empty, response: RPCWriter<V1beta1_ListAndWatchResponse>,
                      context: ServerContext) async throws {
        for await state in health.changes() {
            logger.info("advertising devices", metadata: ["count": "\(configuration.deviceCount)",
                                                          "healthy": "\(state.healthy)",
                                                          "detail": "\(state.detail)"])
            try await response.write(.with { list in
                list.devices = configuration.deviceIDs.map { id in
                    V1beta1_Device.with {
                        $0.id = id
                        $0.health = state.healthy ? "Healthy" : "Unhealthy"
                    }
                }
            })
        }
    }

    /// For each container: the devices it must have, then the lowest-numbered available ones, up to its size.
    func getPreferredAllocation(request: V1beta1_PreferredAllocationRequest, context: ServerContext) async throws
        -> V1beta1_PreferredAllocationResponse {
        let known = Set(configuration.deviceIDs)
        return try .with { response in
            response.containerResponses = try request.containerRequests.map { container in
                try check(container.availableDeviceIds + container.mustIncludeDeviceIds, known: known)
                let size = Int(container.allocationSize)
                guard size >= container.mustIncludeDeviceIds.count,
                      size <= container.availableDeviceIds.count + container.mustIncludeDeviceIds.count else {
                    throw RPCError(code: .invalidArgument,
                                   message: "allocation size \(size) does not fit "
                                   + "\(container.mustIncludeDeviceIds.count) required "
                                   + "and \(container.availableDeviceIds.count) available devices")
                }
                let must = container.mustIncludeDeviceIds
                let rest = container.availableDeviceIds.filter { !must.contains($0) }.sorted { index($0) < index($1) }
                return .with { $0.deviceIds = Array((must + rest).prefix(size)) }
            }
        }
    }

    func allocate(request: V1beta1_AllocateRequest, context: ServerContext) async throws -> V1beta1_AllocateResponse {
        let known = Set(configuration.deviceIDs)
        return try .with { response in
            response.containerResponses = try request.containerRequests.map { container in
                guard !container.devicesIds.isEmpty else {
                    throw RPCError(code: .invalidArgument, message: "a container request names no device")
                }
                try check(container.devicesIds, known: known)
                let edits = ContainerEdits(for: container.devicesIds, configuration: configuration)
                logger.info("allocated", metadata: ["devices": "\(container.devicesIds.joined(separator: ","))"])
                return .with { answer in
                    answer.envs = Dictionary(uniqueKeysWithValues: edits.environment.map { ($0.name, $0.value) })
                    answer.mounts = edits.mounts.map { mount in
                        .with {
                            $0.hostPath = mount.hostPath
                            $0.containerPath = mount.containerPath
                            $0.readOnly = mount.readOnly
                        }
                    }
                    if configuration.cdiDirectory != nil {
                        answer.cdiDevices = container.devicesIds.map { id in
                            .with { $0.name = CDISpec.qualifiedName(kind: configuration.resourceName, device: id) }
                        }
                    }
                }
            }
        }
    }

    func preStartContainer(request: V1beta1_PreStartContainerRequest, context: ServerContext) async throws
        -> V1beta1_PreStartContainerResponse {
        V1beta1_PreStartContainerResponse()
    }

    /// Refuses ids this plugin never advertised, naming them.
    private func check(_ ids: [String], known: Set<String>) throws {
        let unknown = ids.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw RPCError(code: .invalidArgument,
                           message: "unknown device \(unknown.joined(separator: ", ")): this node advertises "
                           + "\(configuration.deviceIDs.first ?? "none")…\(configuration.deviceIDs.last ?? "none")"
                           + " of \(configuration.resourceName)")
        }
    }

    private func index(_ id: String) -> Int { Int(id.split(separator: "-").last ?? "") ?? Int.max }
}
