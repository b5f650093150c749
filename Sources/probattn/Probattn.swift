import ArgumentParser

/// `probattn`: the command-line tool: runs the attention operator on reference cases, lists plugins, segments images
/// through a running daemon, evaluates on the standard benchmarks, benchmarks the kernel and the daemon, and makes
/// the keys of a secured daemon.
/// Each subcommand lives in its own file in this folder. (This file is not named main.swift: a main.swift is
/// top-level code once the target has a second file, and @main is not allowed beside top-level code.)
@main
struct Probattn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probattn",
        abstract: "Probabilistic-attention interactive segmentation: tools and client.",
        subcommands: probattnSubcommands)
}

/// Every subcommand of `probattn`, one line each.
let probattnSubcommands: [ParsableCommand.Type] = [
    AttendCommand.self,
    BenchCommand.self,
    PluginsCommand.self,
    EvalCommand.self,
    EvalPlotCommand.self,
    KeysCommand.self,
    SegmentCommand.self,
]
