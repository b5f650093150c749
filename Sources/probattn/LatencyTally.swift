import Foundation

/// The bookkeeping that every annotator thread of a latency benchmark shares, whatever its transport
/// (`LatencyBenchmark` over ZeroMQ, `HTTPLatencyBenchmark` over HTTP and WebSocket): round trips per kind and per
/// click bucket, the versions each image reached, error replies, the click phase's span and the daemon's CPU time
/// over it. The annotator threads call it as their replies arrive; `finish` turns it into the run's report.
/// Unchecked `Sendable`: every `var` is touched only under `lock`.
final class LatencyTally: @unchecked Sendable {
    private let lock = NSLock()
    private var report = LatencyReport(samples: [:], throughputPerSecond: 0, clickPhaseSeconds: 0)
    /// Versions each image reached, from replies (what every subscriber of the image must receive).
    private var expectedVersions: [Int: Set<Int>] = [:]
    private var openFailed = false
    private var clickPhaseStart = UInt64.max
    private var clickPhaseEnd: UInt64 = 0
    private var cpuAtClickStart: Double?

    /// Records one reply: its round trip under `kind`, under its click's bucket when it answers the annotator's
    /// `click`-th click (which also counts it as a feedback of the click phase), and the version it announces
    /// (`recordsVersion`) or its error.
    func record(kind: String, milliseconds: Double, imageIndex: Int, ok: Bool, version: Int?,
                recordsVersion: Bool = true, error: @autoclosure () -> String = "", click: Int? = nil) {
        lock.withLock {
            report.samples[kind, default: []].append(milliseconds)
            if let click {
                report.feedbackCount += 1
                report.feedbackByClick[LatencyReport.clickBucket(click), default: []].append(milliseconds)
            }
            if ok {
                if recordsVersion, let version { expectedVersions[imageIndex, default: []].insert(version) }
            } else {
                report.errors.append("\(kind): \(error())")
            }
        }
    }

    /// An error that stops the run: a failed connection or an open that did not succeed.
    func fail(_ message: String) {
        lock.withLock {
            report.errors.append(message)
            openFailed = true
        }
    }

    /// Marks the open phase failed without an error line (the error reply is already recorded).
    func markOpenFailed() { lock.withLock { openFailed = true } }

    /// Whether an open failed: every annotator then stops after the open phase.
    var hasOpenFailed: Bool { lock.withLock { openFailed } }

    /// Adds to the report's counters and incidents (lost replies and the like) from an annotator thread.
    func amend(_ change: (inout LatencyReport) -> Void) { lock.withLock { change(&report) } }

    /// The versions image `imageIndex` reached so far.
    func expectedVersions(of imageIndex: Int) -> Set<Int> { lock.withLock { expectedVersions[imageIndex] ?? [] } }

    /// Called by each annotator when it starts and ends its clicks; the click phase spans the earliest start to the
    /// latest end.
    func clickPhaseStarted(at time: UInt64) { lock.withLock { clickPhaseStart = min(clickPhaseStart, time) } }
    func clickPhaseEnded(at time: UInt64) { lock.withLock { clickPhaseEnd = max(clickPhaseEnd, time) } }

    /// The daemon's CPU time when everyone starts clicking and when the last reply arrived (each called once, by
    /// the last annotator to reach the barrier); nothing when the daemon's process is not known.
    func readDaemonCPUAtClickStart(pid: Int32?) {
        guard let pid else { return }
        let seconds = DaemonCPU.seconds(pid: pid)
        lock.withLock { cpuAtClickStart = seconds }
    }

    func readDaemonCPUAtClickEnd(pid: Int32?) {
        guard let pid, let now = DaemonCPU.seconds(pid: pid) else { return }
        lock.withLock {
            guard let before = cpuAtClickStart else { return }
            report.daemonCPUSeconds = now - before
            report.daemonPID = pid
        }
    }

    /// Counts what one receiver (a subscriber or WebSocket, named in its incidents) got of the versions its image
    /// reached: every version missing from `log` is a lost update; its duplicates and out-of-order updates count
    /// too.
    func countUpdates(_ log: UpdateLog, of imageIndex: Int, imageID: String, receiver: String) {
        lock.withLock {
            let expected = expectedVersions[imageIndex] ?? []
            let missing = expected.subtracting(log.received.map(\.version)).sorted()
            report.lostUpdates += missing.count
            report.incidents += missing.map { "lost update: version \($0) of \(imageID) never reached \(receiver)" }
            report.incidents += log.incidents.map { "\($0) (\(receiver))" }
            report.duplicatedUpdates += log.duplicated
            report.outOfOrderUpdates += log.outOfOrder
        }
    }

    /// Records a publish delay: a feedback sent → its mask update received (milliseconds).
    func recordPublish(milliseconds: Double) {
        lock.withLock { report.samples["publish", default: []].append(milliseconds) }
    }

    /// The report, with the click phase's length and the feedback throughput over it; called once, after every
    /// annotator finished.
    func finish() -> LatencyReport {
        lock.withLock {
            if clickPhaseEnd > clickPhaseStart {
                report.clickPhaseSeconds = Double(clickPhaseEnd - clickPhaseStart) / 1e9
                report.throughputPerSecond = Double(report.feedbackCount) / report.clickPhaseSeconds
            }
            return report
        }
    }
}

/// The mask updates one receiver (a PUB subscriber or a WebSocket) got of its image, kept by its reader thread
/// under the receiver's own lock: each version once, in increasing order, or counted as a duplicate or out of
/// order.
struct UpdateLog {
    struct Update { var version: Int; var requestID: String; var receivedAt: UInt64 }
    private(set) var received: [Update] = []
    private(set) var duplicated = 0, outOfOrder = 0
    private(set) var incidents: [String] = []
    private var seen = Set<Int>()
    private var highest = Int.min

    /// Called for every update as it arrives (`at`: uptime nanoseconds).
    mutating func record(version: Int, requestID: String, at time: UInt64) {
        if seen.contains(version) {
            duplicated += 1
            incidents.append("duplicated update: version \(version)")
            return
        }
        if version < highest {
            outOfOrder += 1
            incidents.append("out-of-order update: version \(version) after \(highest)")
        }
        seen.insert(version)
        highest = max(highest, version)
        received.append(Update(version: version, requestID: requestID, receivedAt: time))
    }

    /// Whether every version of `versions` has arrived.
    func holds(_ versions: Set<Int>) -> Bool { versions.isSubset(of: seen) }
}

extension NSCondition {
    /// Waits on the condition, which the caller has locked, until `done()` holds or `deadline` (uptime
    /// nanoseconds) has passed; a receiver's reader thread broadcasts after every message.
    func wait(until done: () -> Bool, deadline: UInt64) {
        while !done() {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return }
            _ = wait(until: Date(timeIntervalSinceNow: Double(deadline - now) / 1e9))
        }
    }
}
