import Foundation
import Logging
import ProbattnSegmentation
import ProbattnStages
import Testing
import ProbattnDaemon
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation
import ProbattnImaging

/// The repository root, found from this file's path (Tests/DaemonTests/ConfigTests.swift).
private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Every YAML file shipped in Config/ and Config/examples/.
private func shippedConfigFiles() throws -> [String] {
    var files: [String] = []
    for folder in ["Config", "Config/examples"] {
        let url = repositoryRoot.appendingPathComponent(folder)
        let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
        files += names.filter { $0.hasSuffix(".yaml") }.sorted().map { url.appendingPathComponent($0).path }
    }
    return files
}

/// What `probattnd validate` runs, minus the plugin folder (checked in ValidateCommandTests).
private func validateConfig(_ config: DaemonConfig) throws {
    try config.validate(plugins: nil, writers: DaemonStages.writers)
}

/// Decodes `yaml`, expecting a `ConfigError`, and returns it.
private func decodeError(_ yaml: String) -> ConfigError? {
    do {
        _ = try DaemonConfig.decode(yaml: yaml)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

/// Runs the config's validation, expecting a `ConfigError`, and returns it.
private func validationError(_ config: DaemonConfig) -> ConfigError? {
    do {
        try validateConfig(config)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

@Suite struct ShippedConfigFiles {
    @Test func everyShippedFileDecodesAndValidates() throws {
        let files = try shippedConfigFiles()
        // The default plus one example per attention variant.
        #expect(files.count >= 7)
        for file in files {
            let config = try DaemonConfig.load(path: file)
            try validateConfig(config)
        }
    }

    @Test func thereIsOneExamplePerAttentionVariant() throws {
        let variants = ["probabilistic", "softmax", "sigmoid", "neighborhood", "context_pool", "uniform"]
        for variant in variants {
            let path = repositoryRoot.appendingPathComponent("Config/examples/\(variant).yaml").path
            let config = try DaemonConfig.load(path: path)
            let adapter = config.pipeline.first { $0.role == .adapter }
            #expect(adapter?.type == "attention")
            guard case .mapping(let nested)? = adapter?.options["variant"] else {
                Issue.record("\(variant).yaml: the adapter's variant is not in the nested form")
                continue
            }
            #expect(nested["type"] == .string(variant))
        }
    }

    /// `Config/examples/probabilistic.yaml` calls itself the default pipeline written out: built from its stages, it
    /// must give the built-in default's masks byte for byte (a real GrabCut photo, clicks of both classes).
    @Test func theProbabilisticExampleGivesTheDefaultPipelinesMasks() throws {
        let photo = EvalReplayTests.grabCutRoot + "/data_GT/124080.jpg"
        guard let bytes = FileManager.default.contents(atPath: photo) else {
            Issue.record("\(photo) is missing: this test needs ../shared beside the repository")
            return
        }
        let config = try DaemonConfig.load(
            path: repositoryRoot.appendingPathComponent("Config/examples/probabilistic.yaml").path)
        let example = try PipelineFactory.make(stages: config.pipeline, plugins: nil)
        let standard = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: nil)
        let image = try ImageDecoder.decode([UInt8](bytes))
        let a = try example.prepare(image), b = try standard.prepare(image)
        #expect(a.adapted.keys == b.adapted.keys)
        var clicks: [Click] = []
        for (i, point) in [(240, 200), (60, 40), (300, 260), (420, 120), (200, 300)].enumerated() {
            clicks.append(Click(x: point.0, y: point.1, classIndex: i % 2))
            let maskA = try example.segment(a, clicks: clicks, classCount: 2).mask
            let maskB = try standard.segment(b, clicks: clicks, classCount: 2).mask
            #expect(maskA == maskB, "click \(i + 1)")
        }
    }

    @Test func theDefaultFileSaysWhatMakeRunNeeds() throws {
        let config = try DaemonConfig.load(path: repositoryRoot.appendingPathComponent("Config/probattnd.yaml").path)
        #expect(config.endpoints.requests == "tcp://127.0.0.1:5555")
        #expect(config.endpoints.results == "tcp://127.0.0.1:5556")
        #expect(config.store.path == "state/probattn.sqlite")
        #expect(config.pluginDirectory == nil)
        // The file spells out the built-in defaults (the pipeline is PipelineFactory's), so it and an empty config
        // agree; a default changed in code without the file fails here.
        #expect(config.pipeline == DaemonConfig.defaultPipeline)
        // The one key whose default is "absent": the file turns the HTTP gateway on.
        #expect(config.http?.listen == "127.0.0.1:5580")
        var expected = DaemonConfig()
        expected.http = DaemonConfig.HTTP(listen: "127.0.0.1:5580")
        #expect(config == expected)
    }

    @Test func everyKeyOfTheDefaultFileHasAComment() throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("Config/probattnd.yaml"),
                              encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        for (index, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), trimmed.contains(":") else { continue }
            // A pipeline stage's comment sits above its `- role:` line; its `type:` and `options:` follow.
            if trimmed.hasPrefix("type:") || trimmed.hasPrefix("options:") { continue }
            let previous = index > 0 ? lines[index - 1].trimmingCharacters(in: .whitespaces) : ""
            #expect(previous.hasPrefix("#"), "line \(index + 1) '\(trimmed)' has no comment above it")
        }
    }
}

@Suite struct DecodingValues {
    @Test func anEmptyDocumentGivesTheDefaults() throws {
        #expect(try DaemonConfig.decode(yaml: "") == DaemonConfig())
        #expect(try DaemonConfig.decode(yaml: "# nothing\n") == DaemonConfig())
    }

    @Test func everyFieldIsRead() throws {
        let config = try DaemonConfig.decode(yaml: """
            endpoints: {requests: "ipc:///tmp/r", results: "inproc://res"}
            plugin_dir: /opt/plugins
            store: {path: /var/db.sqlite, image_bytes: path}
            limits:
              max_image_pixels: 100
              max_message_bytes: 2_000
              max_frames: 3
              queue_depth_per_image: 5
              max_pending_requests: 6
              cache_memory_mb: 7
            sessions: {conflict_policy: first_wins}
            pipeline:
              - {role: encoder, type: grid_features, options: {stride: 8, scales: [1, 2.5], lab: true, name: x}}
              - {role: adapter, type: attention, options: {variant: softmax}}
              - {role: propagator, type: belief_propagation}
            logging: {level: debug}
            notify: {watchdog: false}
            """)
        #expect(config.endpoints.requests == "ipc:///tmp/r")
        #expect(config.endpoints.results == "inproc://res")
        #expect(config.pluginDirectory == "/opt/plugins")
        #expect(config.store.path == "/var/db.sqlite")
        #expect(config.store.imageBytes == .path)
        #expect(config.limits.maxImagePixels == 100)
        #expect(config.limits.maxMessageBytes == 2000)
        #expect(config.limits.maxFrames == 3)
        #expect(config.limits.queueDepthPerImage == 5)
        #expect(config.limits.maxPendingRequests == 6)
        #expect(config.limits.cacheMemoryBytes == 7 * 1024 * 1024)
        #expect(config.sessions.conflictPolicy == .firstWins)
        #expect(config.pipeline.map(\.role) == [.encoder, .adapter, .propagator])
        #expect(config.pipeline[0].options == ["stride": .int(8), "scales": .list([.int(1), .double(2.5)]),
                                               "lab": .bool(true), "name": .string("x")])
        #expect(config.pipeline[1].options == ["variant": .string("softmax")])
        #expect(config.logging.level == .debug)
        #expect(config.notify.watchdog == false)
    }

    @Test func cacheMemoryCanBeGivenInBytes() throws {
        let config = try DaemonConfig.decode(yaml: "limits: {cache_memory_bytes: 12345}")
        #expect(config.limits.cacheMemoryBytes == 12345)
        let both = decodeError("limits: {cache_memory_bytes: 1, cache_memory_mb: 1}")
        #expect(both?.code == .invalidValue)
        #expect(both?.message.contains("either cache_memory_mb or cache_memory_bytes") == true)
    }

    @Test func relativeStorePathsResolveAgainstTheStateDirectoryThenTheWorkingDirectory() {
        var store = DaemonConfig.Store()
        store.path = "state/probattn.sqlite"
        #expect(store.resolvedPath(environment: ["STATE_DIRECTORY": "/var/lib/probattn"], currentDirectory: "/w")
                    == "/var/lib/probattn/state/probattn.sqlite")
        #expect(store.resolvedPath(environment: ["STATE_DIRECTORY": "/a:/b"], currentDirectory: "/w")
                    == "/a/state/probattn.sqlite")
        #expect(store.resolvedPath(environment: [:], currentDirectory: "/w/") == "/w/state/probattn.sqlite")
        store.path = "/abs/db.sqlite"
        #expect(store.resolvedPath(environment: ["STATE_DIRECTORY": "/var/lib/probattn"], currentDirectory: "/w")
                    == "/abs/db.sqlite")
    }
}

@Suite struct StrictDecodingErrors {
    @Test func anUnknownTopLevelKeyIsNamedWithTheValidKeys() {
        let error = decodeError("endpoints: {}\nplugins_dir: /x\n")
        #expect(error?.code == .unknownKey)
        #expect(error?.path == "plugins_dir")
        #expect(error?.message == "unknown key 'plugins_dir' at plugins_dir (line 2); valid keys at the top level: endpoints, http, plugin_dir, store, limits, sessions, pipeline, logging, notify, label_studio, security")
    }

    @Test func theHTTPListenAddressIsHostColonPort() throws {
        #expect(try DaemonConfig.decode(yaml: "endpoints: {}\n").http == nil)
        let v4 = try DaemonConfig.decode(yaml: "http: {listen: 127.0.0.1:5580}\n").http
        #expect(v4?.host == "127.0.0.1")
        #expect(v4?.port == 5580)
        let v6 = try DaemonConfig.decode(yaml: "http: {listen: \"[::1]:0\"}\n").http
        #expect(v6?.host == "::1")
        #expect(v6?.port == 0)
        for bad in ["127.0.0.1", "127.0.0.1:70000", ":80", "[::1]80", "host:port"] {
            let error = decodeError("http: {listen: \"\(bad)\"}\n")
            #expect(error?.code == .invalidValue, "\(bad)")
            #expect(error?.path == "http.listen")
        }
        #expect(decodeError("http: {}\n")?.code == .missingKey)
        let unknown = decodeError("http: {listen: 127.0.0.1:1, port: 2}\n")
        #expect(unknown?.code == .unknownKey)
        #expect(unknown?.message == "unknown key 'port' at http.port (line 1); valid keys in http: listen, image_folder, web_root")
    }

    @Test func anUnknownNestedKeyIsNamedWithItsPath() {
        let error = decodeError("limits:\n  max_frames: 3\n  max_frame: 4\n")
        #expect(error?.code == .unknownKey)
        #expect(error?.path == "limits.max_frame")
        #expect(error?.message == "unknown key 'max_frame' at limits.max_frame (line 3); valid keys in limits: max_image_pixels, working_pixels, max_message_bytes, max_frames, queue_depth_per_image, max_pending_requests, cache_memory_mb, cache_memory_bytes")
    }

    @Test func anUnknownKeyInAStageIsNamed() {
        let error = decodeError("pipeline:\n  - role: encoder\n    type: grid_features\n    option: {}\n")
        #expect(error?.code == .unknownKey)
        #expect(error?.path == "pipeline[0].option")
        #expect(error?.message == "unknown key 'option' at pipeline[0].option (line 4); valid keys in pipeline[0]: role, type, options")
    }

    @Test func anUnknownRoleListsTheValidRoles() {
        let error = decodeError("pipeline:\n  - role: decoder\n    type: x\n")
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "pipeline[0].role")
        #expect(error?.message == "pipeline[0].role: 'decoder' is not one of: encoder, adapter, propagator, writer (line 2)")
    }

    @Test func unknownWordsListTheValidOnes() {
        #expect(decodeError("sessions: {conflict_policy: loudest_wins}")?.message
                    == "sessions.conflict_policy: 'loudest_wins' is not one of: latest_wins, first_wins (line 1)")
        #expect(decodeError("store: {image_bytes: blob}")?.message
                    == "store.image_bytes: 'blob' is not one of: inline, path (line 1)")
        #expect(decodeError("logging: {level: loud}")?.message
                    == "logging.level: 'loud' is not one of: trace, debug, info, notice, warning, error, critical (line 1)")
    }

    @Test func wrongTypesNameThePathAndWhatWasExpected() {
        let word = decodeError("limits:\n  max_frames: many\n")
        #expect(word?.code == .wrongType)
        #expect(word?.path == "limits.max_frames")
        #expect(word?.message == "limits.max_frames: expected an integer, found 'many' (line 2)")
        let quoted = decodeError("limits: {max_frames: '4'}")
        #expect(quoted?.message == "limits.max_frames: expected an integer, found '4' (line 1)")
        let list = decodeError("endpoints: [a, b]")
        #expect(list?.message == "endpoints: expected a mapping, found a list (line 1)")
        let flag = decodeError("notify: {watchdog: sometimes}")
        #expect(flag?.message == "notify.watchdog: expected true or false, found 'sometimes' (line 1)")
        let stages = decodeError("pipeline: {role: encoder}")
        #expect(stages?.message == "pipeline: expected a list, found a mapping (line 1)")
        // A mapping is a valid option value (the adapter's nested `variant`); where a number belongs, validation
        // names the option.
        let mapping = try? DaemonConfig.decode(yaml: "pipeline:\n  - role: encoder\n    type: grid_features\n    options: {stride: {a: 1}}\n")
        #expect(mapping != nil, "decodes")
        #expect(throws: (any Error).self) { try GridFeatureEncoder(options: mapping?.pipeline[0].options ?? [:]) }
        do {
            _ = try GridFeatureEncoder(options: mapping?.pipeline[0].options ?? [:])
        } catch {
            #expect("\(error)".contains("stride"), "\(error)")
        }
    }

    @Test func outOfRangeLimitsAreRefused() {
        let error = decodeError("limits: {queue_depth_per_image: 0}")
        #expect(error?.code == .invalidValue)
        #expect(error?.message == "limits.queue_depth_per_image: must be at least 1, found 0 (line 1)")
    }

    @Test func aStageNeedsARoleAndAType() {
        let noType = decodeError("pipeline:\n  - role: encoder\n")
        #expect(noType?.code == .missingKey)
        #expect(noType?.path == "pipeline[0].type")
        let noRole = decodeError("pipeline:\n  - type: grid_features\n")
        #expect(noRole?.code == .missingKey)
        #expect(noRole?.message.hasPrefix("pipeline[0]: missing key 'role' (one of: encoder, adapter, propagator, writer)") == true)
    }

    @Test func syntaxErrorsAndDuplicateKeysAreOneLine() {
        let syntax = decodeError("limits: {max_frames: 3\n")
        #expect(syntax?.code == .syntax)
        #expect(syntax?.message.contains("\n") == false)
        let duplicate = decodeError("limits:\n  max_frames: 3\n  max_frames: 4\n")
        #expect(duplicate?.code == .syntax)
        #expect(duplicate?.message.contains("duplicated key(s): 'max_frames'") == true)
        #expect(duplicate?.message.contains("\n") == false)
    }

    @Test func aMissingFileNamesThePath() {
        do {
            _ = try DaemonConfig.load(path: "/nonexistent/probattnd.yaml")
            Issue.record("loading a missing file succeeded")
        } catch let error as ConfigError {
            #expect(error.code == .unreadable)
            #expect(error.message == "cannot read config file /nonexistent/probattnd.yaml: no such file")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func aFolderIsNotAConfigFile() {
        let folder = FileManager.default.temporaryDirectory.path
        #expect(throws: ConfigError(.unreadable, path: "", "cannot read config file \(folder): it is a directory")) {
            try DaemonConfig.load(path: folder)
        }
    }

    @Test func errorsFromAFileArePrefixedWithItsPath() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-config-\(UUID()).yaml")
        try "limits: {max_frames: x}\n".write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(throws: ConfigError.self) { try DaemonConfig.load(path: url.path) }
        do {
            _ = try DaemonConfig.load(path: url.path)
        } catch let error as ConfigError {
            #expect(error.message == "\(url.path): limits.max_frames: expected an integer, found 'x' (line 1)")
        }
    }
}

@Suite struct Validation {
    @Test func endpointsMustBeBindableZeroMQAddresses() {
        var config = DaemonConfig()
        config.endpoints.requests = "http://127.0.0.1:5555"
        #expect(validationError(config)?.message
                    == "endpoints.requests: 'http://127.0.0.1:5555' uses transport 'http'; valid transports: tcp, ipc, inproc")
        config.endpoints.requests = "tcp://127.0.0.1:99999"
        #expect(validationError(config)?.message
                    == "endpoints.requests: 'tcp://127.0.0.1:99999' has an invalid port '99999' (1-65535 or *)")
        config.endpoints.requests = "127.0.0.1:5555"
        #expect(validationError(config)?.code == .invalidValue)
        config.endpoints.requests = "tcp://*:*"
        config.security.allowInsecure = true  // the syntax is valid; binding every address open needs this
        #expect(validationError(config) == nil)
        config.endpoints.requests = config.endpoints.results
        #expect(validationError(config)?.message
                    == "endpoints.results: must differ from endpoints.requests (both are tcp://127.0.0.1:5556)")
    }

    @Test func thePipelineMustBeEncoderAdapterPropagatorThenAnOptionalWriter() throws {
        let swapped = try DaemonConfig.decode(yaml: """
            pipeline:
              - {role: adapter, type: attention}
              - {role: encoder, type: grid_features}
              - {role: propagator, type: belief_propagation}
            """)
        #expect(validationError(swapped)?.code == .invalidPipeline)
        #expect(validationError(swapped)?.message
                    == "pipeline: stages must be encoder, adapter, propagator and optionally writer, in this order; found adapter, encoder, propagator")
        let empty = try DaemonConfig.decode(yaml: "pipeline: []")
        #expect(validationError(empty)?.message.hasSuffix("found no stages") == true)
        var withoutWriter = DaemonConfig()
        withoutWriter.pipeline.removeLast()
        #expect(validationError(withoutWriter) == nil)
    }

    @Test func anUnknownStageTypeIsNamedWithTheValidTypes() throws {
        let config = try DaemonConfig.decode(yaml: """
            pipeline:
              - {role: encoder, type: grid_features}
              - {role: adapter, type: softmax}
              - {role: propagator, type: belief_propagation}
            """)
        let error = validationError(config)
        #expect(error?.code == .unknownStageType)
        #expect(error?.path == "pipeline[1].type")
        #expect(error?.message == "pipeline[1].type: unknown adapter type 'softmax'; valid types: attention")
    }

    @Test func theWriterIsOneTheDaemonLinksWithItsOptions() {
        var config = DaemonConfig()
        config.pipeline[3] = StageSpec(role: .writer, type: "postgres")
        #expect(validationError(config)?.code == .unknownStageType)
        #expect(validationError(config)?.message
                    == "pipeline[3].type: unknown writer type 'postgres'; valid types: sqlite, memory")
        config.pipeline[3] = StageSpec(role: .writer, type: "sqlite", options: ["sync": .bool(true)])
        #expect(validationError(config)?.code == .unknownKey)
        #expect(validationError(config)?.message
                    == "pipeline[3]: writer 'sqlite': unknown option 'sync'; it takes no options")
        config.pipeline[3] = StageSpec(role: .writer, type: "memory", options: ["keep_every_version": .int(1)])
        #expect(validationError(config)?.message
                    == "pipeline[3]: writer 'memory': option 'keep_every_version' = 1 is invalid (expected true or false)")
        config.pipeline[3] = StageSpec(role: .writer, type: "memory", options: ["keep_every_version": .bool(false)])
        #expect(validationError(config) == nil)
        // Without the registry of writers (a program that links none) the writer is not checked.
        config.pipeline[3] = StageSpec(role: .writer, type: "postgres")
        #expect(throws: Never.self) { try config.validate(plugins: nil) }
    }
}

@Suite struct AdapterForms {
    @Test func theFlatFormIsDeprecatedWithOneLineAndTheNestedFormIsNot() throws {
        let flat = try DaemonConfig.decode(yaml: """
            pipeline:
              - {role: encoder, type: grid_features}
              - {role: adapter, type: attention, options: {variant: softmax, scale: 1.0}}
              - {role: propagator, type: belief_propagation}
            """)
        #expect(flat.deprecations.count == 1)
        #expect(flat.deprecations.first?.hasPrefix("pipeline[1].options: the flat adapter form") == true)
        let nested = try DaemonConfig.decode(yaml: """
            pipeline:
              - {role: encoder, type: grid_features}
              - {role: adapter, type: attention, options: {variant: {type: softmax, scale: 1.0}}}
              - {role: propagator, type: belief_propagation}
            """)
        #expect(nested.deprecations.isEmpty)
        #expect(nested.pipeline[1].options["variant"] == .mapping(["type": .string("softmax"), "scale": .double(1.0)]))
        #expect(DaemonConfig().deprecations.isEmpty, "the built-in default is nested")
    }
}
