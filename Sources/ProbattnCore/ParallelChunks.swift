import Dispatch

/// Runs the chunks of one data-parallel loop on concurrent threads, for loops whose chunks write disjoint parts of
/// buffers they share through unsafe pointers (the blocked solver's row blocks, the propagator's pixel rows) or
/// share thread-safe state (`probattn eval --jobs`).
public enum ParallelChunks {
    /// Calls `body(0)`, ..., `body(count - 1)` concurrently (`DispatchQueue.concurrentPerform`; inline when `count` is
    /// 1) and returns once all have returned. `body` need not be `@Sendable`: the caller promises that calls with
    /// distinct indices may run at once (they write disjoint memory, or shared state through its own lock), which
    /// is what makes the unchecked hand-off to the worker threads safe.
    public static func perform(_ count: Int, _ body: (Int) -> Void) {
        if count == 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: count) { body($0) }
        }
    }
}
