import ArgumentParser
import Etcd
import FFCommandLine

/// `ffctl lookup VIP`: where one virtual IP lives.
struct LookupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Show where a pod IP (vip) lives: node, physical IP and the GIDs routers translate between.",
        discussion: "Exits with status 1 when the vip is not in the map."
    )

    @OptionGroup var etcd: EtcdOptions

    @Argument(help: "The pod IP (virtual IP) to look up.")
    var vip: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() async throws {
        let schema = etcd.schema
        let vip = vip
        let (found, text) = try await etcd.withClient { client -> (Bool, String) in
            let result = try await client.range(.key(schema.vipKey(vip)))
            guard let kv = result.kvs.first else {
                return (false, "vip \(vip) is not in the map at revision \(result.revision): no running pod has this "
                    + "IP, or the IP hunter has not published it yet (check `ffctl watch` and the iphunter logs)")
            }
            guard let entry = MapCodec.vip(kv.value) else {
                return (false,
                        "vip \(vip): key \(kv.key) holds a value that is not a schema-v1 entry: \(kv.valueString)")
            }
            let node = try await client.get(schema.nodeKey(entry.node)).flatMap { MapCodec.node($0.value) }
            if json {
                struct Answer: Encodable {
                    var entry: VipEntry; var node: NodeEntry?; var modRevision: Int64; var revision: Int64
                }
                return (true, jsonLine(Answer(entry: entry, node: node, modRevision: kv.modRevision,
                                              revision: result.revision)))
            }
            var lines = [
                "vip:       \(entry.vip)",
                "pip:       \(entry.pip)",
                "node:      \(entry.node)",
                "pod:       \(entry.namespace)/\(entry.pod) (uid \(entry.uid))",
                "vgid:      \(mappedGID(entry.vip))",
                "pgid:      \(mappedGID(entry.pip))",
                "revision:  \(kv.modRevision) (store at \(result.revision))",
            ]
            if let node {
                if node.pip != entry.pip {
                    lines.append("warning:   node \(node.node) now has pip \(node.pip); this entry still says "
                               + "\(entry.pip)")
                }
            } else {
                lines.append("warning:   node \(entry.node) has no entry under \(schema.nodesPrefix)")
            }
            return (true, lines.joined(separator: "\n"))
        }
        if found {
            print(text)
        } else {
            throw FFCtlFailure(message: text)
        }
    }
}
