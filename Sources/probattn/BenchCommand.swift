import ArgumentParser

/// `probattn bench`: benchmarks. Each subcommand lives in its own file (`Bench<Name>Command.swift`).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the attention kernel and a running daemon's per-click latency.",
        subcommands: benchSubcommands)
}

/// Every subcommand of `probattn bench`, one line each.
let benchSubcommands: [ParsableCommand.Type] = [
    BenchLatencyCommand.self,
]
