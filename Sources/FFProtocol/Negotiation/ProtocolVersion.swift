/// Protocol versions this codec speaks, and the hello handshake's version choice.
public enum ProtocolVersion {
    /// The version this codec writes by default.
    public static let current: UInt16 = 1
    /// Every version this codec can decode.
    public static let supported: ClosedRange<UInt16> = 1...1

    /// Picks the highest version both sides speak, or reports the two disjoint ranges.
    public static func negotiate(client: ClosedRange<UInt16>, router: ClosedRange<UInt16> = supported)
        -> Result<UInt16, VersionMismatch> {
        let low = max(client.lowerBound, router.lowerBound)
        let high = min(client.upperBound, router.upperBound)
        guard low <= high else { return .failure(VersionMismatch(client: client, router: router)) }
        return .success(high)
    }

    /// The router's answer to a hello: a `HelloReply` with the chosen version and granted capabilities,
    /// or an `ErrorReply` (EPROTONOSUPPORT) naming both ranges.
    public static func answer(_ hello: Hello, router: ClosedRange<UInt16> = supported,
                              routerCapabilities: Capabilities = [], sessionID: UInt64, vip: IPv4Address) -> Message {
        switch negotiate(client: hello.minVersion...hello.maxVersion, router: router) {
        case .success(let version):
            let granted = hello.capabilities.intersection(routerCapabilities).intersection(.known)
            return .reply(to: Hello.self, HelloReply(version: version, capabilities: granted, sessionID: sessionID,
                                                     vip: vip,
                                                     gid: GID(ipv4Mapped: vip)))
        case .failure(let mismatch):
            return .error(mismatch.errorReply)
        }
    }
}

/// The client's and the router's version ranges do not overlap.
public struct VersionMismatch: Error, Equatable, Sendable, CustomStringConvertible {
    /// Versions the client speaks.
    public var client: ClosedRange<UInt16>
    /// Versions the router speaks.
    public var router: ClosedRange<UInt16>

    /// Creates a mismatch.
    public init(client: ClosedRange<UInt16>, router: ClosedRange<UInt16>) {
        self.client = client
        self.router = router
    }

    /// `"protocol version mismatch: client speaks 2..3, router speaks 1..1"`.
    public var description: String {
        "protocol version mismatch: client speaks \(client.lowerBound)..\(client.upperBound), router speaks "
            + "\(router.lowerBound)..\(router.upperBound)"
    }

    /// The error reply to send (EPROTONOSUPPORT, reason = `description`).
    public var errorReply: ErrorReply { ErrorReply(errno: Errno.protocolNotSupported, reason: description) }
}
