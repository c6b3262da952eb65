import ArgumentParser
import FFRouter
import Foundation

/// `ffctl router …`: ask a node's router about itself.
struct RouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Ask a router for its state.",
        subcommands: [RouterStatusCommand.self]
    )
}

/// `ffctl router status`: clients, their objects, the map revision.
struct RouterStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a router's device, map, clients and objects (over its admin socket)."
    )

    @Option(name: .customLong("admin-socket"), help: "The router's admin socket.")
    var adminSocket = "/run/freeflow/admin.sock"

    @Flag(name: .long, help: "Print the status as JSON.")
    var json = false

    func run() throws {
        let status = try AdminServer.requestStatus(path: adminSocket)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        print("device \(status.device)  node ip \(status.nodeIP) (gid index \(status.gidIndex))")
        print("map    \(status.map.entries) entries, revision \(status.map.revision), from \(status.map.source)")
        print("pods   \(status.pods.joined(separator: "  "))")
        print("objects pd \(status.objects.pd)  mr \(status.objects.mr)  cq \(status.objects.cq)  qp \(status.objects.qp)"
              + "  srq \(status.objects.srq)  ah \(status.objects.ah)  channels \(status.objects.compChannel)")
        print("clients \(status.clients.count) connected, \(status.sessionsTotal) since start")
        for client in status.clients {
            let o = client.objects
            print("  session \(client.session)  pod \(client.identity.pod) (\(client.identity.vip))  pid \(client.identity.pid)"
                  + "  objects \(o.total) (qp \(o.qp), mr \(o.mr), cq \(o.cq))  requests \(client.requests)  errors \(client.errors)")
        }
    }
}
