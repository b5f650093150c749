import ArgumentParser

/// `probattn bench`: benchmarks. Each benchmark is a subcommand in its own file; add one line below.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the attention kernel, the daemon's latency.",
        subcommands: benchSubcommands)
}

/// Every subcommand of `probattn bench`, one line each.
let benchSubcommands: [ParsableCommand.Type] = [
    BenchKernelCommand.self,
    BenchLatencyCommand.self,
]
