import ArgumentParser
import ProbattnCommandLine

/// `probattnd plugins [--plugin-dir DIR]`: lists the attention variants the daemon would load.
struct DaemonPluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plugins", abstract: PluginListingCommand.abstract)

    @OptionGroup var folder: PluginFolderOption

    func run() throws { PluginListingCommand.printListing(folder) }
}
