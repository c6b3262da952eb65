import ArgumentParser
import FFProtocol
import FFRouterAPI
import Foundation

/// `ffctl router pod …`: the pods a router serves, changed at runtime (what the device plugin does).
struct PodCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pod",
        abstract: "Add, remove or list the pods a router serves, without restarting it.",
        discussion: """
            A pod added here gets the socket <socket-dir>/pod-<UID>.sock; mount only that socket into the pod. \
            Removing a pod deletes its socket, closes its clients' sessions and destroys their objects; other \
            pods are not touched.
            """,
        subcommands: [PodAddCommand.self, PodRemoveCommand.self, PodListCommand.self]
    )

    /// One pod as a line.
    static func line(_ pod: PodStatus) -> String {
        let name = pod.namespace.isEmpty ? pod.name : "\(pod.namespace)/\(pod.name)"
        return "\(name)  vip \(pod.vip)  \(pod.uid.isEmpty ? "" : "uid \(pod.uid)  ")socket \(pod.socket)  clients "
             + "\(pod.clients)  (\(pod.origin))"
    }
}

/// `ffctl router pod add`.
struct PodAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Serve a pod: create its socket. Adding the same pod again changes nothing."
    )

    @OptionGroup var admin: AdminSocketOption

    @Option(name: .long, help: "Pod name.")
    var name: String

    @Option(name: .long, help: "Pod namespace.")
    var namespace = "default"

    @Option(name: .long, help: "Pod uid (metadata.uid): names the socket, pod-<UID>.sock.")
    var uid: String

    @Option(name: .long, help: "The pod's virtual IP (its IP in the cluster).")
    var vip: String

    func validate() throws {
        guard IPv4Address(vip) != nil else { throw ValidationError("--vip \(vip) is not an IPv4 address") }
    }

    func run() throws {
        let (pod, created) = try admin.call {
            try $0.addPod(PodSpec(name: name, namespace: namespace, uid: uid, vip: vip))
        }
        print((created ? "added  " : "already served  ") + PodCommand.line(pod))
    }
}

/// `ffctl router pod remove`.
struct PodRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Stop serving a pod: delete its socket, close its sessions and destroy their objects."
    )

    @OptionGroup var admin: AdminSocketOption

    @Argument(help: "The pod: its uid, NAMESPACE/NAME, or the NAME of a --pod pod.")
    var pod: String

    func run() throws {
        let (removed, closed, stillClosing) = try admin.call { try $0.removePod(pod) }
        var text = "removed  \(PodCommand.line(removed))  sessions closed \(closed)"
        if stillClosing > 0 { text += ", \(stillClosing) still closing (a verbs call in progress)" }
        print(text)
    }
}

/// `ffctl router pod list`.
struct PodListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the pods a router serves.")

    @OptionGroup var admin: AdminSocketOption

    @Flag(name: .long, help: "Print the pods as JSON.")
    var json = false

    func run() throws {
        let pods = try admin.call { try $0.listPods() }
        if json {
            try printJSON(pods)
        } else {
            for pod in pods { print(PodCommand.line(pod)) }
        }
    }
}
