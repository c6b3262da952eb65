import ArgumentParser

/// The FreeFlow operator CLI.
@main
struct FFCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffctl",
        abstract: "Inspect a FreeFlow cluster: the vip→pip map in etcd and the routers.",
        discussion: """
            Debugging "why can't pod A reach pod B": `ffctl lookup <pod B's IP>` shows which node and \
            physical IP the routers will use; `ffctl watch` shows every change to the map as it happens.
            """,
        subcommands: [MapCommand.self, LookupCommand.self, WatchCommand.self]
    )
}
