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

    /// Runs chunks `0..<chunks` on `workers` concurrent workers (inline on the calling thread when `workers` ≤ 1):
    /// worker w calls `body(chunk, w)` for chunks w, w + workers, w + 2·workers, … in increasing order, so which
    /// chunks share a worker (and its scratch memory) never depends on timing. The same promise as `perform`: calls
    /// for distinct chunks may run at once.
    public static func strips(chunks: Int, workers: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) {
        if workers <= 1 {
            for chunk in 0..<chunks { body(chunk, 0) }
            return
        }
        perform(workers) { worker in
            var chunk = worker
            while chunk < chunks {
                body(chunk, worker)
                chunk += workers
            }
        }
    }
}
