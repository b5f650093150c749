import Foundation
import ProbattnSegmentation

/// The per-image cache of encoder and adapter outputs, bounded by a memory budget with least-recently-used eviction.
/// An evicted image is prepared again by its next request (the caller does that; `get` just misses). The most recent
/// entry is always kept, even when it alone exceeds the budget. Thread-safe.
public final class PreparedCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [Int64: (prepared: PreparedImage, bytes: Int, lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var budget: Int
    public private(set) var evictions = 0

    public init(budgetBytes: Int) { budget = budgetBytes }

    public func setBudget(_ bytes: Int) {
        lock.lock(); defer { lock.unlock() }
        budget = bytes
        evict(keeping: nil)
    }

    public func get(_ key: Int64) -> PreparedImage? {
        lock.lock(); defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        clock += 1
        entry.lastUse = clock
        entries[key] = entry
        return entry.prepared
    }

    public func put(_ key: Int64, _ prepared: PreparedImage) {
        lock.lock(); defer { lock.unlock() }
        clock += 1
        entries[key] = (prepared, prepared.memoryBytes, clock)
        evict(keeping: key)
    }

    public func remove(_ key: Int64) {
        lock.lock(); defer { lock.unlock() }
        entries[key] = nil
    }

    public func contains(_ key: Int64) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return entries[key] != nil
    }

    public var stats: (entries: Int, bytes: Int, budget: Int, evictions: Int) {
        lock.lock(); defer { lock.unlock() }
        return (entries.count, entries.values.reduce(0) { $0 + $1.bytes }, budget, evictions)
    }

    private func evict(keeping key: Int64?) {
        var total = entries.values.reduce(0) { $0 + $1.bytes }
        while total > budget {
            guard let victim = entries.filter({ $0.key != key }).min(by: { $0.value.lastUse < $1.value.lastUse })
            else { break }
            total -= victim.value.bytes
            entries[victim.key] = nil
            evictions += 1
        }
    }
}
