import Foundation
import Logging
import NIOCore
import NIOPosix
import ProbattnConfig
import ServiceLifecycle
import UnixSignals

/// The daemon as a swift-service-lifecycle `Service`: builds the runtime, sends `READY=1`, reloads on SIGHUP, and on
/// graceful shutdown (SIGTERM/SIGINT through the `ServiceGroup`) sends `STOPPING=1`, drains and returns.
public struct DaemonService: Service {
    let configPath: String
    let config: DaemonConfig
    let notifier: SystemdNotifier
    let logger: Logger

    public init(configPath: String, config: DaemonConfig, notifier: SystemdNotifier, logger: Logger) {
        self.configPath = configPath
        self.config = config
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        // Trap SIGHUP before announcing readiness, so an early reload cannot kill the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let runtime = try await Self.offPool {
            try DaemonRuntime(configPath: configPath, config: config, notifier: notifier, logger: logger)
        }
        guard let gateway = runtime.gateway else {
            await serve(runtime, hangups: hangups)
            return
        }
        // The HTTP server runs as a child task: the service group's graceful shutdown reaches it there (Hummingbird's
        // application is itself a service), and it ends once its connections are closed.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await gateway.run() }
            do {
                try await gateway.waitUntilListening()
            } catch {
                await Self.offPool { runtime.stop() }
                throw error
            }
            await serve(runtime, hangups: hangups)
            try await group.waitForAll()
        }
    }

    /// From READY=1 to the end of the drain: reloads on SIGHUP until graceful shutdown, then drains the runtime
    /// (both transports refuse new requests; accepted ones are answered) and flushes the store.
    private func serve(_ runtime: DaemonRuntime, hangups: UnixSignalsSequence) async {
        runtime.announceReady()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in hangups.cancelOnGracefulShutdown() {
                    await Self.offPool { runtime.reload() }
                }
            }
            group.addTask { try? await gracefulShutdown() }
            _ = await group.next()
            group.cancelAll()
        }
        notifier.stopping()
        await Self.offPool { runtime.stop() }
    }

    /// Runs blocking work on a fresh thread so that the cooperative pool is never blocked.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    static func offPool(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                body()
                continuation.resume()
            }
            thread.start()
        }
    }

    /// Called by `probattnd run` on the main thread before any Swift concurrency work: with the HTTP gateway, makes
    /// NIO's event loops Swift concurrency's global executor, so that a request's handler task runs on the event loop
    /// threads instead of hopping between them and a second pool (two thread switches fewer per HTTP request, which
    /// matters on a loaded machine). Blocking work never runs on the pool (`offPool`, the scheduler's workers).
    public static func prepareProcess(config: DaemonConfig) {
        if config.http != nil {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
    }

    /// Runs the daemon until SIGTERM or SIGINT: what `probattnd run` calls.
    public static func runUntilStopped(configPath: String, config: DaemonConfig, logger: Logger,
                                       notifier: SystemdNotifier = SystemdNotifier()) async throws {
        let service = DaemonService(configPath: configPath, config: config, notifier: notifier, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                             failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await group.run()
    }
}
