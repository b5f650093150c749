import Foundation
import ProbattnSegmentation
import ProbattnStages
import Synchronization

/// The per-image cache of encoder and adapter outputs, bounded by a memory budget with least-recently-used eviction.
/// Sessions' images are keyed by their store id, the images of stateless `predict` calls by their content hash; both
/// share the one budget. An evicted image is prepared again by its next request (the caller does that; `get` just
/// misses). The most recent entry is always kept, even when it alone exceeds the budget. A session's entry also holds
/// the propagator's state of its newest mask (`PropagationState`, about one byte per pixel plus the token posteriors),
/// counted in the entry's bytes and dropped with it. Thread-safe.
public final class PreparedCache: Sendable {
    /// What an entry belongs to.
    public enum Key: Hashable, Sendable {
        /// An open session (its store id).
        case session(Int64)
        /// A `predict` image: its content hash, and the pipeline generation it was prepared with (the core bumps
        /// the generation when a reload brings a new pipeline).
        case content(String, generation: Int)
    }

    private struct State {
        var entries: [Key: (prepared: PreparedImage, state: (any PropagatorState)?, bytes: Int, lastUse: UInt64)] = [:]
        var clock: UInt64 = 0
        var budget: Int
        var evictions = 0
    }

    private let state: Mutex<State>

    /// How many entries the budget has evicted since the cache was made.
    public var evictions: Int { state.withLock { $0.evictions } }

    public init(budgetBytes: Int) { state = Mutex(State(budget: budgetBytes)) }

    public func setBudget(_ bytes: Int) {
        state.withLock { state in
            state.budget = bytes
            Self.evict(&state, keeping: nil)
        }
    }

    public func get(_ key: Int64) -> PreparedImage? { get(.session(key)) }
    public func put(_ key: Int64, _ prepared: PreparedImage) { put(.session(key), prepared) }
    public func remove(_ key: Int64) { remove(.session(key)) }
    public func contains(_ key: Int64) -> Bool { contains(.session(key)) }

    /// Drops every `predict` entry prepared with a generation other than `generation`.
    public func removeContent(otherThan generation: Int) {
        state.withLock { state in
            for key in state.entries.keys {
                if case .content(_, let g) = key, g != generation { state.entries[key] = nil }
            }
        }
    }

    public func get(_ key: Key) -> PreparedImage? {
        state.withLock { state in
            guard var entry = state.entries[key] else { return nil }
            state.clock += 1
            entry.lastUse = state.clock
            state.entries[key] = entry
            return entry.prepared
        }
    }

    public func put(_ key: Key, _ prepared: PreparedImage) {
        state.withLock { state in
            state.clock += 1
            state.entries[key] = (prepared, nil, prepared.memoryBytes, state.clock)
            Self.evict(&state, keeping: key)
        }
    }

    /// The propagation state stored with a session's entry (nil when there is none or the entry was evicted).
    public func state(_ key: Int64) -> (any PropagatorState)? {
        state.withLock { $0.entries[.session(key)]?.state }
    }

    /// Stores (or, with nil, drops) the propagation state of a session's entry; nothing when the entry is gone.
    public func setState(_ key: Int64, _ propagatorState: (any PropagatorState)?) {
        state.withLock { state in
            guard var entry = state.entries[.session(key)] else { return }
            entry.state = propagatorState
            entry.bytes = entry.prepared.memoryBytes + (propagatorState?.memoryBytes ?? 0)
            state.entries[.session(key)] = entry
            Self.evict(&state, keeping: .session(key))
        }
    }

    public func remove(_ key: Key) {
        state.withLock { $0.entries[key] = nil }
    }

    public func contains(_ key: Key) -> Bool {
        state.withLock { $0.entries[key] != nil }
    }

    public var stats: (entries: Int, bytes: Int, budget: Int, evictions: Int) {
        state.withLock { state in
            (state.entries.count, state.entries.values.reduce(0) { $0 + $1.bytes }, state.budget, state.evictions)
        }
    }

    private static func evict(_ state: inout State, keeping key: Key?) {
        var total = state.entries.values.reduce(0) { $0 + $1.bytes }
        while total > state.budget {
            guard let victim = state.entries.filter({ $0.key != key })
                .min(by: { $0.value.lastUse < $1.value.lastUse })
            else { break }
            total -= victim.value.bytes
            state.entries[victim.key] = nil
            state.evictions += 1
        }
    }
}
