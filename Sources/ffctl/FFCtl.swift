import ArgumentParser

/// The operator's command-line tool for FreeFlow.
@main
struct FFCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffctl",
        abstract: "Inspect a FreeFlow node: RDMA devices, the vip→pip map, routers.",
        subcommands: [DevicesCommand.self, RouterCommand.self, ProbeCommand.self]
    )
}
