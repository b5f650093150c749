import ArgumentParser
import ProbattnPluginHost

/// `probattnd plugins [--plugin-dir DIR]`: lists the attention variants the daemon would load (name, file, ABI
/// version, summary, options with defaults) and one line per plugin file that failed to load.
struct DaemonPluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the attention variants of the plugin folder, and the plugin files that failed to load.")

    @Option(name: .customLong("plugin-dir"),
            help: "The plugin folder (default: $PROBATTN_PLUGIN_DIR, else the executable's folder when it holds plugins, else /usr/lib/probattn/plugins).")
    var pluginDirectory: String?

    func run() throws {
        let registry = PluginRegistry.load(directory: pluginDirectory ?? PluginRegistry.defaultDirectory())
        print(registry.listing(), terminator: "")
    }
}
