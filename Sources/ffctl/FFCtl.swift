import ArgumentParser

/// The FreeFlow operator CLI.
@main
struct FFCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffctl",
        abstract: "Inspect FreeFlow: the vip→pip map in etcd, the routers, the node's RDMA devices.",
        discussion: """
            Debugging "why can't pod A reach pod B": `ffctl lookup <pod B's IP>` shows which node and \
            physical IP the routers will use; `ffctl watch` shows every change to the map as it happens; \
            `ffctl router status` shows a router's clients and objects; `ffctl probe` checks that a pod can \
            use its router; `ffctl devices` shows the GID table a router picks its node GID from.
            """,
        subcommands: [MapCommand.self, LookupCommand.self, WatchCommand.self, RouterCommand.self, ProbeCommand.self,
                      DevicesCommand.self]
    )
}
