import ArgumentParser
import ProbattnPluginHost

/// `probattn plugins [--plugin-dir DIR]`: loads the attention plugins of a folder and prints every variant (name,
/// file, ABI version, summary, options with defaults), then one line per file that failed to load.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the attention variants the plugin folder provides, and the plugin files that failed to load.")

    @Option(name: .customLong("plugin-dir"),
            help: "The plugin folder (default: $PROBATTN_PLUGIN_DIR, else the executable's folder when it holds libprobattn-*.so, else /usr/lib/probattn/plugins).")
    var pluginDirectory: String?

    func run() throws {
        let registry = PluginRegistry.load(directory: pluginDirectory ?? PluginRegistry.defaultDirectory())
        print(registry.listing(), terminator: "")
    }
}
