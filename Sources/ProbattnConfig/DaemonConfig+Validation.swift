import Foundation
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnStages

extension DaemonConfig {
    /// Checks that need no resources and that decoding alone cannot do: endpoint syntax, distinct endpoints, every
    /// limit within `Limits.ranges` (decoding checks them too; a config built in code is checked here), the image
    /// root of the path-mode store, the shape of the pipeline (one encoder, one adapter, one propagator, in that
    /// order, then at most one writer) and the `type` of each pipeline stage (from `PipelineFactory.stageTypes`; the
    /// writer's is checked by `validate(plugins:writers:)` against the writers the program links). Called by
    /// `validate(plugins:writers:)`; throws the first problem as a one-line `ConfigError`.
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
            ("max_image_pixels", limits.maxImagePixels), ("working_pixels", limits.workingPixels),
            ("max_message_bytes", limits.maxMessageBytes),
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
        pipeline.enumerated().flatMap { index, stage in
            PipelineFactory.registries.deprecations(stage).map { "pipeline[\(index)].options: " + $0 }
        }
    }

    /// Every check that needs no resources: what `probattnd validate` and a SIGHUP reload run before a config is
    /// used. Without `plugins`, the structure, the pipeline's stage types and `security` (`validateSecurity`); with
    /// the registry of the plugin folder the daemon would load, also every stage's options, the attention variant
    /// (it must be loaded) and the variant's options, through `PipelineFactory.validate(stages:plugins:)`. With
    /// `writers` (the writer stages the program links: the daemon's are `DaemonStages.writers`), also the writer
    /// stage's type and options, through its descriptor. Throws the first problem as a one-line `ConfigError`.
    public func validate(plugins: PluginRegistry?, writers: WriterRegistry? = nil) throws {
        try validateStructure()
        if let writers, let index = pipeline.firstIndex(where: { $0.role == .writer }) {
            do {
                try writers.validate(pipeline[index])
            } catch let error as SegmentationError {
                let path = error.code == .unknownStageType ? "pipeline[\(index)].type" : "pipeline[\(index)]"
                throw ConfigError(configErrorCode(error.code), path: path, "\(path): \(error.message)")
            }
        }
        guard let plugins else { return }
        let stages = pipeline.filter { $0.role != .writer }
        do {
            try PipelineFactory.validate(stages: stages, plugins: plugins)
        } catch let error as SegmentationError {
            throw configError(from: error)
        }
    }

    private func configErrorCode(_ code: SegmentationError.Code) -> ConfigError.Code {
        switch code {
        case .unknownStageType, .attention: return .unknownStageType
        case .unknownOption: return .unknownKey
        case .invalidStages: return .invalidPipeline
        case .invalidOption, .invalidInput: return .invalidValue
        }
    }

    /// A stage error as a config error whose path names the stage (the factory's messages start with the role).
    private func configError(from error: SegmentationError) -> ConfigError {
        let code = configErrorCode(error.code)
        var path = "pipeline"
        if let index = pipeline.firstIndex(where: { error.message.hasPrefix($0.role.rawValue) }) {
            path = "pipeline[\(index)]"
        } else if error.code == .attention, let index = pipeline.firstIndex(where: { $0.role == .adapter }) {
            path = "pipeline[\(index)]"
        }
        return ConfigError(code, path: path, "\(path): \(error.message)")
    }
}
