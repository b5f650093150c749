import Foundation
import ProbattnStages
import Synchronization

/// Recent latencies per stage (the last 1024 samples each), for the `health` reply; the `StageMetrics` of every
/// stage call the session core makes. Thread-safe.
public final class StageStatistics: StageMetrics, Sendable {
    public static let stages = ["decode", "encode", "adapt", "propagate", "commit", "feedback_total", "mask_rle"]
    private static let window = 1024
    private struct State {
        var samples: [String: [Double]] = [:]
        var next: [String: Int] = [:]
        var counts: [String: Int] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Records one duration in seconds.
    public func record(_ stage: String, seconds: Double) {
        state.withLock { state in
            state.counts[stage, default: 0] += 1
            var ring = state.samples[stage, default: []]
            if ring.count < Self.window {
                ring.append(seconds)
            } else {
                let i = state.next[stage, default: 0]
                ring[i] = seconds
                state.next[stage] = (i + 1) % Self.window
            }
            state.samples[stage] = ring
        }
    }

    /// For every stage of `stages`, the sample count and nearest-rank percentiles over the window.
    public func summary() -> [String: LatencySummary] {
        let (samples, counts) = state.withLock { ($0.samples, $0.counts) }
        var out: [String: LatencySummary] = [:]
        for stage in Self.stages {
            let sorted = samples[stage, default: []].sorted()
            func percentile(_ p: Double) -> Double? {
                guard !sorted.isEmpty else { return nil }
                let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
                return sorted[min(max(rank, 0), sorted.count - 1)]
            }
            out[stage] = LatencySummary(count: counts[stage, default: 0], p50: percentile(0.5), p90: percentile(0.9),
                                        p99: percentile(0.99), max: sorted.last)
        }
        return out
    }
}

/// Recent latencies of one stage, in seconds (nil when there is no sample yet).
public struct LatencySummary: Sendable, Equatable {
    public var count: Int
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?
    public var max: Double?
}
