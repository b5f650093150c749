import Foundation
import ProbattnSegmentation
import ProbattnStages

/// The per-image cache of encoder and adapter outputs, bounded by a memory budget with least-recently-used eviction.
/// Sessions' images are keyed by their store id, the images of stateless `predict` calls by their content hash; both
/// share the one budget. An evicted image is prepared again by its next request (the caller does that; `get` just
/// misses). The most recent entry is always kept, even when it alone exceeds the budget. A session's entry also holds
/// the propagator's state of its newest mask (`PropagationState`, about one byte per pixel plus the token posteriors),
/// counted in the entry's bytes and dropped with it. Thread-safe.
public final class PreparedCache: @unchecked Sendable {
    /// What an entry belongs to.
    public enum Key: Hashable, Sendable {
        /// An open session (its store id).
        case session(Int64)
        /// A `predict` image: its content hash, and the pipeline generation it was prepared with (the core bumps
        /// the generation when a reload brings a new pipeline).
        case content(String, generation: Int)
    }

    private let lock = NSLock()
    private var entries: [Key: (prepared: PreparedImage, state: (any PropagatorState)?, bytes: Int, lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var budget: Int
    public private(set) var evictions = 0

    public init(budgetBytes: Int) { budget = budgetBytes }

    public func setBudget(_ bytes: Int) {
        lock.lock(); defer { lock.unlock() }
        budget = bytes
        evict(keeping: nil)
    }

    public func get(_ key: Int64) -> PreparedImage? { get(.session(key)) }
    public func put(_ key: Int64, _ prepared: PreparedImage) { put(.session(key), prepared) }
    public func remove(_ key: Int64) { remove(.session(key)) }
    public func contains(_ key: Int64) -> Bool { contains(.session(key)) }

    /// Drops every `predict` entry prepared with a generation other than `generation`.
    public func removeContent(otherThan generation: Int) {
        lock.lock(); defer { lock.unlock() }
        for key in entries.keys {
            if case .content(_, let g) = key, g != generation { entries[key] = nil }
        }
    }

    public func get(_ key: Key) -> PreparedImage? {
        lock.lock(); defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        clock += 1
        entry.lastUse = clock
        entries[key] = entry
        return entry.prepared
    }

    public func put(_ key: Key, _ prepared: PreparedImage) {
        lock.lock(); defer { lock.unlock() }
        clock += 1
        entries[key] = (prepared, nil, prepared.memoryBytes, clock)
        evict(keeping: key)
    }

    /// The propagation state stored with a session's entry (nil when there is none or the entry was evicted).
    public func state(_ key: Int64) -> (any PropagatorState)? {
        lock.lock(); defer { lock.unlock() }
        return entries[.session(key)]?.state
    }

    /// Stores (or, with nil, drops) the propagation state of a session's entry; nothing when the entry is gone.
    public func setState(_ key: Int64, _ state: (any PropagatorState)?) {
        lock.lock(); defer { lock.unlock() }
        guard var entry = entries[.session(key)] else { return }
        entry.state = state
        entry.bytes = entry.prepared.memoryBytes + (state?.memoryBytes ?? 0)
        entries[.session(key)] = entry
        evict(keeping: .session(key))
    }

    public func remove(_ key: Key) {
        lock.lock(); defer { lock.unlock() }
        entries[key] = nil
    }

    public func contains(_ key: Key) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return entries[key] != nil
    }

    public var stats: (entries: Int, bytes: Int, budget: Int, evictions: Int) {
        lock.lock(); defer { lock.unlock() }
        return (entries.count, entries.values.reduce(0) { $0 + $1.bytes }, budget, evictions)
    }

    private func evict(keeping key: Key?) {
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
