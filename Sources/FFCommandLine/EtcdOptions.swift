import ArgumentParser
import Etcd
import Foundation

/// How ffctl, iphunter and ffrouter reach etcd and find the map in it: one spelling and one default per option in all
/// three (docs/kubernetes.md, "One spelling per flag"). The spellings ffctl had before (`--endpoints`, `--cacert`,
/// `--cert`, `--key`, `--timeout`) still parse, hidden from `--help`, with one deprecation line each on stderr.
public struct EtcdOptions: ParsableArguments {
    /// Where etcd is when neither `--etcd-endpoints` nor `$ETCDCTL_ENDPOINTS` says: etcd's own client port here.
    public static let defaultEndpoints = "http://127.0.0.1:2379"
    /// Seconds allowed for one etcd request when `--etcd-request-timeout` is not given (EtcdConfiguration's default).
    public static let defaultRequestTimeout = 5

    @Option(
        name: .customLong("etcd-endpoints"),
        help: """
            Comma-separated etcd client URLs; host:port means http \
            (default: $ETCDCTL_ENDPOINTS, else \(Self.defaultEndpoints)).
            """
    )
    var newEndpoints: String?

    @Option(name: .customLong("etcd-cacert"), help: "CA certificate (PEM) that signed etcd's server certificate.")
    var newCACert: String?

    @Option(name: .customLong("etcd-cert"), help: "Client certificate (PEM) for etcd's client-cert auth.")
    var newCert: String?

    @Option(name: .customLong("etcd-key"), help: "Private key (PEM) of the etcd client certificate.")
    var newKey: String?

    @Option(
        name: .customLong("etcd-request-timeout"),
        help: "Seconds allowed for one etcd request (default: \(Self.defaultRequestTimeout))."
    )
    var newRequestTimeout: Int?

    /// Key prefix of the map in etcd (docs/etcd-map-schema.md).
    @Option(help: "Key prefix of the map in etcd (schema version 1).")
    public var root: String = MapSchema.v1.root

    // ffctl's spellings before issue 18: parsed, never listed.
    @Option(name: .customLong("endpoints"), help: .hidden) var oldEndpoints: String?
    @Option(name: .customLong("cacert"), help: .hidden) var oldCACert: String?
    @Option(name: .customLong("cert"), help: .hidden) var oldCert: String?
    @Option(name: .customLong("key"), help: .hidden) var oldKey: String?
    @Option(name: .customLong("timeout"), help: .hidden) var oldRequestTimeout: Int?

    /// Makes the options as if none was given (what ArgumentParser needs; tests parse instead).
    public init() {}

    /// A deprecated spelling and the one that replaces it, with whether the command line used the old one.
    struct Rename {
        var old: String
        var new: String
        var oldGiven: Bool
        var newGiven: Bool
    }

    /// Every renamed option, for the checks and messages that are the same for all of them.
    var renames: [Rename] {
        [
            Rename(
                old: "endpoints", new: "etcd-endpoints",
                oldGiven: oldEndpoints != nil, newGiven: newEndpoints != nil
            ),
            Rename(old: "cacert", new: "etcd-cacert", oldGiven: oldCACert != nil, newGiven: newCACert != nil),
            Rename(old: "cert", new: "etcd-cert", oldGiven: oldCert != nil, newGiven: newCert != nil),
            Rename(old: "key", new: "etcd-key", oldGiven: oldKey != nil, newGiven: newKey != nil),
            Rename(
                old: "timeout", new: "etcd-request-timeout",
                oldGiven: oldRequestTimeout != nil, newGiven: newRequestTimeout != nil
            ),
        ]
    }

    /// The endpoint list the command line gave (in either spelling), nil when it gave none.
    public var endpoints: String? { newEndpoints ?? oldEndpoints }
    /// The CA file for etcd's server certificate, if given.
    public var caCert: String? { newCACert ?? oldCACert }
    /// The client certificate file, if given.
    public var cert: String? { newCert ?? oldCert }
    /// The client key file, if given.
    public var key: String? { newKey ?? oldKey }
    /// Seconds allowed for one etcd request.
    public var requestTimeout: Int { newRequestTimeout ?? oldRequestTimeout ?? Self.defaultRequestTimeout }

    /// One line per deprecated spelling the command line used, naming the spelling that replaces it.
    public var deprecations: [String] {
        renames.filter(\.oldGiven).map { "--\($0.old) is deprecated: use --\($0.new)" }
    }

    /// The endpoints to use: the command line's, else `$ETCDCTL_ENDPOINTS` (as etcdctl), else ``defaultEndpoints``.
    public func endpointList(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        endpoints ?? environment["ETCDCTL_ENDPOINTS"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultEndpoints
    }

    /// The map's schema under `--root`.
    public var schema: MapSchema { MapSchema(root: root) }

    /// The client configuration these options describe.
    public func configuration(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> EtcdConfiguration {
        var config = EtcdConfiguration(
            endpointList: endpointList(environment: environment),
            tls: .fromFlags(caFile: caCert, certFile: cert, keyFile: key)
        )
        config.requestTimeout = .seconds(requestTimeout)
        return config
    }

    /// Rejects an option given in both spellings and a timeout that is not positive; says which old spellings were
    /// used, on stderr, so scripts keep working while their owners see what to change.
    public mutating func validate() throws {
        for rename in renames where rename.oldGiven && rename.newGiven {
            throw ValidationError(
                "--\(rename.old) is the deprecated spelling of --\(rename.new): give only --\(rename.new)"
            )
        }
        guard requestTimeout > 0 else {
            throw ValidationError("--etcd-request-timeout \(requestTimeout): give a positive number of seconds")
        }
        let program = CommandLine.arguments.first.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "freeflow"
        for line in deprecations {
            FileHandle.standardError.write(Data("\(program): \(line)\n".utf8))
        }
    }
}
