import ArgumentParser
import Foundation
import ProbattnConfig
import ProbattnDaemon
import ProbattnPluginHost

/// `probattnd validate --config FILE`: decodes the config strictly and runs every check that needs no resources
/// (endpoint syntax, limits, the pipeline's shape, stage types and options against the loaded plugins, `security`:
/// an open daemon only on local endpoints, the server key and every client key readable and well-formed). Opens no
/// socket and no store. systemd runs it before every start and reload (`ExecStartPre=`, `ExecReload=`), so a broken
/// file never replaces a running config. Prints one `OK` line on success; on error prints the one-line reason on
/// stderr and exits 1.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a config file without starting the daemon (exit status 1 and the reason on error).")

    @Option(name: .long, help: ArgumentHelp("The YAML config file to check.", valueName: "file"))
    var config: String

    @Option(name: .customLong("plugin-dir"),
            help: ArgumentHelp("Plugin folder to check stage types against (default: the config's plugin_dir, else the default discovery).",
                               valueName: "dir"))
    var pluginDirectory: String?

    func run() throws {
        let standardError = FileHandle.standardError
        func fail(_ message: String) -> ExitCode {
            standardError.write(Data("probattnd validate: \(message)\n".utf8))
            return ExitCode(1)
        }
        let daemonConfig: DaemonConfig
        do {
            daemonConfig = try DaemonConfig.load(path: config)
        } catch {
            throw fail("\(error)")
        }
        let directory = pluginDirectory ?? daemonConfig.pluginDirectory ?? PluginRegistry.defaultDirectory()
        let plugins = PluginRegistry.load(directory: directory)
        for failure in plugins.failures {
            standardError.write(Data("probattnd validate: warning: plugin \(failure)\n".utf8))
        }
        do {
            try daemonConfig.validate(plugins: plugins, writers: DaemonStages.writers)
        } catch {
            throw fail("\(config): \(error)")
        }
        for deprecation in daemonConfig.deprecations {
            standardError.write(Data("probattnd validate: warning: \(config): \(deprecation)\n".utf8))
        }
        let security: String
        do {
            security = try SecurityCheck.check(daemonConfig.security)
        } catch {
            throw fail("\(config): security: \(error)")
        }
        let stages = daemonConfig.pipeline.map { "\($0.role.rawValue)=\($0.type)" }.joined(separator: " → ")
        print("OK \(config): requests \(daemonConfig.endpoints.requests), results \(daemonConfig.endpoints.results), "
              + "pipeline \(stages), \(plugins.variants.count) attention variants from \(directory), "
              + "store \(daemonConfig.store.resolvedPath()), security \(security)")
    }
}
