import Foundation

/// Recent latencies per stage (the last 1024 samples each), for the `health` reply. Thread-safe.
public final class StageStatistics: @unchecked Sendable {
    public static let stages = ["decode", "encode", "adapt", "propagate", "commit", "feedback_total", "mask_rle"]
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

    /// For every stage of `stages`, the sample count and nearest-rank percentiles over the window.
    public func summary() -> [String: LatencySummary] {
        lock.lock(); defer { lock.unlock() }
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
