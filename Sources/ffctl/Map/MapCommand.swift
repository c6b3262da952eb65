import ArgumentParser
import Etcd
import FFCommandLine

/// `ffctl map`: the whole map as a table.
struct MapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Print the vip→pip map (one row per pod) and the nodes."
    )

    @OptionGroup var etcd: EtcdOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let schema = etcd.schema
        let text = try await etcd.withClient { client in
            let result = try await client.rangeAll(.prefix(schema.root))
            var vips: [VipEntry] = []
            var nodes: [NodeEntry] = []
            var invalid: [String] = []
            for kv in result.kvs {
                switch schema.classify(kv.key) {
                case .vip:
                    if let entry = MapCodec.vip(kv.value) { vips.append(entry) } else { invalid.append(kv.key) }
                case .node:
                    if let entry = MapCodec.node(kv.value) { nodes.append(entry) } else { invalid.append(kv.key) }
                case .leader, .other:
                    break
                }
            }
            vips.sort { ipOrder($0.vip, $1.vip) }
            nodes.sort { $0.node < $1.node }
            if json {
                struct Dump: Encodable {
                    var revision: Int64; var vips: [VipEntry]; var nodes: [NodeEntry]; var invalidKeys: [String]
                }
                return jsonLine(Dump(revision: result.revision, vips: vips, nodes: nodes, invalidKeys: invalid))
            }
            var out = "revision \(result.revision): \(vips.count) vips, \(nodes.count) nodes (\(schema.root))\n\n"
            out += table(["VIP", "PIP", "NODE", "POD"], vips.map { [$0.vip, $0.pip, $0.node,
                                                                    "\($0.namespace)/\($0.pod)"] })
            out += "\n\n"
            out += table(["NODE", "PIP", "ADDRESSES"], nodes.map { [$0.node, $0.pip,
                                                                    $0.addresses.joined(separator: ",")] })
            for key in invalid { out += "\nwarning: \(key) holds a value that is not a schema-v1 entry" }
            return out
        }
        print(text)
    }
}
