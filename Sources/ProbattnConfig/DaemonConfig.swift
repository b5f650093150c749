import Foundation
import Logging
import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages
import ProbattnSession

/// The daemon's configuration, as written in `Config/probattnd.yaml` (YAML keys are lower_snake_case; every key is
/// optional and has the default shown on its field).
///
/// Life cycle (decode → validate → build): `load`/`decode` turn YAML into this value strictly (unknown keys, wrong
/// types and unknown words are errors); `validate(plugins:)` runs every check that needs no resources (what
/// `probattnd validate` and a SIGHUP reload run); the daemon then opens sockets, the store and the pipeline from it.
public struct DaemonConfig: Sendable, Equatable {
    /// Where the daemon listens (ZeroMQ endpoint strings: `tcp://host:port`, `ipc:///path`, `inproc://name`).
    public struct Endpoints: Sendable, Equatable {
        /// ROUTER socket for requests (clients connect DEALER or REQ sockets). YAML `requests`.
        public var requests: String = "tcp://127.0.0.1:5555"
        /// PUB socket for mask updates. YAML `results`.
        public var results: String = "tcp://127.0.0.1:5556"
        public init() {}
    }

    /// The HTTP and WebSocket gateway (docs/HTTP.md). YAML `http`; when omitted there is no HTTP server.
    public struct HTTP: Sendable, Equatable {
        /// `HOST:PORT` as written (YAML `listen`); IPv6 hosts in brackets, e.g. `[::1]:5580`. Port 0 binds a free
        /// port, which the daemon logs ("HTTP listening address=HOST:PORT").
        public var listen: String
        /// The host part of `listen`, without brackets.
        public var host: String
        /// The port part of `listen`, 0...65535.
        public var port: Int
        /// Folder of images the web annotator lists and opens by name (docs/WEB.md): only the regular image files
        /// directly in it. YAML `image_folder`; nil (the default): no folder. A relative path is resolved against
        /// the working directory.
        public var imageFolder: String?
        /// Folder of the web annotator's files served at `/`. YAML `web_root`; nil (the default): found as
        /// `WebFiles.locate` describes ($PROBATTN_WEB_ROOT, the installed share/probattn/web, the source tree's Web/).
        public var webRoot: String?

        /// Splits `HOST:PORT`; nil when `listen` is not of that form.
        public init?(listen: String) {
            let text = listen.trimmingCharacters(in: .whitespaces)
            var host: Substring
            var portText: Substring
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                    return nil
                }
                host = text[text.index(after: text.startIndex)..<close]
                portText = text[text.index(close, offsetBy: 2)...]
            } else {
                guard let colon = text.lastIndex(of: ":") else { return nil }
                host = text[..<colon]
                portText = text[text.index(after: colon)...]
                if host.contains(":") { return nil }
            }
            guard !host.isEmpty, !host.contains(where: { $0 == "/" || $0.isWhitespace }),
                  let port = Int(portText), (0...65535).contains(port), portText.allSatisfy(\.isASCII) else {
                return nil
            }
            self.listen = text
            self.host = String(host)
            self.port = port
        }
    }

    /// How image bytes are kept in the store.
    public enum ImageBytes: String, Sendable, Equatable, CaseIterable {
        /// The encoded image bytes are stored in the database (self-contained; a restart needs nothing else).
        case inline
        /// Only the path of the client's file is stored (it must lie inside `Store.imageRoot`); the file must still be
        /// there when a session resumes.
        case path
    }

    /// The SQLite store.
    public struct Store: Sendable, Equatable {
        /// The SQLite file. A relative path is resolved against `$STATE_DIRECTORY` when that is set (systemd's
        /// `StateDirectory=`), otherwise against the working directory; see `resolvedPath(environment:currentDirectory:)`.
        /// YAML `path`.
        public var path: String = "state/probattn.sqlite"
        /// Whether image bytes are stored inline or as a path. YAML `image_bytes`.
        public var imageBytes: ImageBytes = .inline
        /// The folder every `source_path` must lie in (after resolving symlinks) when `imageBytes` is `.path`;
        /// required then, unused otherwise. An absolute path. YAML `image_root`.
        public var imageRoot: String?
        public init() {}

        /// The SQLite file's absolute path: `path` itself when absolute, else `$STATE_DIRECTORY/path` when the
        /// variable is set (systemd may list several directories separated by `:`; the first is used), else
        /// `currentDirectory/path`.
        public func resolvedPath(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 currentDirectory: String = FileManager.default.currentDirectoryPath) -> String {
            if path.hasPrefix("/") { return path }
            if let state = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !state.isEmpty {
                return DaemonConfig.join(String(state), path)
            }
            return DaemonConfig.join(currentDirectory, path)
        }
    }

    /// Bounds on what clients may send and on what the daemon holds. Every limit lies in its range in `ranges`
    /// (decoding and `validate` check it), so no arithmetic on a limit can overflow.
    public struct Limits: Sendable, Equatable {
        /// The accepted range of each limit, by YAML key. The upper bounds are far above any sensible setting and
        /// keep every product the daemon forms from a limit well inside `Int`/`Int64`.
        public static let ranges: KeyValuePairs<String, ClosedRange<Int>> = [
            "max_image_pixels": 1...(1 << 30),  // 32768 × 32768
            "working_pixels": 4096...(1 << 30),
            "max_message_bytes": 1...(1 << 31),  // 2 GiB: ZMQ_MAXMSGSIZE and frame sizes stay far from overflow
            "max_frames": 1...1024,
            "queue_depth_per_image": 1...1_000_000,
            "max_pending_requests": 1...1_000_000,
            "cache_memory_mb": 1...(1 << 24),  // 16 TiB
            "cache_memory_bytes": 1...(1 << 44),
        ]

        /// The range of the limit called `key` in YAML.
        public static func range(_ key: String) -> ClosedRange<Int> {
            ranges.first { $0.key == key }?.value ?? 1...Int.max
        }


        /// Largest image accepted by "open", in pixels (width × height). YAML `max_image_pixels`.
        public var maxImagePixels: Int = 4096 * 4096
        /// Most pixels the segmentation stages work on per image: a larger image is worked on at a resolution
        /// reduced by the smallest integer factor that fits (its masks still at full resolution). YAML
        /// `working_pixels`.
        public var workingPixels: Int = WorkingResolution.defaultMaxPixels
        /// Largest request accepted, all frames together, in bytes. YAML `max_message_bytes`.
        public var maxMessageBytes: Int = 64 << 20
        /// Most frames in one request (header plus payloads, after the routing envelope). YAML `max_frames`.
        public var maxFrames: Int = 4
        /// Requests waiting for one image beyond this are answered `busy`. YAML `queue_depth_per_image`.
        public var queueDepthPerImage: Int = 32
        /// Requests waiting in the whole daemon beyond this are answered `busy`. YAML `max_pending_requests`.
        public var maxPendingRequests: Int = 1024
        /// Memory budget of the per-image cache of encoder and adapter outputs (LRU), in bytes.
        /// YAML `cache_memory_mb` (MiB) or `cache_memory_bytes` (one of the two).
        public var cacheMemoryBytes: Int = 1024 << 20
        public init() {}
    }

    /// Which click wins conflicts between annotators (the session core's `ConflictPolicy`).
    public typealias ConflictPolicy = ProbattnSession.ConflictPolicy

    /// Multi-annotator sessions.
    public struct Sessions: Sendable, Equatable {
        /// YAML `conflict_policy`: `latest_wins` or `first_wins`.
        public var conflictPolicy: ConflictPolicy = .latestWins
        public init() {}
    }

    /// Log output (stderr, one line per event).
    public struct LoggingOptions: Sendable, Equatable {
        /// Least severe level written. YAML `level`: trace, debug, info, notice, warning, error, critical.
        public var level: Logger.Level = .info
        public init() {}
    }

    /// systemd notifications (sent only when `$NOTIFY_SOCKET` is set).
    public struct Notify: Sendable, Equatable {
        /// Send `WATCHDOG=1` from the request loop when systemd asks for it (`WatchdogSec=`). YAML `watchdog`.
        public var watchdog: Bool = true
        public init() {}
    }

    /// Who may connect (docs/SECURITY.md). YAML `security`. With `server_secret_key` and `authorized_keys` the
    /// daemon runs secured: CURVE on both sockets, only the clients of `authorized_keys` admitted, every request
    /// acting as its key's annotator with its key's role. Without them it runs open (and says so at every start),
    /// which `validate` allows only on local endpoints unless `allow_insecure` is true.
    public struct Security: Sendable, Equatable {
        /// The daemon's own key pair: a `.key_secret` file (`probattn keys generate NAME --server`). A relative path
        /// is resolved against `$CREDENTIALS_DIRECTORY` when set (systemd's `LoadCredential=`), otherwise against
        /// the config file's folder. YAML `server_secret_key`.
        public var serverSecretKey: String?
        /// The folder of the admitted clients' `.key` files, re-read on every SIGHUP. A relative path is resolved
        /// against the config file's folder. YAML `authorized_keys`.
        public var authorizedKeys: String?
        /// Let an open daemon (no keys) bind non-loopback endpoints. YAML `allow_insecure`.
        public var allowInsecure: Bool = false
        public init() {}

        /// True when the daemon authenticates its clients (both key settings are given).
        public var isEnabled: Bool { serverSecretKey != nil && authorizedKeys != nil }
    }

    public var endpoints = Endpoints()
    /// The HTTP gateway; nil (the default) means no HTTP server.
    public var http: HTTP?
    /// Folder scanned for attention plugins. YAML `plugin_dir`; nil (the default) means
    /// `PluginRegistry.defaultDirectory()`: the build's products when run from the build, the installed plugin folder
    /// otherwise. A relative path is resolved against the working directory.
    public var pluginDirectory: String?
    public var store = Store()
    public var limits = Limits()
    public var sessions = Sessions()
    /// The stages, in order: encoder, adapter, propagator, and optionally the writer. YAML `pipeline`.
    public var pipeline: [StageSpec] = DaemonConfig.defaultPipeline
    public var logging = LoggingOptions()
    public var notify = Notify()
    public var security = Security()
    /// The Label Studio ML backend's image source (`DaemonConfig+LabelStudio.swift`).
    public var labelStudio = LabelStudio()

    public init() {}

    /// The pipeline used when the config has no `pipeline` key: the segmentation defaults
    /// (`PipelineFactory.defaultStages`) followed by the default writer.
    public static var defaultPipeline: [StageSpec] {
        PipelineFactory.defaultStages + [defaultWriter]
    }

    /// The writer stage when the pipeline names none: the SQLite writer (`ProbattnStore.SQLiteSessionStore`), which
    /// commits to `store.path`.
    public static let defaultWriter = StageSpec(role: .writer, type: "sqlite")

    /// The pipeline's writer stage (`defaultWriter` when it has none).
    public var writer: StageSpec { pipeline.first { $0.role == .writer } ?? Self.defaultWriter }

    /// Most YAML nodes a config document may have once its aliases are expanded (every scalar, list and mapping
    /// counts, keys included; the default config has about 150). A few hundred bytes of nested aliases can stand
    /// for billions of nodes, so the document is counted before anything walks it; more is a `.tooLarge` error.
    public static let maxNodes = 10_000

    /// Largest config file read, in bytes (1 MiB; the default config is about 8 kB). Larger files are refused
    /// (`.tooLarge`) before they are parsed.
    public static let maxFileBytes = 1 << 20

    /// Reads and decodes a config file, resolving the relative paths of `security` (`resolvingSecurityPaths`).
    /// Throws `ConfigError` (`.unreadable` when the file cannot be read, `.tooLarge` when it is larger than
    /// `maxFileBytes`).
    public static func load(path: String) throws -> DaemonConfig {
        let text = try readText(path: path)
        do {
            return try decode(yaml: text).resolvingSecurityPaths(configFile: path)
        } catch let error as ConfigError {
            throw ConfigError(error.code, path: error.path, "\(path): \(error.message)")
        }
    }

    /// Decodes YAML text strictly; an empty document gives the defaults. Throws `ConfigError`.
    public static func decode(yaml: String) throws -> DaemonConfig {
        var config = DaemonConfig()
        guard let root = try ConfigNode.root(yaml: yaml), !root.isNull else { return config }
        let top = try root.mapping(allowed: ["endpoints", "http", "plugin_dir", "store", "limits", "sessions", "pipeline",
                                             "logging", "notify", "label_studio", "security"])
        if let node = top["endpoints"] {
            let keys = try node.mapping(allowed: ["requests", "results"])
            if let value = keys["requests"] { config.endpoints.requests = try value.nonEmptyString() }
            if let value = keys["results"] { config.endpoints.results = try value.nonEmptyString() }
        }
        if let node = top["http"], !node.isNull {
            let keys = try node.mapping(allowed: ["listen", "image_folder", "web_root"])
            guard let value = keys["listen"] else {
                throw ConfigError(.missingKey, path: node.childPath("listen"),
                                  "\(node.path): missing key 'listen' (HOST:PORT, e.g. 127.0.0.1:5580)\(node.lineSuffix)")
            }
            let text = try value.nonEmptyString()
            guard let http = HTTP(listen: text) else {
                throw value.invalidValue("must be HOST:PORT with a port in 0...65535 (e.g. 127.0.0.1:5580 or [::1]:5580), found '\(text)'")
            }
            var settings = http
            if let folder = keys["image_folder"], !folder.isNull { settings.imageFolder = try folder.nonEmptyString() }
            if let root = keys["web_root"], !root.isNull { settings.webRoot = try root.nonEmptyString() }
            config.http = settings
        }
        if let node = top["label_studio"] { config.labelStudio = try decodeLabelStudio(node) }
        if let node = top["plugin_dir"], !node.isNull {
            config.pluginDirectory = try node.nonEmptyString()
        }
        if let node = top["store"] {
            let keys = try node.mapping(allowed: ["path", "image_bytes", "image_root"])
            if let value = keys["path"] { config.store.path = try value.nonEmptyString() }
            if let value = keys["image_root"], !value.isNull { config.store.imageRoot = try value.nonEmptyString() }
            if let value = keys["image_bytes"] {
                config.store.imageBytes = try value.choice(ImageBytes.self)
            }
        }
        if let node = top["limits"] {
            config.limits = try decodeLimits(node)
        }
        if let node = top["sessions"] {
            let keys = try node.mapping(allowed: ["conflict_policy"])
            if let value = keys["conflict_policy"] {
                config.sessions.conflictPolicy = try value.choice(ConflictPolicy.self)
            }
        }
        if let node = top["pipeline"] {
            config.pipeline = try node.sequence().map(decodeStage)
        }
        if let node = top["logging"] {
            let keys = try node.mapping(allowed: ["level"])
            if let value = keys["level"] {
                config.logging.level = try value.choice(Logger.Level.self)
            }
        }
        if let node = top["notify"] {
            let keys = try node.mapping(allowed: ["watchdog"])
            if let value = keys["watchdog"] { config.notify.watchdog = try value.bool() }
        }
        if let node = top["security"], !node.isNull {
            let keys = try node.mapping(allowed: ["server_secret_key", "authorized_keys", "allow_insecure"])
            if let value = keys["server_secret_key"] { config.security.serverSecretKey = try value.nonEmptyString() }
            if let value = keys["authorized_keys"] { config.security.authorizedKeys = try value.nonEmptyString() }
            if let value = keys["allow_insecure"] { config.security.allowInsecure = try value.bool() }
        }
        return config
    }

    private static func decodeLimits(_ node: ConfigNode) throws -> Limits {
        var limits = Limits()
        let keys = try node.mapping(allowed: ["max_image_pixels", "working_pixels", "max_message_bytes", "max_frames",
                                              "queue_depth_per_image", "max_pending_requests", "cache_memory_mb",
                                              "cache_memory_bytes"])
        func limit(_ key: String) throws -> Int? { try keys[key]?.int(in: Limits.range(key)) }
        if let value = try limit("max_image_pixels") { limits.maxImagePixels = value }
        if let value = try limit("working_pixels") { limits.workingPixels = value }
        if let value = try limit("max_message_bytes") { limits.maxMessageBytes = value }
        if let value = try limit("max_frames") { limits.maxFrames = value }
        if let value = try limit("queue_depth_per_image") { limits.queueDepthPerImage = value }
        if let value = try limit("max_pending_requests") { limits.maxPendingRequests = value }
        switch (keys["cache_memory_mb"], keys["cache_memory_bytes"]) {
        case (.some(let mb), .some):
            throw mb.invalidValue("give either cache_memory_mb or cache_memory_bytes, not both")
        case (.some(let mb), nil):
            limits.cacheMemoryBytes = try mb.int(in: Limits.range("cache_memory_mb")) << 20
        case (nil, .some(let bytes)):
            limits.cacheMemoryBytes = try bytes.int(in: Limits.range("cache_memory_bytes"))
        case (nil, nil):
            break
        }
        return limits
    }

    private static func decodeStage(_ node: ConfigNode) throws -> StageSpec {
        let keys = try node.mapping(allowed: ["role", "type", "options"])
        guard let roleNode = keys["role"] else {
            throw ConfigError(.missingKey, path: node.childPath("role"),
                              "\(node.path): missing key 'role' (one of: \(StageRole.allCases.map(\.rawValue).joined(separator: ", ")))\(node.lineSuffix)")
        }
        guard let typeNode = keys["type"] else {
            throw ConfigError(.missingKey, path: node.childPath("type"),
                              "\(node.path): missing key 'type' (the stage's implementation)\(node.lineSuffix)")
        }
        let role = try roleNode.choice(StageRole.self)
        let type = try typeNode.nonEmptyString()
        var options: [String: ConfigValue] = [:]
        if let optionsNode = keys["options"], !optionsNode.isNull {
            guard case .mapping(let mapping) = optionsNode.node else { throw optionsNode.wrongType("a mapping") }
            for (keyNode, valueNode) in mapping {
                let key = try ConfigNode(keyNode, path: optionsNode.path).string()
                guard options[key] == nil else {
                    throw optionsNode.invalidValue("duplicate option '\(ConfigError.excerpt(key))'")
                }
                options[key] = try ConfigNode(valueNode, path: optionsNode.childPath(ConfigError.excerpt(key)))
                    .configValue()
            }
        }
        return StageSpec(role: role, type: type, options: options)
    }

    static func join(_ directory: String, _ relative: String) -> String {
        directory.hasSuffix("/") ? directory + relative : directory + "/" + relative
    }

    /// The file's text, or a `.unreadable` error saying why in plain words.
    private static func readText(path: String) throws -> String {
        func unreadable(_ why: String) -> ConfigError {
            ConfigError(.unreadable, path: "", "cannot read config file \(path): \(why)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw unreadable("no such file")
        }
        guard !isDirectory.boolValue else { throw unreadable("it is a directory") }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > maxFileBytes {
            throw ConfigError(.tooLarge, path: "",
                              "config file \(path) has \(size) bytes; config files are limited to \(maxFileBytes) bytes (1 MiB)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw unreadable(FileManager.default.isReadableFile(atPath: path) ? "read failed" : "permission denied")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw unreadable("not UTF-8 text") }
        return text
    }
}
