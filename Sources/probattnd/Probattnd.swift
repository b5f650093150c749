import ArgumentParser

/// `probattnd`: the daemon. Subcommands: `run`, `validate`, `plugins`; each lives in its own file in this folder.
@main
struct Probattnd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probattnd",
        abstract: "The probattn interactive-segmentation daemon.",
        subcommands: probattndSubcommands)
}

/// Every subcommand of `probattnd`, one line each.
let probattndSubcommands: [ParsableCommand.Type] = [
    ValidateCommand.self,
    RunCommand.self,
    DaemonPluginsCommand.self,
]
