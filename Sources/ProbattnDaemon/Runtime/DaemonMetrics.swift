import Foundation
import Metrics
import Prometheus
import ProbattnSession
import Synchronization

/// The daemon's Prometheus metrics (swift-metrics handlers from a swift-prometheus factory, on a registry of this
/// runtime's own rather than the process-wide bootstrap, so that several runtimes in one process do not share counts).
/// Both transports count every reply here; `exposition()` is what `GET /metrics` returns. Names are listed in
/// docs/HTTP.md.
final class DaemonMetrics: Sendable {
    /// The stage names of the latency histograms (the session core's timing keys).
    static let stages = ["decode", "encode", "adapt", "propagate", "commit"]

    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The request counters made so far, by "transport|kind|code".
    private let requestCounters = Mutex<[String: Metrics.Counter]>([:])
    private let stageTimers: [String: Metrics.Timer]
    private let openSessions: Metrics.Gauge
    private let cacheBytes: Metrics.Gauge
    private let queueDepth: Metrics.Gauge
    private let webSockets: Metrics.Gauge
    private let cacheEvictions: Metrics.Counter
    /// The cache evictions already added to `cacheEvictions`.
    private let evictionsCounted = Mutex(0)

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(500),
            .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        stageTimers = Dictionary(uniqueKeysWithValues: Self.stages.map { stage in
            (stage, Metrics.Timer(label: "probattn_stage_duration_seconds", dimensions: [("stage", stage)],
                                  factory: factory))
        })
        openSessions = Metrics.Gauge(label: "probattn_open_sessions", factory: factory)
        cacheBytes = Metrics.Gauge(label: "probattn_cache_bytes", factory: factory)
        queueDepth = Metrics.Gauge(label: "probattn_queue_depth", factory: factory)
        webSockets = Metrics.Gauge(label: "probattn_websocket_connections", factory: factory)
        cacheEvictions = Metrics.Counter(label: "probattn_cache_evictions_total", factory: factory)
    }

    /// Counts one reply: `transport` is `zmq`, `http` or `ws`; `kind` a request kind (anything else is counted as
    /// `unknown`, so clients cannot create label values); `code` is `ok` or the error code.
    func countRequest(transport: String, kind: String?, code: String) {
        let kindLabel = kind.flatMap(RequestKind.init(rawValue:))?.rawValue ?? "unknown"
        let key = "\(transport)|\(kindLabel)|\(code)"
        let counter = requestCounters.withLock { requestCounters -> Metrics.Counter in
            if let existing = requestCounters[key] { return existing }
            let made = Metrics.Counter(label: "probattn_requests_total",
                                       dimensions: [("transport", transport), ("kind", kindLabel), ("code", code)],
                                       factory: factory)
            requestCounters[key] = made
            return made
        }
        counter.increment()
    }

    /// Records the stage timings (seconds) of a result; steps that did not run (0) are skipped.
    func recordStages(_ timings: [String: Double]) {
        for (stage, timer) in stageTimers {
            if let seconds = timings[stage], seconds > 0 { timer.recordSeconds(seconds) }
        }
    }

    /// The stage timings a command result carries.
    func recordStages(of result: CommandResult) {
        switch result {
        case .opened(let opened): recordStages(opened.timings)
        case .changed(let change): recordStages(change.timings)
        default: break
        }
    }

    /// The text exposition (format 0.0.4), after setting the gauges from `health` and the WebSocket count.
    func exposition(health: HealthReport, webSocketConnections: Int) -> [UInt8] {
        openSessions.record(health.sessions)
        cacheBytes.record(health.cacheBytes)
        queueDepth.record(health.pendingRequests)
        webSockets.record(webSocketConnections)
        evictionsCounted.withLock { evictionsCounted in
            if health.cacheEvictions > evictionsCounted {
                cacheEvictions.increment(by: health.cacheEvictions - evictionsCounted)
                evictionsCounted = health.cacheEvictions
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8192)
        registry.emit(into: &bytes)
        return bytes
    }
}
