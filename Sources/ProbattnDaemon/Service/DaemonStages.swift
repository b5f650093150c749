import Foundation
import Logging
import ProbattnCore
import ProbattnSession
import ProbattnStages
import ProbattnStore

/// The stage types and the threads of the daemon beyond the pipeline's (`PipelineStages`): the writers it links, and
/// how it divides the machine's cores between BLAS and the stages' compute budgets.
public enum DaemonStages {
    /// The writers a config's `role: writer` may select: `sqlite` (the default, `store.path`) and `memory` (nothing
    /// survives a restart; for tests and throw-away daemons).
    public static let writers = WriterRegistry(role: .writer, [SQLiteSessionStore.descriptor,
                                                               InMemorySessionStore.descriptor])

    /// Sets OpenBLAS's threads once (`BLAS.configureThreadsAtStart`) and returns the cores the core pool shares
    /// between the stage calls (the cores this process may use, `UsableCores`). Logs both.
    static func configureThreads(logger: Logger) -> (cores: Int, blasThreads: Int) {
        let blas = BLAS.configureThreadsAtStart(environment: ProcessInfo.processInfo.environment)
        let cores = UsableCores.count()
        logger.info("Threads", metadata: [
            "cores": "\(cores)", "blas_threads": "\(blas.threads)",
            "blas_threads_from": "\(blas.fromEnvironment ? BLAS.threadsEnvironmentVariable : "default (1)")",
        ])
        if blas.threads > 1 {
            logger.warning("OPENBLAS_NUM_THREADS above 1: every thread of a stage's budget may start that many BLAS threads, so the cores are oversubscribed (docs/PERFORMANCE.md, \"Threads\")",
                           metadata: ["blas_threads": "\(blas.threads)", "cores": "\(cores)"])
        }
        return (cores, blas.threads)
    }
}
