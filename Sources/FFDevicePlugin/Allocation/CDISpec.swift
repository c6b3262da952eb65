import Foundation

/// The Container Device Interface spec of the plugin's devices (CDI 0.6: `cdiVersion`, `kind`, and per device its
/// `containerEdits`), written to the CDI folder so that runtimes that resolve `cdi_devices` give a container the same
/// mounts and environment the `Allocate` answer lists.
public struct CDISpec: Sendable, Equatable, Codable {
    /// A bind mount in CDI's form.
    public struct Mount: Sendable, Equatable, Codable {
        /// Path on the node.
        public var hostPath: String
        /// Path in the container.
        public var containerPath: String
        /// Mount options (`bind`, `ro`/`rw`).
        public var options: [String]
    }

    /// What a container using the device gets.
    public struct Edits: Sendable, Equatable, Codable {
        /// `NAME=value` entries.
        public var env: [String]
        /// Mounts.
        public var mounts: [Mount]
    }

    /// One device.
    public struct Device: Sendable, Equatable, Codable {
        /// Its name within the kind (`vrdma-0`).
        public var name: String
        /// Its edits.
        public var containerEdits: Edits
    }

    /// The CDI spec version.
    public var cdiVersion = "0.6.0"
    /// `vendor/class`, the resource name.
    public var kind: String
    /// Every device.
    public var devices: [Device]

    /// The spec of every device `configuration` advertises.
    public init(configuration: PluginConfiguration) {
        kind = configuration.resourceName
        devices = configuration.deviceIDs.map { id in
            let edits = ContainerEdits(for: [id], configuration: configuration)
            return Device(name: id, containerEdits: Edits(
                env: edits.environment.map { "\($0.name)=\($0.value)" },
                mounts: edits.mounts.map {
                    Mount(hostPath: $0.hostPath, containerPath: $0.containerPath,
                          options: ["bind", $0.readOnly ? "ro" : "rw"])
                }))
        }
    }

    /// The fully qualified CDI name of device `id`: `kind=id`.
    public static func qualifiedName(kind: String, device id: String) -> String { "\(kind)=\(id)" }

    /// The spec file's path in `directory`: `<vendor>-<class>.json`.
    public func path(in directory: String) -> String {
        "\(directory)/\(kind.replacingOccurrences(of: "/", with: "-")).json"
    }

    /// Writes the spec atomically (a temporary file renamed over the old one), so a runtime never reads half a spec.
    public func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path(in: directory)), options: .atomic)
    }
}
