import Foundation
import ProbattnDaemon
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnStages
import Testing
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation

/// `probattnd validate` end to end (the built binary) and `DaemonConfig.validate(plugins:)` against the plugins of
/// the build.
@Suite struct ValidateCommandTests {
    private static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The folder of the build products (the test runner lives next to `probattnd` and the plugins).
    static func productsFolder() throws -> URL {
        let runner = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var folder = URL(fileURLWithPath: runner).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("probattnd").path),
              folder.path != "/" {
            folder = folder.deletingLastPathComponent()
        }
        return folder
    }

    /// Runs `probattnd validate --config FILE`; returns the exit status, stdout and stderr.
    private func runValidate(_ yaml: String) throws -> (status: Int32, out: String, err: String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("probattnd-\(UUID()).yaml")
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = try Self.productsFolder().appendingPathComponent("probattnd")
        process.arguments = ["validate", "--config", file.path]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outText = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, outText, errText.replacingOccurrences(of: file.path, with: "FILE"))
    }

    private static let softmaxPipeline = """
        pipeline:
          - {role: encoder, type: grid_features}
          - {role: adapter, type: attention, options: {variant: softmax}}
          - {role: propagator, type: belief_propagation}
        """

    @Test func aGoodConfigPrintsOneOKLineAndExitsZero() throws {
        let result = try runValidate(Self.softmaxPipeline)
        #expect(result.status == 0, "stderr: \(result.err)")
        let lines = result.out.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("OK ") == true)
        #expect(result.out.contains("adapter=attention"))
    }

    @Test func aStrictDecodingErrorExitsOneWithTheMessage() throws {
        let result = try runValidate("limits:\n  max_frame: 4\n")
        #expect(result.status == 1)
        #expect(result.out.isEmpty)
        #expect(result.err.hasSuffix("probattnd validate: FILE: unknown key 'max_frame' at limits.max_frame (line 2); valid keys in limits: max_image_pixels, working_pixels, max_message_bytes, max_frames, queue_depth_per_image, max_pending_requests, cache_memory_mb, cache_memory_bytes\n"))
    }

    @Test func anAttentionVariantThatIsNotLoadedIsRefusedWithTheLoadedNames() throws {
        let result = try runValidate(Self.softmaxPipeline.replacingOccurrences(of: "softmax", with: "softmx"))
        #expect(result.status == 1)
        let last = result.err.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("probattnd validate: FILE: pipeline[1]: "))
        #expect(last.contains("softmx"))
        #expect(last.contains("softmax"))
    }

    @Test func everyShippedFileValidatesAgainstTheBuiltPlugins() throws {
        let plugins = PluginRegistry.load(directory: try Self.productsFolder().path)
        for folder in ["Config", "Config/examples"] {
            let url = Self.repositoryRoot.appendingPathComponent(folder)
            for name in try FileManager.default.contentsOfDirectory(atPath: url.path) where name.hasSuffix(".yaml") {
                let config = try DaemonConfig.load(path: url.appendingPathComponent(name).path)
                #expect(throws: Never.self, "\(folder)/\(name)") { try config.validate(plugins: plugins) }
            }
        }
    }

    /// Configs that would fail at the first click are refused by validate, with one line naming the option; the
    /// rules come from the variants' descriptors (capabilities, validate_options), not from their names.
    @Test func configsThatWouldFailAtTheFirstClickAreRefused() throws {
        let plugins = PluginRegistry.load(directory: try Self.productsFolder().path)
        func adapter(_ options: [String: ConfigValue]) -> DaemonConfig {
            var config = DaemonConfig()
            config.pipeline[1].options = options
            return config
        }
        let refused: [([String: ConfigValue], String)] = [
            (["variant": .string("softmax"), "unit_stride": .int(2)], "'unit_stride' = 2"),
            (["variant": .mapping(["type": .string("softmax")]), "unit_stride": .int(2)], "'unit_stride' = 2"),
            (["variant": .mapping(["type": .string("neighborhood"), "kernel_size": .int(4)])],
             "'kernel_size' must be an odd number"),
            (["variant": .string("neighborhood"), "kernel_size": .int(4)], "'kernel_size' must be an odd number"),
        ]
        for (options, expected) in refused {
            do {
                try adapter(options).validate(plugins: plugins)
                Issue.record("\(options) passed validate")
            } catch let error as ConfigError {
                #expect(error.path == "pipeline[1]")
                #expect(error.message.contains(expected), "\(error.message)")
                #expect(!error.message.contains("\n"))
            }
        }
        for options: [String: ConfigValue] in [["variant": .string("softmax"), "unit_stride": .int(1)],
                                               ["variant": .string("softmax")],
                                               ["variant": .string("neighborhood"), "kernel_size": .int(5)]] {
            #expect(throws: Never.self, "\(options)") { try adapter(options).validate(plugins: plugins) }
        }
        // And through the binary, as an operator runs it.
        let (status, _, err) = try runValidate("""
            pipeline:
              - {role: encoder, type: grid_features}
              - {role: adapter, type: attention, options: {variant: softmax, unit_stride: 2}}
              - {role: propagator, type: belief_propagation}
            """)
        #expect(status == 1)
        #expect(err.split(separator: "\n").count == 1 && err.contains("unit_stride"), "\(err)")
    }

    @Test func stageOptionsAndVariantsAreCheckedAgainstTheRegistry() throws {
        let plugins = PluginRegistry.load(directory: try Self.productsFolder().path)
        var config = DaemonConfig()
        config.pipeline[0].options["strid"] = .int(4)
        do {
            try config.validate(plugins: plugins)
            Issue.record("an unknown encoder option passed")
        } catch let error as ConfigError {
            #expect(error.code == .unknownKey)
            #expect(error.path == "pipeline[0]")
            #expect(error.message.hasPrefix("pipeline[0]: encoder 'grid_features': unknown option 'strid'; valid options: "))
            #expect(!error.message.contains("\n"))
        }

        config = DaemonConfig()
        config.pipeline[1].options["variant"] = .string("nonexistent")
        do {
            try config.validate(plugins: plugins)
            Issue.record("an unloaded variant passed")
        } catch let error as ConfigError {
            #expect(error.code == .unknownStageType)
            #expect(error.path == "pipeline[1]")
            #expect(error.message.contains("nonexistent"))
            #expect(error.message.contains("probabilistic"))
        }

        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-noplugins-\(UUID())")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(throws: ConfigError.self) { try DaemonConfig().validate(plugins: PluginRegistry.load(directory: empty.path)) }
    }
}
