import Foundation
import Logging
import ProbattnConfig
import ProbattnKeys
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import ProbattnStore
import ProbattnWire
import Synchronization

/// Everything the running daemon holds, built from a validated config: plugins, pipeline, writer, cache, worker pool
/// and core pool,
/// the session core with its dispatcher, the metrics, the ZeroMQ transport's socket thread and (when configured) the
/// HTTP gateway. `init` builds and binds the ZeroMQ sockets; the gateway binds when `DaemonService` runs it, and
/// `announceReady` (READY=1, "Daemon ready") follows both. `reload` applies a new config file; `stop` drains and
/// flushes.
public final class DaemonRuntime: Sendable {
    public let configPath: String
    /// The config in force (replaced by every successful reload).
    private let config: Mutex<DaemonConfig>
    private let plugins: PluginRegistry
    /// The writer stage the config's `role: writer` selects (`DaemonStages.writers`).
    private let store: any SessionWriter
    private let scheduler: WorkScheduler
    private let core: SessionCore
    private let dispatcher: SessionDispatcher
    private let sockets: SocketLoop
    private let notifier: SystemdNotifier
    private let logger: Logger
    /// The keys of a secured daemon; nil when it runs open.
    let access: AccessControl?
    private let storePath: String
    private let workers: Int
    /// The HTTP transport, when the config has `http`; not yet bound (see `HTTPGateway.run`).
    let gateway: HTTPGateway?

    /// Loads plugins, builds the pipeline, opens the store, resumes the sessions it holds and binds the sockets.
    public init(configPath: String, config: DaemonConfig, notifier: SystemdNotifier, logger: Logger) throws {
        self.configPath = configPath
        self.config = Mutex(config)
        self.notifier = notifier
        self.logger = logger
        let pluginDirectory = config.pluginDirectory ?? PluginRegistry.defaultDirectory()
        plugins = PluginRegistry.load(directory: pluginDirectory)
        for failure in plugins.failures {
            logger.warning("Plugin not loaded", metadata: ["file": "\(failure.file)", "reason": "\(failure.reason)"])
        }
        logger.info("Plugins loaded", metadata: ["directory": "\(pluginDirectory)",
                                                 "variants": "\(plugins.variantNames.joined(separator: ","))"])
        try config.validate(plugins: plugins, writers: DaemonStages.writers)
        for deprecation in config.deprecations {
            logger.warning("Deprecated config", metadata: ["config": "\(configPath)", "detail": "\(deprecation)"])
        }
        access = try AccessControl.load(config.security)
        Self.logSecurity(config, access: access, logger: logger)
        let pipeline = try PipelineFactory.make(stages: config.pipeline, plugins: plugins)

        // Two workers per core: besides its stage calls a worker spends part of every request on work that uses no
        // core (the store's fsync at each commit, writing the reply and the update), during which another image's
        // click can run. The stage calls take their threads from the core pool, so the workers together never run
        // more stage threads than there are cores (docs/PERFORMANCE.md, "Threads").
        let threads = DaemonStages.configureThreads(logger: logger)
        let workers = 2 * threads.cores
        let compute = CorePool(cores: threads.cores)

        let storePath = config.store.resolvedPath()
        self.storePath = storePath
        self.workers = workers
        do {
            store = try DaemonStages.writers.make(config.writer, environment: WriterEnvironment(storePath: storePath))
        } catch let error as SegmentationError {
            throw ConfigError(.invalidValue, path: "pipeline", "pipeline: \(error.message)")
        }
        let cache = PreparedCache(budgetBytes: config.limits.cacheMemoryBytes)
        scheduler = WorkScheduler(workers: workers, perKeyLimit: config.limits.queueDepthPerImage,
                                  totalLimit: config.limits.maxPendingRequests)
        core = SessionCore(settings: Self.sessionSettings(config, pipeline: pipeline), persistence: store, cache: cache,
                           compute: compute, logger: logger)
        try core.resume()
        dispatcher = SessionDispatcher(core: core, scheduler: scheduler, logger: logger)
        let outbox = try Outbox()
        dispatcher.addListener { update in outbox.post([.publish(frames: WireEncoding.updateFrames(update))]) }
        let requests = DaemonRequests(dispatcher: dispatcher, plugins: plugins, metrics: DaemonMetrics())
        let access = self.access
        gateway = config.http.map {
            HTTPGateway(settings: $0, limits: config.limits, requests: requests, logger: logger, access: access)
        }
        if let gateway {
            let routes = IntegrationRoutes(labelStudio: config.labelStudio, limits: config.limits, requests: requests,
                                           logger: logger)
            gateway.hook = { [unowned gateway] request, target, received in
                await routes.respond(request, target: target, gateway: gateway, received: received)
            }
        }
        sockets = try SocketLoop(
            endpoints: .init(requests: config.endpoints.requests, results: config.endpoints.results),
            limits: config.limits, requests: requests,
            outbox: outbox, notifier: notifier, watchdog: config.notify.watchdog, logger: logger, access: access)
        try sockets.start()
    }

    /// At every start: how the daemon is secured (with a warning when HTTP tokens would cross the network in clear),
    /// or a warning that it runs open.
    static func logSecurity(_ config: DaemonConfig, access: AccessControl?, logger: Logger) {
        guard let access else {
            logger.warning("Running open: no security section, so any client that reaches the sockets can act as any annotator (docs/SECURITY.md)",
                           metadata: ["requests": "\(config.endpoints.requests)", "results": "\(config.endpoints.results)"])
            return
        }
        if let path = config.security.serverSecretKey, SecretKeyFile.isExposed(path: path) {
            logger.warning("The server secret key is readable by group or others; make it mode 0600",
                           metadata: ["file": "\(path)"])
        }
        if let http = config.http, !DaemonConfig.isLoopbackHost(http.host) {
            logger.warning("HTTP listens beyond loopback without TLS: tokens cross the network in clear; put a TLS reverse proxy in front (docs/SECURITY.md)",
                           metadata: ["listen": "\(http.listen)"])
        }
        logger.info("Security on: CURVE with ZAP on both sockets",
                    metadata: ["server_key": "\(access.serverKey.publicKey)", "clients": "\(access.current.entries.count)",
                               "authorized_keys": "\(config.security.authorizedKeys ?? "")"])
    }

    /// The session core's settings from a config.
    static func sessionSettings(_ config: DaemonConfig, pipeline: SegmentationPipeline) -> SessionSettings {
        SessionSettings(maxImagePixels: config.limits.maxImagePixels, workingPixels: config.limits.workingPixels,
                        conflictPolicy: config.sessions.conflictPolicy,
                        storesImagePaths: config.store.imageBytes == .path, imageRoot: config.store.imageRoot,
                        pipeline: pipeline)
    }

    /// Called once every listener is bound (the ZeroMQ sockets, and the HTTP gateway when configured): logs "Daemon
    /// ready", sends `READY=1` and lets the request loop start its watchdog pings.
    public func announceReady() {
        let pipeline = config.withLock { $0.pipeline.map(\.type).joined(separator: ">") }
        logger.info("Daemon ready", metadata: ["store": "\(storePath)", "workers": "\(workers)", "pipeline": "\(pipeline)",
                                               "http": "\(gateway == nil ? "off" : "on")"])
        notifier.ready()
        notifier.status("Serving requests")
        sockets.markReady()
    }

    /// Re-reads the config file (SIGHUP). Applies limits, the conflict policy and the pipeline's stages (used for
    /// images opened from now on) and, on a secured daemon, the client keys of `security.authorized_keys` (read again
    /// even when the config is unchanged; removed keys are refused at once, and the results socket is bound again so
    /// subscribers authenticate anew); endpoints, the store, the plugin folder, logging and the server key need a
    /// restart and are kept. On any error the running config and keys stay and the reason is logged.
    public func reload() {
        notifier.reloading()
        defer { notifier.ready() }
        logger.notice("Reloading the configuration", metadata: ["config": "\(configPath)"])
        do {
            let new = try DaemonConfig.load(path: configPath)
            try new.validate(plugins: plugins, writers: DaemonStages.writers)
            for deprecation in new.deprecations {
                logger.warning("Deprecated config", metadata: ["config": "\(configPath)", "detail": "\(deprecation)"])
            }
            let current = config.withLock { $0 }
            let pipeline = new.pipeline.filter({ $0.role != .writer }) == current.pipeline.filter({ $0.role != .writer })
                ? core.currentSettings.pipeline
                : try PipelineFactory.make(stages: new.pipeline, plugins: plugins)
            var restartOnly: [String] = []
            if new.endpoints != current.endpoints { restartOnly.append("endpoints") }
            if new.http != current.http { restartOnly.append("http") }
            if new.labelStudio != current.labelStudio { restartOnly.append("label_studio") }
            if new.store != current.store { restartOnly.append("store") }
            if new.writer != current.writer { restartOnly.append("pipeline writer") }
            if new.pluginDirectory != current.pluginDirectory { restartOnly.append("plugin_dir") }
            if new.logging != current.logging { restartOnly.append("logging") }
            if new.notify != current.notify { restartOnly.append("notify") }
            if new.security.isEnabled != current.security.isEnabled
                || new.security.serverSecretKey != current.security.serverSecretKey {
                restartOnly.append("security.server_secret_key")
            }
            // The client keys are read again on every reload (even with an unchanged config); a bad key file fails
            // the reload and keeps the previous set.
            var reloadedKeys: AuthorizedKeys?
            if access != nil, new.security.isEnabled, let folder = new.security.authorizedKeys {
                reloadedKeys = try AuthorizedKeys.load(directory: folder)
            }
            if !restartOnly.isEmpty {
                logger.warning("These settings change only on restart; keeping the running values",
                               metadata: ["keys": "\(restartOnly.joined(separator: ","))"])
            }
            var applied = current
            applied.limits = new.limits
            applied.sessions = new.sessions
            // The running writer stays (it changes on restart only).
            applied.pipeline = new.writer == current.writer
                ? new.pipeline : new.pipeline.filter { $0.role != .writer } + [current.writer]
            var live = applied
            live.store = current.store
            core.apply(Self.sessionSettings(live, pipeline: pipeline))
            core.cache.setBudget(applied.limits.cacheMemoryBytes)
            scheduler.setLimits(perKey: applied.limits.queueDepthPerImage, total: applied.limits.maxPendingRequests)
            sockets.setLimits(applied.limits)
            gateway?.setLimits(applied.limits)
            if let access, let reloadedKeys {
                let removed = access.replace(with: reloadedKeys)
                applied.security.authorizedKeys = new.security.authorizedKeys
                applied.security.allowInsecure = new.security.allowInsecure
                logger.notice("Client keys reloaded", metadata: ["clients": "\(reloadedKeys.entries.count)",
                                                                 "removed": "\(removed.count)"])
                if !removed.isEmpty { sockets.rebindResultsSocket() }
                gateway?.revokeRemovedTokens()
            }
            config.withLock { $0 = applied }
            logger.notice("Configuration reloaded", metadata: ["config": "\(configPath)"])
        } catch {
            logger.error("Reload failed; keeping the previous configuration",
                         metadata: ["config": "\(configPath)", "error": "\(error)"])
        }
    }

    /// Graceful stop: new requests get `shutting_down`, accepted ones are answered, then the workers end and the
    /// store's WAL is checkpointed. Blocks (call it off the cooperative pool).
    public func stop() {
        gateway?.beginDraining()
        sockets.beginDraining()
        logger.notice("Stopping: answering the requests in flight")
        sockets.waitUntilFinished()
        scheduler.shutdown()
        do { try store.checkpoint() } catch {
            logger.error("Store checkpoint failed", metadata: ["error": "\(error)"])
        }
        logger.notice("Stopped")
    }
}
