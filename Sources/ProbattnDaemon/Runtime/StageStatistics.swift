import Foundation
import ProbattnSegmentation

/// Recent latencies per stage (the last 1024 samples each), for the `health` reply. Thread-safe.
public final class StageStatistics: @unchecked Sendable {
    public static let stages = ["decode", "encode", "adapt", "propagate", "commit", "feedback_total"]
    private static let window = 1024
    private let lock = NSLock()
    private var samples: [String: [Double]] = [:]
    private var next: [String: Int] = [:]
    private var counts: [String: Int] = [:]

    public init() {}

    /// Records one duration in seconds.
    public func record(_ stage: String, seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        counts[stage, default: 0] += 1
        var ring = samples[stage, default: []]
        if ring.count < Self.window {
            ring.append(seconds)
        } else {
            let i = next[stage, default: 0]
            ring[i] = seconds
            next[stage] = (i + 1) % Self.window
        }
        samples[stage] = ring
    }

    /// `{stage: {count, p50_ms, p90_ms, p99_ms, max_ms}}` (nearest-rank percentiles over the window).
    public func summary() -> JSONValue {
        lock.lock(); defer { lock.unlock() }
        var out: [String: JSONValue] = [:]
        for stage in Self.stages {
            let sorted = samples[stage, default: []].sorted()
            func percentile(_ p: Double) -> JSONValue {
                guard !sorted.isEmpty else { return .null }
                let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
                return .ms(sorted[min(max(rank, 0), sorted.count - 1)])
            }
            out[stage] = ["count": .int(counts[stage, default: 0]), "p50_ms": percentile(0.5),
                          "p90_ms": percentile(0.9), "p99_ms": percentile(0.99),
                          "max_ms": sorted.last.map(JSONValue.ms) ?? .null]
        }
        return .object(out)
    }
}
