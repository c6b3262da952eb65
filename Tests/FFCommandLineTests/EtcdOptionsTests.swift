import Etcd
import FFCommandLine
import Testing

/// The etcd options ffctl, iphunter and ffrouter share: one spelling each, the old ones deprecated.
@Suite struct EtcdOptionsTests {
    /// Each deprecated spelling, the spelling that replaces it, and a value for both.
    static let renamed: [(old: String, new: String, value: String)] = [
        ("--endpoints", "--etcd-endpoints", "https://etcd-0:2379,https://etcd-1:2379"),
        ("--cacert", "--etcd-cacert", "/etc/freeflow/etcd/ca.crt"),
        ("--cert", "--etcd-cert", "/etc/freeflow/etcd/client.crt"),
        ("--key", "--etcd-key", "/etc/freeflow/etcd/client.key"),
        ("--timeout", "--etcd-request-timeout", "9"),
    ]

    /// What a parse made of the one option these tests give, whatever its spelling.
    static func parsedValue(_ options: EtcdOptions, for new: String) -> String? {
        switch new {
        case "--etcd-endpoints": return options.endpoints
        case "--etcd-cacert": return options.caCert
        case "--etcd-cert": return options.cert
        case "--etcd-key": return options.key
        default: return String(options.requestTimeout)
        }
    }

    @Test(arguments: renamed.map(\.old))
    func oldSpellingParsesToTheSameValueAndSaysItIsDeprecated(old: String) throws {
        let rename = try #require(Self.renamed.first { $0.old == old })
        let viaOld = try EtcdOptions.parse([rename.old, rename.value])
        let viaNew = try EtcdOptions.parse([rename.new, rename.value])
        #expect(Self.parsedValue(viaOld, for: rename.new) == rename.value)
        #expect(Self.parsedValue(viaOld, for: rename.new) == Self.parsedValue(viaNew, for: rename.new))
        #expect(viaOld.deprecations == ["\(rename.old) is deprecated: use \(rename.new)"])
        #expect(viaNew.deprecations.isEmpty)
    }

    @Test(arguments: renamed.map(\.old))
    func bothSpellingsOfOneOptionAreRejected(old: String) throws {
        let rename = try #require(Self.renamed.first { $0.old == old })
        #expect(throws: (any Error).self) {
            try EtcdOptions.parse([rename.old, rename.value, rename.new, rename.value])
        }
    }

    @Test func helpListsOnlyTheNewSpellings() {
        let help = EtcdOptions.helpMessage(columns: 200)
        for rename in Self.renamed {
            #expect(help.contains("\(rename.new) <"))
            #expect(!help.contains("  \(rename.old) <"))
        }
        #expect(help.contains("--root <"))
    }

    @Test func defaultsAreTheSameForEveryBinary() throws {
        let options = try EtcdOptions.parse([])
        #expect(options.endpoints == nil)
        #expect(options.endpointList(environment: [:]) == "http://127.0.0.1:2379")
        #expect(options.endpointList(environment: ["ETCDCTL_ENDPOINTS": "etcd-0:2379"]) == "etcd-0:2379")
        #expect(options.endpointList(environment: ["ETCDCTL_ENDPOINTS": ""]) == "http://127.0.0.1:2379")
        #expect(options.root == MapSchema.v1.root)
        #expect(options.requestTimeout == 5)
        #expect(options.deprecations.isEmpty)
        let configuration = options.configuration(environment: [:])
        #expect(configuration.endpoints == ["http://127.0.0.1:2379"])
        #expect(configuration.tls == nil)
        #expect(configuration.requestTimeout == .seconds(5))
    }

    @Test func givenEndpointsWinOverTheEnvironment() throws {
        let options = try EtcdOptions.parse(["--etcd-endpoints", "10.0.0.1:2379"])
        #expect(options.endpointList(environment: ["ETCDCTL_ENDPOINTS": "etcd-0:2379"]) == "10.0.0.1:2379")
    }

    @Test func configurationCarriesTLSAndTimeoutFromEitherSpelling() throws {
        let options = try EtcdOptions.parse([
            "--etcd-endpoints", "https://etcd:2379", "--cacert", "ca.crt", "--etcd-cert", "client.crt",
            "--key", "client.key", "--etcd-request-timeout", "2", "--root", "/other/",
        ])
        let configuration = options.configuration(environment: [:])
        #expect(configuration.endpoints == ["https://etcd:2379"])
        #expect(configuration.tls == EtcdTLS(caFile: "ca.crt", certFile: "client.crt", keyFile: "client.key"))
        #expect(configuration.requestTimeout == .seconds(2))
        #expect(options.schema.root == "/other/")
        #expect(options.deprecations == [
            "--cacert is deprecated: use --etcd-cacert", "--key is deprecated: use --etcd-key",
        ])
    }

    @Test func aTimeoutThatIsNotPositiveIsRejected() {
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-request-timeout", "0"]) }
    }
}
