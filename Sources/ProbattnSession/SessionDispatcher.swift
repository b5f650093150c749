import Foundation
import Logging
import Synchronization

/// Runs session commands for the transports: the per-image commands as jobs on the scheduler (one image's jobs one
/// at a time, in arrival order; different images concurrently), `list_sessions` and `health` at once. Every
/// submitted request gets exactly one completion; when the mask changed, every update listener then receives the
/// update, on the same worker and before the image's next job, so each listener sees one image's updates in version
/// order and after that request's completion.
public final class SessionDispatcher: Sendable {
    public typealias Completion = @Sendable (Result<CommandResult, ProtocolError>) -> Void
    public typealias UpdateListener = @Sendable (MaskUpdate) -> Void

    public let core: SessionCore
    public let scheduler: WorkScheduler
    private let logger: Logger
    private let startTime = DispatchTime.now().uptimeNanoseconds
    private let listeners = Mutex<(byToken: [Int: UpdateListener], next: Int)>(([:], 0))

    public init(core: SessionCore, scheduler: WorkScheduler, logger: Logger = Logger(label: "probattn.session")) {
        self.core = core
        self.scheduler = scheduler
        self.logger = logger
    }

    /// Registers a listener for every image's updates; returns its token for `removeListener`.
    @discardableResult
    public func addListener(_ listener: @escaping UpdateListener) -> Int {
        listeners.withLock { listeners in
            listeners.next += 1
            listeners.byToken[listeners.next] = listener
            return listeners.next
        }
    }

    public func removeListener(_ token: Int) { _ = listeners.withLock { $0.byToken.removeValue(forKey: token) } }

    /// Runs `request`; `completion` is called exactly once, at once (daemon-wide kinds, or `busy` when the image's
    /// queue is full) or from a worker thread when the job has run. `received` is when the transport got the request.
    public func submit(_ request: Request, received: UInt64 = DispatchTime.now().uptimeNanoseconds,
                       completion: @escaping Completion) {
        switch request.body {
        case .health:
            completion(.success(.health(health())))
            return
        case .listSessions:
            completion(.success(.sessions(summaries(visibleTo: request.principal))))
            return
        case .listPlugins:
            completion(.failure(ProtocolError(.internal, "'list_plugins' is answered by the transport")))
            return
        default:
            break
        }
        guard let imageID = request.body.queueKey else {
            completion(.failure(ProtocolError(.internal, "request without an image")))
            return
        }
        let accepted = scheduler.submit(key: imageID) { [self] in
            let started = DispatchTime.now().uptimeNanoseconds
            let queueSeconds = Double(started - received) / 1e9
            var meta: Logger.Metadata = ["request": "\(request.requestID)", "kind": "\(request.kind.rawValue)"]
            if case .predict(let prompt) = request.body { meta["content"] = "\(prompt.contentHash)" } else {
                meta["image"] = "\(imageID)"
            }
            if let annotator = request.body.annotator { meta["annotator"] = "\(annotator)" }
            let outcome: CommandOutcome
            do {
                outcome = try core.execute(request, queueSeconds: queueSeconds, received: received)
            } catch {
                let failure = error as? ProtocolError ?? ProtocolError(.internal, "\(error)")
                meta["code"] = "\(failure.code.rawValue)"
                logger.notice("Request refused: \(failure.message)", metadata: meta)
                completion(.failure(failure))
                return
            }
            if let version = outcome.update?.version { meta["version"] = "\(version)" }
            meta["ms"] = "\(String(format: "%.1f", Double(DispatchTime.now().uptimeNanoseconds - received) / 1e6))"
            logger.info("Request done", metadata: meta)
            completion(.success(outcome.result))
            if let update = outcome.update {
                for listener in listeners.withLock({ Array($0.byToken.values) }) { listener(update) }
            }
        }
        if !accepted {
            let depth = scheduler.queueDepths[imageID] ?? 0
            let what = request.body.imageID.map { "image '\($0)'" } ?? "this image content"
            completion(.failure(ProtocolError(
                .busy, "the daemon is busy (\(depth) requests queued for \(what), \(scheduler.pendingCount) pending in all); retry later")))
        }
    }

    /// `list_sessions`: the sessions `principal` may list, with their queue depths.
    public func summaries(visibleTo principal: Principal? = nil) -> [SessionSummary] {
        let depths = scheduler.queueDepths
        return core.summaries(visibleTo: principal).map { summary in
            var s = summary
            s.queueDepth = depths[s.imageID] ?? 0
            return s
        }
    }

    /// `health`.
    public func health() -> HealthReport {
        let cache = core.cache.stats
        return HealthReport(uptimeSeconds: Double(DispatchTime.now().uptimeNanoseconds - startTime) / 1e9,
                            sessions: core.sessionCount, pendingRequests: scheduler.pendingCount,
                            workers: scheduler.workerCount,
                            // `predict` queues are keyed "\0predict/<hash>": shown as "predict/<hash>".
                            queueDepths: Dictionary(scheduler.queueDepths.map {
                                ($0.key.hasPrefix("\u{0}") ? String($0.key.dropFirst()) : $0.key, $0.value)
                            }, uniquingKeysWith: +),
                            cacheEntries: cache.entries, cacheBytes: cache.bytes, cacheBudgetBytes: cache.budget,
                            cacheEvictions: cache.evictions, stages: core.statistics.summary())
    }
}
