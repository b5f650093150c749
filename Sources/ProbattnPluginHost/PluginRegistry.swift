// The registry of attention variants loaded from a plugin folder, and the listing `plugins` commands print.

import CProbattnPlugin
import Foundation

/// A plugin file that could not be loaded (or one of whose variants was refused), with the reason.
public struct PluginLoadFailure: Error, Sendable, CustomStringConvertible {
    /// The file name inside the plugin folder (or the folder itself when it cannot be read).
    public let file: String
    /// One line: "not a shared object (…)", "missing entry symbols: …", "ABI version N, host speaks A to B",
    /// "variant name 'x' already registered by FILE", …
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

/// The attention variants of one plugin folder. Loading never throws: each file that fails becomes a
/// `PluginLoadFailure` and the other files still load. Plugins stay loaded for the life of the process.
public final class PluginRegistry: Sendable {
    /// The ABI version this host speaks (PROBATTN_PLUGIN_ABI_VERSION of the header it was compiled with).
    public static let hostABIVersion: UInt32 = UInt32(PROBATTN_PLUGIN_ABI_VERSION)
    /// The plugin ABI versions this host loads: every version from PROBATTN_PLUGIN_ABI_OLDEST_SUPPORTED to its own
    /// (later versions only append fields that older plugins never touch; see probattn_plugin.h).
    public static let supportedABIVersions: ClosedRange<UInt32> =
        UInt32(PROBATTN_PLUGIN_ABI_OLDEST_SUPPORTED)...hostABIVersion
    /// "1 to 2" (or "2" when only one version is supported), for messages.
    static var supportedABIVersionsText: String {
        supportedABIVersions.count == 1 ? "\(hostABIVersion)"
            : "\(supportedABIVersions.lowerBound) to \(supportedABIVersions.upperBound)"
    }
    /// The folder an installed daemon loads plugins from.
    public static let installedDirectory = "/usr/lib/probattn/plugins"
    /// The environment variable that overrides the plugin folder.
    public static let directoryEnvironmentVariable = "PROBATTN_PLUGIN_DIR"

    /// The folder the plugins were loaded from, as given.
    public let directory: String
    /// Every variant loaded, sorted by name.
    public let variants: [AttentionVariant]
    /// One entry per file that failed (or had a variant refused), in file order.
    public let failures: [PluginLoadFailure]

    private init(directory: String, variants: [AttentionVariant], failures: [PluginLoadFailure]) {
        self.directory = directory
        self.variants = variants.sorted { $0.name < $1.name }
        self.failures = failures
    }

    /// Loads every `*.so` file of `directory`, in file-name order. When two files register the same variant name,
    /// the first file (in that order) keeps it and the second is reported. Loading the same folder again in the same
    /// process gives the same variants (each library is opened and registered once per process).
    ///
    /// Only trusted files are opened (`PluginTrust`): the folder and each file must be owned by root or the
    /// effective user and not be writable by group or others, and a symlink must resolve inside the folder. An
    /// untrusted folder loads nothing; an untrusted file is refused before `dlopen`, so its constructors never run.
    public static func load(directory: String) -> PluginRegistry {
        let folder: String
        switch PluginTrust.checkFolder(directory) {
        case .failure(let failure):
            return PluginRegistry(directory: directory, variants: [], failures: [failure])
        case .success(let real):
            folder = real
        }
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: folder)
                .filter { $0.hasSuffix(".so") }
                .sorted()
        } catch {
            let reason = FileManager.default.fileExists(atPath: directory)
                ? "cannot read the plugin folder" : "the plugin folder does not exist"
            return PluginRegistry(directory: directory, variants: [],
                                  failures: [PluginLoadFailure(file: directory, reason: reason)])
        }
        var variants: [AttentionVariant] = []
        var owner: [String: String] = [:]  // variant name -> file that registered it
        var failures: [PluginLoadFailure] = []
        for file in files {
            let path: String
            switch PluginTrust.checkFile(file, inFolder: folder) {
            case .failure(let failure):
                failures.append(failure)
                continue
            case .success(let real):
                path = real
            }
            switch LoadedLibraries.shared.load(path: path) {
            case .failure(let reason):
                failures.append(PluginLoadFailure(file: file, reason: reason))
            case .success(let library):
                var problems = library.refusals
                for registered in library.variants {
                    if let other = owner[registered.name] {
                        problems.append("variant name '\(registered.name)' already registered by \(other)")
                        continue
                    }
                    owner[registered.name] = file
                    variants.append(registered.variant(file: file, abiVersion: library.abiVersion))
                }
                if !problems.isEmpty {
                    failures.append(PluginLoadFailure(file: file, reason: problems.joined(separator: "; ")))
                }
            }
        }
        return PluginRegistry(directory: directory, variants: variants, failures: failures)
    }

    /// The folder to load plugins from: `PROBATTN_PLUGIN_DIR` when set; else the folder of the running executable
    /// when it holds `libprobattn-*.so` files (the build's products: `swift run`, tests); else
    /// `/usr/lib/probattn/plugins`.
    public static func defaultDirectory() -> String {
        if let fromEnvironment = ProcessInfo.processInfo.environment[directoryEnvironmentVariable],
           !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        if let executableFolder = executableDirectory(),
           let names = try? FileManager.default.contentsOfDirectory(atPath: executableFolder),
           names.contains(where: { $0.hasPrefix("libprobattn-") && $0.hasSuffix(".so") }) {
            return executableFolder
        }
        return installedDirectory
    }

    /// The folder of the running executable (`/proc/self/exe` resolved), nil when it cannot be read.
    public static func executableDirectory() -> String? {
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            return nil
        }
        return (executable as NSString).deletingLastPathComponent
    }

    /// The names of the loaded variants, sorted.
    public var variantNames: [String] { variants.map(\.name) }

    /// The variant called `name`. An unknown name throws `PluginHostError.unknownVariant`, whose message lists the
    /// loaded names.
    public func variant(named name: String) throws -> AttentionVariant {
        guard let found = variants.first(where: { $0.name == name }) else {
            throw PluginHostError.unknownVariant(name: name, loaded: variantNames, directory: directory)
        }
        return found
    }

    /// The listing printed by `plugins` commands: the folder, then per variant its name, file, ABI version, summary,
    /// requirements and options (type, default, meaning); then one line per failed file.
    public func listing() -> String {
        var lines: [String] = []
        let plural = variants.count == 1 ? "variant" : "variants"
        lines.append("Plugin folder: \(directory) (host ABI version \(Self.hostABIVersion))")
        lines.append("\(variants.count) attention \(plural) loaded, \(failures.count) failed file(s)")
        for variant in variants {
            lines.append("")
            lines.append("\(variant.name)  [\(variant.file), ABI \(variant.abiVersion)]")
            lines.append("  \(variant.summary)")
            var needs: [String] = []
            if variant.needsGrid { needs.append("token grid") }
            if variant.needsUnitsEqualTokens { needs.append("units == tokens") }
            if !needs.isEmpty { lines.append("  needs: " + needs.joined(separator: ", ")) }
            if variant.options.isEmpty {
                lines.append("  options: none")
            } else {
                lines.append("  options:")
                let nameWidth = variant.options.map(\.name.count).max() ?? 0
                let defaultWidth = variant.options.map { $0.defaultValue.count }.max() ?? 0
                for option in variant.options {
                    let name = option.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                    let type = option.type.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
                    let value = option.defaultValue.padding(toLength: defaultWidth, withPad: " ", startingAt: 0)
                    lines.append("    \(name)  \(type)  default \(value)  \(option.meaning)")
                }
            }
        }
        if !failures.isEmpty {
            lines.append("")
            lines.append("Failed:")
            for failure in failures { lines.append("  \(failure)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
