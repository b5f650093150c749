import Foundation
import ProbattnCore

/// How many threads one stage call may use. A stage cuts its parallel work into a number of chunks that depends
/// only on the input (never on the budget) and hands them to `forEachChunk` or `mapChunks`; the budget decides only
/// how many threads run them, and results are combined in chunk order, so a stage's output is bit-identical for
/// every budget.
///
/// The session core takes each call's budget from its `CorePool`; `probattn eval --jobs J` gives each job
/// max(1, cores / J) threads; calls outside a request run with `single`.
public struct ComputeBudget: Sendable, Equatable, CustomStringConvertible {
    /// The most threads that run this call's chunks at once (at least 1).
    public let threads: Int

    public init(threads: Int) { self.threads = max(1, threads) }

    /// One thread: every chunk on the calling thread, in order.
    public static let single = ComputeBudget(threads: 1)

    public var description: String { "\(threads) thread\(threads == 1 ? "" : "s")" }

    /// The number of workers that run `count` chunks: min(threads, count).
    public func workers(forChunks count: Int) -> Int { max(0, min(threads, count)) }

    /// Calls `body(chunk)` once for every chunk in `0..<count`, on at most `threads` threads at once (the calling
    /// thread is one of them), and returns when all have finished. Worker w runs chunks w, w + W, w + 2W, … in
    /// increasing order (W = `workers(forChunks:)`), so which chunks share a thread does not depend on timing.
    /// Chunks must not depend on each other's side effects: each writes only its own part of the output.
    public func forEachChunk(count: Int, _ body: (Int) -> Void) {
        ParallelChunks.strips(chunks: count, workers: workers(forChunks: count)) { chunk, _ in body(chunk) }
    }

    /// `forEachChunk` collecting each chunk's value: the result is in chunk order (combine it in that order, so
    /// that the reduction is the same for every budget).
    public func mapChunks<Value>(count: Int, _ body: (Int) -> Value) -> [Value] {
        guard count > 0 else { return [] }
        let slots = UnsafeMutableBufferPointer<Value?>.allocate(capacity: count)
        slots.initialize(repeating: nil)
        defer { slots.deinitialize(); slots.deallocate() }
        forEachChunk(count: count) { chunk in slots[chunk] = body(chunk) }
        return slots.map { $0! }
    }

    /// The rows `start..<end` of chunk `chunk` when `total` rows are cut into `count` chunks of near-equal size.
    public static func range(ofChunk chunk: Int, count: Int, total: Int) -> Range<Int> {
        (chunk * total / count)..<((chunk + 1) * total / count)
    }
}

/// A process-wide pool of cores from which every stage call takes its budget, so that concurrent calls never use
/// more threads in all than the pool has cores. A call takes its fair share — `cores / demand`, where `demand` is
/// the larger of the calls holding cores or waiting for them (itself included) and the requests in progress
/// (`withRequest`: commands that will call stages, whether or not they are in a stage call at this moment) — capped
/// by `maximumPerCall` and by the cores free at that moment, at least one (it waits while none is free), and gives
/// them back when it ends. So a call on an idle daemon gets `maximumPerCall` cores, and requests that overlap run
/// side by side on a share each instead of one after the other on all cores (a click's stages are not all
/// parallel, so one click on every core leaves cores idle; and a call that starts while another request is between
/// its stage calls, encoding or committing, must not take that request's share). Calls must not nest (a call
/// holding cores never asks for more). Thread-safe.
public final class CorePool: @unchecked Sendable {
    // @unchecked: `free` and `calls` are read and written only while `condition` is locked.
    /// The cores the pool hands out.
    public let cores: Int
    /// The largest budget one call gets.
    public let maximumPerCall: Int
    private let condition = NSCondition()
    private var free: Int
    /// The calls holding cores or waiting for them.
    private var calls = 0
    /// The requests in progress (`withRequest`).
    private var requests = 0

    /// `cores` cores (at least 1); each call gets at most `maximumPerCall` of them (default: all).
    public init(cores: Int, maximumPerCall: Int? = nil) {
        self.cores = max(1, cores)
        self.maximumPerCall = max(1, min(self.cores, maximumPerCall ?? self.cores))
        free = self.cores
    }

    /// The cores not taken at this moment.
    public var freeCores: Int { condition.withLock { free } }

    /// Takes up to `maximumPerCall` free cores without waiting; nil when none is free. Give them back with `give`.
    public func tryTake() -> ComputeBudget? {
        condition.withLock {
            calls += 1
            guard let budget = takeLocked() else { calls -= 1; return nil }
            return budget
        }
    }

    /// Takes up to `maximumPerCall` free cores, waiting while none is free. Give them back with `give`.
    public func take() -> ComputeBudget {
        condition.lock()
        defer { condition.unlock() }
        calls += 1
        while true {
            if let budget = takeLocked() { return budget }
            condition.wait()
        }
    }

    /// Returns the cores of a budget from `take` or `tryTake`.
    public func give(_ budget: ComputeBudget) {
        condition.withLock {
            free = min(cores, free + budget.threads)
            calls = max(0, calls - 1)
            condition.broadcast()
        }
    }

    /// Runs `body`, one request whose stage calls take budgets from this pool, counted in the demand that sets every
    /// call's fair share while it runs. Called by the session core around each command that runs stages.
    public func withRequest<T>(_ body: () throws -> T) rethrows -> T {
        condition.withLock { requests += 1 }
        defer { condition.withLock { requests -= 1 } }
        return try body()
    }

    /// Runs `body` with a budget taken from the pool (waiting while no core is free) and gives it back after.
    public func withBudget<T>(_ body: (ComputeBudget) throws -> T) rethrows -> T {
        let budget = take()
        defer { give(budget) }
        return try body(budget)
    }

    private func takeLocked() -> ComputeBudget? {
        guard free > 0 else { return nil }
        let threads = min(free, maximumPerCall, max(1, cores / max(1, calls, requests)))
        free -= threads
        return ComputeBudget(threads: threads)
    }
}
