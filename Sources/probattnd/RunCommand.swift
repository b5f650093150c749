import ArgumentParser
import Foundation
import Logging
import ProbattnConfig
import ProbattnDaemon
import Synchronization

/// `probattnd run --config FILE`: runs the daemon in the foreground until SIGTERM (or SIGINT): binds the request and
/// result sockets, loads plugins and the pipeline, resumes the sessions of the store, then serves. Exit status 0
/// after a graceful stop, 1 when start-up fails (the reason is logged), 2 when the config cannot be read.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon in the foreground until SIGTERM.")

    @Option(name: .long, help: "The YAML config file (see Config/probattnd.yaml).")
    var config: String

    func run() throws {
        let daemonConfig: DaemonConfig
        do {
            daemonConfig = try DaemonConfig.load(path: config)
        } catch {
            FileHandle.standardError.write(Data("probattnd: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let level = daemonConfig.logging.level
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level) }
        let logger = Logger(label: "probattnd")
        DaemonService.prepareProcess(config: daemonConfig)
        let failure = FailureBox()
        let done = DispatchSemaphore(value: 0)
        let path = config
        // The daemon runs on Swift concurrency (service lifecycle); this thread just waits for it.
        Task.detached {
            do {
                try await DaemonService.runUntilStopped(configPath: path, config: daemonConfig, logger: logger)
            } catch {
                failure.set("\(error)")
            }
            done.signal()
        }
        done.wait()
        if let message = failure.get() {
            logger.critical("The daemon stopped with an error", metadata: ["error": "\(message)"])
            throw ExitCode.failure
        }
    }
}

/// The start-up error handed from the daemon's task to the waiting main thread.
private final class FailureBox: Sendable {
    private let message = Mutex<String?>(nil)
    func set(_ m: String) { message.withLock { $0 = m } }
    func get() -> String? { message.withLock { $0 } }
}
