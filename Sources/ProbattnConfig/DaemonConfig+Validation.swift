import Foundation
import ProbattnPluginHost
import ProbattnSegmentation

extension DaemonConfig {
    /// The writer implementations the daemon provides (the writer stage is the daemon's own: it commits to SQLite and
    /// publishes on the PUB socket). Its options are none.
    public static let writerTypes = ["sqlite"]

    /// Checks that need no resources and that decoding alone cannot do: endpoint syntax, distinct endpoints, every
    /// limit within `Limits.ranges` (decoding checks them too; a config built in code is checked here), the image
    /// root of the path-mode store, the shape of the pipeline (one encoder, one adapter, one propagator, in that
    /// order, then at most one writer) and each stage's `type` (from `PipelineFactory.stageTypes`; the writer's from
    /// `writerTypes`). Called by `validate(plugins:)`; throws the first problem as a one-line `ConfigError`.
    func validateStructure() throws {
        try validateLimits()
        try validateStore()
        try Self.validateEndpoint(endpoints.requests, path: "endpoints.requests")
        try Self.validateEndpoint(endpoints.results, path: "endpoints.results")
        guard endpoints.requests != endpoints.results else {
            throw ConfigError(.invalidValue, path: "endpoints.results",
                              "endpoints.results: must differ from endpoints.requests (both are \(ConfigError.excerpt(endpoints.requests)))")
        }
        try validatePipelineShape()
        try validateSecurity()
    }

    private func validateLimits() throws {
        let values: [(String, Int)] = [
            ("max_image_pixels", limits.maxImagePixels), ("max_message_bytes", limits.maxMessageBytes),
            ("max_frames", limits.maxFrames), ("queue_depth_per_image", limits.queueDepthPerImage),
            ("max_pending_requests", limits.maxPendingRequests), ("cache_memory_bytes", limits.cacheMemoryBytes),
        ]
        for (key, value) in values {
            let range = Limits.range(key)
            guard range.contains(value) else {
                throw ConfigError(.invalidValue, path: "limits.\(key)",
                                  "limits.\(key): must be within \(range.lowerBound)...\(range.upperBound), found \(value)")
            }
        }
    }

    /// With `image_bytes: path`, `image_root` must name an existing folder by an absolute path (every `source_path`
    /// must resolve inside it).
    private func validateStore() throws {
        guard store.imageBytes == .path else { return }
        guard let root = store.imageRoot else {
            throw ConfigError(.missingKey, path: "store.image_root",
                              "store.image_root: required with store.image_bytes: path (the folder every source_path must lie in)")
        }
        let shown = ConfigError.excerpt(root)
        guard root.hasPrefix("/") else {
            throw ConfigError(.invalidValue, path: "store.image_root",
                              "store.image_root: '\(shown)' must be an absolute path")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConfigError(.invalidValue, path: "store.image_root",
                              "store.image_root: '\(shown)' is not an existing folder")
        }
    }

    private func validatePipelineShape() throws {
        let expected: [StageRole] = [.encoder, .adapter, .propagator]
        let roles = pipeline.map(\.role)
        let shapeIsValid = roles == expected || roles == expected + [.writer]
        guard shapeIsValid else {
            let given = roles.isEmpty ? "no stages" : roles.map(\.rawValue).joined(separator: ", ")
            throw ConfigError(.invalidPipeline, path: "pipeline",
                              "pipeline: stages must be encoder, adapter, propagator and optionally writer, in this order; found \(given)")
        }
        for (index, stage) in pipeline.enumerated() where stage.role != .writer {
            let valid = PipelineFactory.stageTypes[stage.role] ?? []
            guard valid.contains(stage.type) else {
                throw ConfigError(.unknownStageType, path: "pipeline[\(index)].type",
                                  "pipeline[\(index)].type: unknown \(stage.role.rawValue) type '\(ConfigError.excerpt(stage.type))'; valid types: \(valid.joined(separator: ", "))")
            }
        }
        if let index = pipeline.firstIndex(where: { $0.role == .writer }) {
            let writer = pipeline[index]
            guard Self.writerTypes.contains(writer.type) else {
                throw ConfigError(.unknownStageType, path: "pipeline[\(index)].type",
                                  "pipeline[\(index)].type: unknown writer type '\(ConfigError.excerpt(writer.type))'; valid types: \(Self.writerTypes.joined(separator: ", "))")
            }
            if let option = writer.options.keys.sorted().first {
                throw ConfigError(.unknownKey, path: "pipeline[\(index)].options.\(option)",
                                  "pipeline[\(index)].options: unknown option '\(ConfigError.excerpt(option))'; the \(writer.type) writer takes no options")
            }
        }
    }

    /// A ZeroMQ endpoint the daemon can bind: `tcp://HOST:PORT` (PORT 1–65535, or `*` for an ephemeral port),
    /// `ipc://PATH` or `inproc://NAME`.
    static func validateEndpoint(_ endpoint: String, path: String) throws {
        func invalid(_ why: String) -> ConfigError {
            ConfigError(.invalidValue, path: path, "\(path): '\(ConfigError.excerpt(endpoint))' \(why)")
        }
        guard let separator = endpoint.range(of: "://") else {
            throw invalid("is not a ZeroMQ endpoint (expected tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
        }
        let scheme = String(endpoint[..<separator.lowerBound])
        let address = String(endpoint[separator.upperBound...])
        switch scheme {
        case "tcp":
            guard let colon = address.lastIndex(of: ":"), colon != address.startIndex else {
                throw invalid("needs a host and a port (tcp://HOST:PORT)")
            }
            let port = address[address.index(after: colon)...]
            if port == "*" { return }
            guard let number = Int(port), (1...65535).contains(number) else {
                throw invalid("has an invalid port '\(ConfigError.excerpt(String(port)))' (1-65535 or *)")
            }
        case "ipc", "inproc":
            guard !address.isEmpty else { throw invalid("needs a \(scheme == "ipc" ? "path" : "name") after \(scheme)://") }
        default:
            throw invalid("uses transport '\(scheme)'; valid transports: tcp, ipc, inproc")
        }
    }
}

extension DaemonConfig {
    /// Things the config says in a way that still works but will not always: one line each, naming the key path.
    /// `probattnd validate` prints them as warnings, the daemon logs them at start and on reload.
    public var deprecations: [String] {
        pipeline.enumerated().compactMap { index, stage in
            guard stage.role == .adapter, stage.type == VariantAttentionAdapter.typeName,
                  let stanza = try? AdapterStanza(stage.options, defaultVariant: PipelineFactory.defaultVariant,
                                                  defaults: [:]),
                  stanza.isFlat else { return nil }
            return "pipeline[\(index)].options: the flat adapter form (the variant's options beside "
                + "`variant: \(stanza.variant)`) is deprecated; write `variant: {type: \(stanza.variant), ...its options}` "
                + "beside the adapter's own unit_stride and query_embedding"
        }
    }

    /// Every check that needs no resources: what `probattnd validate` and a SIGHUP reload run before a config is
    /// used. Without `plugins`, the structure, the stage types and `security` (`validateSecurity`); with the registry
    /// of the plugin folder the daemon would load, also every stage's options, the attention variant (it must be
    /// loaded) and the variant's options, through `PipelineFactory.validate(stages:plugins:)`. Throws the first
    /// problem as a one-line `ConfigError`.
    public func validate(plugins: PluginRegistry?) throws {
        try validateStructure()
        guard let plugins else { return }
        let stages = pipeline.filter { $0.role != .writer }
        do {
            try PipelineFactory.validate(stages: stages, plugins: plugins)
        } catch let error as SegmentationError {
            throw configError(from: error)
        }
    }

    /// A stage error as a config error whose path names the stage (the factory's messages start with the role).
    private func configError(from error: SegmentationError) -> ConfigError {
        let code: ConfigError.Code
        switch error.code {
        case .unknownStageType, .attention: code = .unknownStageType
        case .unknownOption: code = .unknownKey
        case .invalidStages: code = .invalidPipeline
        case .invalidOption, .invalidInput: code = .invalidValue
        }
        var path = "pipeline"
        if let index = pipeline.firstIndex(where: { error.message.hasPrefix($0.role.rawValue) }) {
            path = "pipeline[\(index)]"
        } else if error.code == .attention, let index = pipeline.firstIndex(where: { $0.role == .adapter }) {
            path = "pipeline[\(index)]"
        }
        return ConfigError(code, path: path, "\(path): \(error.message)")
    }
}
