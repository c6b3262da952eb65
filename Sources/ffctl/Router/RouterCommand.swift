import ArgumentParser
import FFRouterAPI
import FFSystem
import Foundation

/// `ffctl router …`: ask a node's router about itself, or change the pods it serves.
struct RouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Ask a router for its state, or add and remove the pods it serves.",
        discussion: "Both talk to the router's admin socket, which serves root and the router's own user only.",
        subcommands: [RouterStatusCommand.self, PodCommand.self]
    )
}

/// The `--admin-socket` option every router subcommand takes.
struct AdminSocketOption: ParsableArguments {
    @Option(name: .customLong("admin-socket"), help: "The router's admin socket.")
    var adminSocket = "/run/freeflow/admin.sock"

    @Option(name: .long, help: "Seconds to wait for the router's answer.")
    var timeout = 30

    var client: AdminClient { AdminClient(path: adminSocket, timeoutMilliseconds: max(1, timeout) * 1000) }

    /// Runs `body`, turning a refusal or a transport failure into a one-line error naming the socket.
    func call<T>(_ body: (AdminClient) throws -> T) throws -> T {
        do {
            return try body(client)
        } catch let failure as AdminFailure {
            throw AdminCommandError(description: "the router refused: \(failure.message)")
        } catch let error as SystemError where error.errno == ENOENT || error.errno == ECONNREFUSED {
            throw AdminCommandError(description: "no router is listening at \(adminSocket) (\(error)); is ffrouter "
                                               + "running, and is this its --admin-socket?")
        } catch let error as SystemError where error.errno == EACCES {
            throw AdminCommandError(description: "\(adminSocket): permission denied; the admin socket is root-only "
                                               + "(run with sudo)")
        }
    }
}

/// Prints `value` as sorted, indented JSON (what `--json` flags print).
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A failed admin call, printed as one line (without the usage text a `ValidationError` would add).
struct AdminCommandError: Error, CustomStringConvertible {
    var description: String
}

/// `ffctl router status`: clients, their objects, the map revision.
struct RouterStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a router's device, limits, pods, map, clients and objects (over its admin socket)."
    )

    @OptionGroup var admin: AdminSocketOption

    @Flag(name: .long, help: "Print the status as JSON.")
    var json = false

    func run() throws {
        let status = try admin.call { try $0.status() }
        if json { return try printJSON(status) }
        let files = status.limits.openFiles, memlock = status.limits.lockedMemory
        print("device \(status.device)  node ip \(status.nodeIP) (gid index \(status.gidIndex))  port "
            + "\(status.portActive ? "active" : "NOT ACTIVE"): \(status.portState)")
        print("map    \(status.map.entries) entries, revision \(status.map.revision), from \(status.map.source)")
        print("limits open files \(ResourceLimits.describe(files.soft)) (hard \(ResourceLimits.describe(files.hard)))"
              + "  locked memory \(ResourceLimits.describe(memlock.soft))"
              + " (hard \(ResourceLimits.describe(memlock.hard)))")
        if let clientSocket = status.clientSocket {
            print("client socket \(clientSocket) (each client is the pod its process belongs to)")
        }
        print("pods   \(status.pods.count)")
        for pod in status.pods { print("  " + PodCommand.line(pod)) }
        print("objects pd \(status.objects.pd)  mr \(status.objects.mr)  cq \(status.objects.cq)"
              + "  qp \(status.objects.qp)"
              + "  srq \(status.objects.srq)  ah \(status.objects.ah)  channels \(status.objects.compChannel)"
              + "  cm ids \(status.objects.cmID) (listening \(status.objects.cmListener))")
        print("clients \(status.clients.count) connected, \(status.sessionsTotal) since start, "
              + "\(status.refusedConnections) refused, "
              + "\(status.slowClientsDisconnected) disconnected for not reading replies")
        for client in status.clients {
            let o = client.objects
            print("  session \(client.session)  pod \(client.identity.pod) (\(client.identity.vip))"
                  + "  pid \(client.identity.pid)"
                  + "  objects \(o.total) (qp \(o.qp), mr \(o.mr), cq \(o.cq))"
                  + "  requests \(client.requests)  errors \(client.errors)")
        }
    }
}
