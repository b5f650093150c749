import Foundation

/// Runs jobs on a fixed pool of worker threads with one FIFO queue per key (an image id): jobs of one key run one at a
/// time in submission order, jobs of different keys run concurrently. Queues are bounded: `submit` refuses a job
/// (the caller answers `busy`) when its key already has `perKeyLimit` jobs waiting or `totalLimit` jobs are pending.
///
/// Worker threads are plain OS threads, so blocking stages (BLAS, SQLite commits) never occupy Swift concurrency's
/// cooperative pool.
/// Unchecked `Sendable`: every `var` is touched only under `condition` (an NSCondition: workers wait on it, which
/// `Mutex` cannot do); `threads` only in `init`.
public final class WorkScheduler: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    private let condition = NSCondition()
    private var queues: [String: [Job]] = [:]
    private var ready: [String] = []          // keys with waiting jobs and none running, in the order they became ready
    private var running: [String: UInt64] = [:]  // key -> start time (ns) of its running job
    private var pending = 0                    // waiting + running
    private var stopped = false
    private var threads: [Thread] = []
    private var perKeyLimit: Int
    private var totalLimit: Int

    public let workerCount: Int

    public init(workers: Int, perKeyLimit: Int, totalLimit: Int) {
        workerCount = max(1, workers)
        self.perKeyLimit = perKeyLimit
        self.totalLimit = totalLimit
        for index in 0..<workerCount {
            let thread = Thread { [unowned self] in self.workerLoop() }
            thread.name = "probattnd-worker-\(index)"
            thread.stackSize = 8 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Changes the queue bounds (a config reload); jobs already queued stay.
    public func setLimits(perKey: Int, total: Int) {
        condition.lock(); defer { condition.unlock() }
        perKeyLimit = perKey
        totalLimit = total
    }

    /// Queues `job` behind the other jobs of `key`; false when a bound is reached (nothing queued).
    public func submit(key: String, _ job: @escaping Job) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard !stopped, pending < totalLimit else { return false }
        let waiting = queues[key, default: []]
        guard waiting.count < perKeyLimit else { return false }
        queues[key, default: []].append(job)
        pending += 1
        if running[key] == nil && waiting.isEmpty { ready.append(key) }
        condition.signal()
        return true
    }

    /// Jobs waiting or running.
    public var pendingCount: Int { condition.lock(); defer { condition.unlock() }; return pending }

    /// Waiting jobs per key (keys with none are left out).
    public var queueDepths: [String: Int] {
        condition.lock(); defer { condition.unlock() }
        var depths: [String: Int] = [:]
        for (key, jobs) in queues where !jobs.isEmpty { depths[key] = jobs.count }
        for key in running.keys { depths[key, default: 0] += 1 }
        return depths
    }

    /// How long the oldest running job has been running, in seconds (0 when idle): the watchdog's health signal.
    public var longestRunningSeconds: Double {
        condition.lock(); defer { condition.unlock() }
        guard let oldest = running.values.min() else { return 0 }
        return Double(DispatchTime.now().uptimeNanoseconds &- oldest) / 1e9
    }

    /// Lets the workers finish what is queued, then ends them; blocks until they are done.
    public func shutdown() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while pending > 0 { condition.wait() }
        condition.unlock()
    }

    private func workerLoop() {
        while true {
            condition.lock()
            while ready.isEmpty && !(stopped && pending == 0) { condition.wait() }
            if ready.isEmpty { condition.unlock(); return }
            let key = ready.removeFirst()
            let job = queues[key]!.removeFirst()
            running[key] = DispatchTime.now().uptimeNanoseconds
            condition.unlock()

            job()

            condition.lock()
            running[key] = nil
            pending -= 1
            if let rest = queues[key], !rest.isEmpty { ready.append(key) } else { queues[key] = nil }
            condition.broadcast()
            condition.unlock()
        }
    }
}
