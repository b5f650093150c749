import ArgumentParser
import ProbattnPluginHost

/// `--plugin-dir DIR`, shared by every command that loads the attention plugins.
public struct PluginFolderOption: ParsableArguments {
    @Option(name: .customLong("plugin-dir"),
            help: "The plugin folder (default: $PROBATTN_PLUGIN_DIR, else the executable's folder when it holds libprobattn-*.so, else /usr/lib/probattn/plugins).")
    public var pluginDirectory: String?

    public init() {}

    /// Loads every plugin of the folder (failures are listed in the registry, not thrown).
    public func loadRegistry() -> PluginRegistry {
        PluginRegistry.load(directory: pluginDirectory ?? PluginRegistry.defaultDirectory())
    }
}

/// `plugins`, the same in both executables: prints every variant of the plugin folder (name, file, ABI version,
/// summary, options with defaults), then one line per file that failed to load. `probattn plugins` adds a benchmark.
public enum PluginListingCommand {
    public static let abstract = "List the attention variants the plugin folder provides, and the plugin files that failed to load."

    /// Prints the listing; returns the registry for whatever the command does next.
    @discardableResult
    public static func printListing(_ folder: PluginFolderOption) -> PluginRegistry {
        let registry = folder.loadRegistry()
        print(registry.listing(), terminator: "")
        return registry
    }
}
