// The loader: bad plugin files each give one clear line and do not stop the others; options are strict; the
// built plugins (five in Swift, one in C) all load from the build's products.

import Foundation
import ProbattnPluginHost
import Testing

/// A valid C plugin registering `name` (with options of every type), used to build duplicates and test option passing.
/// Its attend writes [int, float, bool, length of string] into the first token's values, and fails with the
/// string as its message when the string option starts with "fail".
private func optionEchoPlugin(variant name: String, abiVersion: String = "PROBATTN_PLUGIN_ABI_VERSION") -> String {
    """
    #include <stdio.h>
    #include <string.h>
    #include "probattn_plugin.h"
    const uint32_t probattn_plugin_abi_version = \(abiVersion);
    static const probattn_option_spec specs[] = {
        {"count", PROBATTN_OPTION_INT, "3", "an int"},
        {"weight", PROBATTN_OPTION_FLOAT, "0.25", "a float"},
        {"enabled", PROBATTN_OPTION_BOOL, "false", "a bool"},
        {"mode", PROBATTN_OPTION_STRING, "plain", "a string"},
    };
    static int32_t attend(const probattn_attend_input *in, probattn_attend_output *out) {
        if (in->option_count != 4) { snprintf(out->error, sizeof out->error, "got %lld options", (long long)in->option_count); return 2; }
        const char *mode = in->options[3].string_value;
        if (strncmp(mode, "fail", 4) == 0) { snprintf(out->error, sizeof out->error, "%s", mode); return 1; }
        for (int64_t k = 0; k < in->tokens * in->value_channels; k++) out->token_values[k] = 0;
        out->token_values[0] = (float)in->options[0].int_value;
        out->token_values[1] = (float)in->options[1].float_value;
        out->token_values[2] = (float)in->options[2].int_value;
        out->token_values[3] = (float)strlen(mode);
        return 0;
    }
    static const probattn_variant variant = {"\(name)", "echoes its options", specs, 4, 0, attend};
    int32_t probattn_plugin_register(const probattn_registrar *r) { r->register_variant(r->host, &variant); return 0; }
    """
}

/// One token, one unit, 2 channels, 4 value channels: enough for the echo plugin.
private let echoInput = AttentionInput(tokens: 1, units: 1, channels: 2, valueChannels: 4,
                                       queries: [0, 0], keys: [0, 0], values: [0, 0, 0, 0])

@Suite struct LoaderTests {
    @Test func builtProductsListAllSixVariants() throws {
        #expect(builtPlugins.failures.isEmpty, "\(builtPlugins.failures)")
        #expect(builtPlugins.variantNames == ["context_pool", "neighborhood", "probabilistic", "sigmoid",
                                              "softmax", "uniform"])
        let listing = builtPlugins.listing()
        for variant in builtPlugins.variants {
            #expect(listing.contains("\(variant.name)  [\(variant.file), ABI \(PluginRegistry.hostABIVersion)]"))
            #expect(!variant.summary.isEmpty)
            for option in variant.options {
                #expect(listing.contains(option.name) && listing.contains(option.meaning))
            }
        }
        #expect(try builtPlugins.variant(named: "uniform").file == "libprobattn-uniform.so")
        #expect(try builtPlugins.variant(named: "softmax").file == "libprobattn-softmax.so")
    }

    /// ABI 2 only appended output fields, so a plugin built for ABI 1 still loads, and the host never hands it the
    /// ABI-2 weights buffer (this plugin fails the call if it sees one).
    @Test func aVersionOnePluginStillLoadsAndIsNeverAskedForWeights() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = """
            #include <stdio.h>
            #include "probattn_plugin.h"
            const uint32_t probattn_plugin_abi_version = 1u;
            static int32_t attend(const probattn_attend_input *in, probattn_attend_output *out) {
                if (out->weights != NULL) { snprintf(out->error, sizeof out->error, "got a weights buffer"); return 1; }
                for (int64_t k = 0; k < in->tokens * in->value_channels; k++) out->token_values[k] = 7;
                return 0;
            }
            static const probattn_variant variant = {"old_variant", "built for ABI 1", NULL, 0, 0, attend};
            int32_t probattn_plugin_register(const probattn_registrar *r) { return r->register_variant(r->host, &variant); }
            """
        try compileSharedObject(source, named: "old.so", in: folder)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.failures.isEmpty, "\(registry.failures)")
        let variant = try registry.variant(named: "old_variant")
        #expect(variant.abiVersion == 1)
        var input = echoInput
        input.wantsWeights = true
        let output = try variant.attend(input, options: try variant.resolveOptions([:]))
        #expect(output.tokenValues == [7, 7, 7, 7])
        #expect(output.weights == nil)
    }

    /// ABI 3 descriptors say what a variant is; an older plugin cannot, whatever bytes follow its struct, and is read
    /// as: propagation needs M = H, dot product, no W, no option checks.
    @Test func capabilitiesComeFromVersionThreeDescriptorsOnly() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        func source(version: String, name: String) -> String {
            """
            #include <stdio.h>
            #include "probattn_plugin.h"
            const uint32_t probattn_plugin_abi_version = \(version);
            static const probattn_option_spec options[] = {{"width", PROBATTN_OPTION_INT, "3", "odd width"}};
            static int32_t attend(const probattn_attend_input *in, probattn_attend_output *out) { return 0; }
            static int32_t check(const probattn_option_value *o, int64_t n, char *error, int64_t capacity) {
                for (int64_t i = 0; i < n; i++) if (o[i].int_value % 2 == 0) {
                    snprintf(error, (size_t)capacity, "option 'width' must be odd, got %lld", (long long)o[i].int_value);
                    return 1;
                }
                return 0;
            }
            static const probattn_variant variant = {"\(name)", "capabilities", options, 1, 0, attend,
                PROBATTN_COMPARES_BY_DISTANCE | PROBATTN_GIVES_WEIGHTS, check};
            int32_t probattn_plugin_register(const probattn_registrar *r) { return r->register_variant(r->host, &variant); }
            """
        }
        try compileSharedObject(source(version: "3u", name: "new_variant"), named: "new.so", in: folder)
        try compileSharedObject(source(version: "2u", name: "old_variant"), named: "old.so", in: folder)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.failures.isEmpty, "\(registry.failures)")
        let new = try registry.variant(named: "new_variant"), old = try registry.variant(named: "old_variant")
        #expect(new.capabilities == VariantCapabilities(propagationNeedsUnitsEqualTokens: false,
                                                        comparesByDistance: true, givesWeights: true))
        #expect(new.validatesOptions)
        #expect(throws: Never.self) { try new.validateOptions(try new.resolveOptions(["width": .int(5)])) }
        do {
            try new.validateOptions(try new.resolveOptions(["width": .int(4)]))
            Issue.record("an even width passed the plugin's check")
        } catch let error as PluginHostError {
            #expect(error.description == "attention variant 'new_variant': option 'width' must be odd, got 4")
        }
        #expect(old.capabilities == .legacy, "an ABI 2 plugin's trailing bytes are not read")
        #expect(!old.validatesOptions)
        #expect(throws: Never.self) { try old.validateOptions(try old.resolveOptions(["width": .int(4)])) }
    }

    @Test func theBuiltVariantsDescribeThemselves() throws {
        let probabilistic = try builtPlugins.variant(named: "probabilistic").capabilities
        #expect(probabilistic.comparesByDistance && probabilistic.givesWeights
                && !probabilistic.propagationNeedsUnitsEqualTokens)
        for name in ["softmax", "sigmoid", "neighborhood", "context_pool"] {
            let c = try builtPlugins.variant(named: name).capabilities
            #expect(c.propagationNeedsUnitsEqualTokens && !c.comparesByDistance && !c.givesWeights, "\(name)")
        }
    }

    @Test func loadingTheSameFolderTwiceGivesTheSameVariants() {
        let again = PluginRegistry.load(directory: productsDirectory)
        #expect(again.failures.isEmpty, "\(again.failures)")
        #expect(again.variantNames == builtPlugins.variantNames)
    }

    @Test func eachBadPluginKindGivesOneClearLineAndTheOthersStillLoad() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        // A text file named like a plugin.
        try "this is not a library\n".write(to: folder.appendingPathComponent("x.so"), atomically: true,
                                            encoding: .utf8)
        // A real shared object without the entry symbols.
        try compileSharedObject("int add_one(int x) { return x + 1; }\n", named: "nosymbols.so", in: folder)
        // A plugin built against another ABI version.
        try compileSharedObject(optionEchoPlugin(variant: "future_variant", abiVersion: "99u"),
                                named: "future.so", in: folder)
        // Two plugins registering the same name: the first file in name order keeps it.
        try compileSharedObject(optionEchoPlugin(variant: "echo_options"), named: "a_echo.so", in: folder)
        try compileSharedObject(optionEchoPlugin(variant: "echo_options"), named: "b_echo.so", in: folder)
        // A copy of the C example plugin: it must still load beside the bad files.
        try FileManager.default.copyItem(
            atPath: (productsDirectory as NSString).appendingPathComponent("libprobattn-uniform.so"),
            toPath: folder.appendingPathComponent("libprobattn-uniform.so").path)

        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.variantNames == ["echo_options", "uniform"])
        #expect(try registry.variant(named: "echo_options").file == "a_echo.so")
        let reasons = Dictionary(uniqueKeysWithValues: registry.failures.map { ($0.file, $0.reason) })
        #expect(reasons.count == 4, "\(registry.failures)")
        #expect(reasons["x.so"]?.hasPrefix("not a shared object") == true, "\(reasons)")
        #expect(reasons["nosymbols.so"] == "missing entry symbols: probattn_plugin_abi_version, "
                + "probattn_plugin_register (not a probattn plugin)")
        #expect(reasons["future.so"]?.hasPrefix("ABI version 99, host speaks 1 to \(PluginRegistry.hostABIVersion)")
                == true, "\(reasons)")
        #expect(reasons["b_echo.so"] == "variant name 'echo_options' already registered by a_echo.so")

        // The listing shows the loaded variants and one line per failed file.
        let listing = registry.listing()
        #expect(listing.contains("echo_options  [a_echo.so, ABI \(PluginRegistry.hostABIVersion)]"))
        for failure in registry.failures {
            #expect(listing.components(separatedBy: "\n").filter { $0.contains(failure.file + ":") }.count == 1)
        }
        // Loading the folder again: same result, the same file registering again is not a duplicate.
        let again = PluginRegistry.load(directory: folder.path)
        #expect(again.variantNames == registry.variantNames)
        #expect(again.failures.map(\.description) == registry.failures.map(\.description))
    }

    @Test func aMissingFolderIsOneFailure() {
        let registry = PluginRegistry.load(directory: "/nonexistent/probattn/plugins")
        #expect(registry.variants.isEmpty)
        #expect(registry.failures.map(\.reason) == ["the plugin folder does not exist"])
    }

    @Test func anUnknownVariantNameListsTheLoadedNames() {
        do {
            _ = try builtPlugins.variant(named: "linear")
            Issue.record("expected an error")
        } catch {
            let message = "\(error)"
            #expect(message.contains("unknown attention variant 'linear'"))
            #expect(message.contains("context_pool, neighborhood, probabilistic, sigmoid, softmax, uniform"))
        }
    }

    @Test func optionsAreStrictTypedAndReachThePlugin() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try compileSharedObject(optionEchoPlugin(variant: "option_echo"), named: "echo.so", in: folder)
        let variant = try PluginRegistry.load(directory: folder.path).variant(named: "option_echo")

        let defaults = try variant.resolveOptions([:])
        #expect(defaults["count"] == .int(3) && defaults["weight"] == .float(0.25))
        #expect(defaults["enabled"] == .bool(false) && defaults["mode"] == .string("plain"))
        #expect(try variant.attend(echoInput, options: defaults).tokenValues == [3, 0.25, 0, 5])

        let given = try variant.resolveOptions(["count": .int(7), "weight": .int(2), "enabled": .bool(true),
                                                "mode": .string("ab")])
        #expect(given["weight"] == .float(2))  // an int is accepted for a float
        #expect(try variant.attend(echoInput, options: given).tokenValues == [7, 2, 1, 2])

        #expect(throws: PluginHostError.unknownOption(variant: "option_echo", option: "colour",
                                                      valid: ["count", "weight", "enabled", "mode"])) {
            try variant.resolveOptions(["colour": .string("red")])
        }
        do {
            _ = try variant.resolveOptions(["count": .float(1.5)])
            Issue.record("expected a type error")
        } catch {
            #expect("\(error)" == "option 'count' of attention variant 'option_echo' must be int, got float 1.5")
        }
        #expect(throws: PluginHostError.self) { try variant.resolveOptions(["enabled": .int(1)]) }

        // The plugin's error text reaches the caller.
        let failing = try variant.resolveOptions(["mode": .string("fail: no such mode")])
        #expect(throws: PluginHostError.pluginFailed(variant: "option_echo", message: "fail: no such mode")) {
            try variant.attend(echoInput, options: failing)
        }
    }

    @Test func badInputsAreRefusedBeforeThePluginRuns() throws {
        let softmax = try builtPlugins.variant(named: "softmax")
        let neighborhood = try builtPlugins.variant(named: "neighborhood")
        let options = try softmax.resolveOptions([:])
        var input = AttentionInput(tokens: 4, units: 4, channels: 2, valueChannels: 2,
                                   queries: [Float](repeating: 0.5, count: 8), keys: [Float](repeating: 0, count: 8),
                                   values: [Float](repeating: 1, count: 8))
        #expect(throws: Never.self) { try softmax.attend(input, options: options) }
        func expectInvalid(_ input: AttentionInput, _ variant: AttentionVariant, _ fragment: String) {
            do {
                _ = try variant.attend(input, options: try variant.resolveOptions([:]))
                Issue.record("expected invalid input: \(fragment)")
            } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
        var short = input
        short.keys.removeLast()
        expectInvalid(short, softmax, "keys has 7 elements, expected 4×2 = 8")
        var nan = input
        nan.queries[3] = .nan
        expectInvalid(nan, softmax, "queries contains NaN")
        var badGrid = input
        badGrid.gridRows = 3
        badGrid.gridCols = 2
        expectInvalid(badGrid, softmax, "grid 3×2 does not hold the 4 tokens")
        expectInvalid(input, neighborhood, "needs the token grid")
        input.gridRows = 2
        input.gridCols = 2
        var fewerUnits = input
        fewerUnits.units = 2
        fewerUnits.keys = [0, 0, 0, 0]
        fewerUnits.values = [1, 1, 1, 1]
        expectInvalid(fewerUnits, neighborhood, "needs as many units as tokens")
        var badWeight = input
        badWeight.fixed = [Float](repeating: 0, count: 12)
        badWeight.fixed?[2] = 2
        expectInvalid(badWeight, softmax, "fixed indicator of token 0 is 2.0")
        #expect(throws: PluginHostError.self) {
            try softmax.attend(input, options: try neighborhood.resolveOptions([:]))
        }
    }
}

/// The built `probattn` executable beside the test binary.
private let probattnExecutable = (productsDirectory as NSString).appendingPathComponent("probattn")

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: probattnExecutable), "probattn not built"))
struct PluginsCommandTests {
    @Test func probattnPluginsPrintsTheListingOfTheGivenFolder() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try "not a library".write(to: folder.appendingPathComponent("broken.so"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(
            atPath: (productsDirectory as NSString).appendingPathComponent("libprobattn-softmax.so"),
            toPath: folder.appendingPathComponent("libprobattn-softmax.so").path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: probattnExecutable)
        process.arguments = ["plugins", "--plugin-dir", folder.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(text.contains("1 attention variant loaded, 1 failed file(s)"), "\(text)")
        #expect(text.contains("softmax  [libprobattn-softmax.so, ABI \(PluginRegistry.hostABIVersion)]"))
        #expect(text.contains("    scale       float   default 0   logit scale; 0 means 1/sqrt(channels)"), "\(text)")
        #expect(text.contains("  broken.so: not a shared object ("))
    }
}
