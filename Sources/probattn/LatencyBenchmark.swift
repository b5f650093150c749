import Foundation
import ProbattnCore
import ProbattnClient
import ProbattnSession
import ProbattnJSON
import ProbattnImaging
import ProbattnSegmentation
import ProbattnZMQ

/// One image the benchmark opens: its encoded bytes and, for synthetic images, which pixels are the object.
struct BenchImage: Sendable {
    var name: String
    var bytes: [UInt8]
    var width: Int
    var height: Int
    /// Ground truth for choosing click classes; nil for images from a folder (classes then alternate).
    var isObject: [Bool]?
}

extension BenchImage {
    /// A click position: a pixel of the wanted class when the image has ground truth (the class then follows the
    /// pixel), a uniformly random pixel with the wanted class otherwise.
    func clickPosition(wantObject: Bool, random: inout SplitMix64) -> (x: Int, y: Int, isObject: Bool) {
        for _ in 0..<1000 {
            let x = Int(random.next() % UInt64(width))
            let y = Int(random.next() % UInt64(height))
            guard let truth = isObject else { return (x, y, wantObject) }
            if truth[y * width + x] == wantObject { return (x, y, wantObject) }
        }
        let x = Int(random.next() % UInt64(width)), y = Int(random.next() % UInt64(height))
        return (x, y, isObject?[y * width + x] ?? wantObject)
    }
}

/// The settings of one `probattn bench latency` run.
struct LatencyBenchmarkSettings: Sendable {
    var requestEndpoint: String
    var resultsEndpoint: String
    var annotators: Int
    var clicksPerAnnotator: Int
    /// Seconds to wait for one reply before counting it lost.
    var timeout: Double
    var seed: UInt64
    /// CURVE keys for a secured daemon (every socket of the run uses them); nil for an open daemon.
    var curve: ZMQCurveClientKeys? = nil
    /// The annotator every simulated annotator acts as (a client key's identity); nil: `annotator-N`.
    var annotatorName: String? = nil
    /// The daemon's process, whose CPU time over the click phase the report gives (`DaemonCPU`); nil: not measured.
    var daemonPID: Int32? = nil
}

/// What a run measured. Times are milliseconds.
struct LatencyReport: Sendable {
    /// Round trips per request kind (`open_image`, `get_mask`, `feedback`, `close_image`) and the publish delay
    /// (`publish`: feedback sent → its mask update received on the PUB socket).
    var samples: [String: [Double]]
    /// Feedback replies per second over the click phase (all annotators together).
    var throughputPerSecond: Double
    var clickPhaseSeconds: Double
    /// Replies never received (within the timeout) plus updates a subscriber never received.
    var lostReplies = 0, lostUpdates = 0
    /// Replies or updates received twice.
    var duplicatedReplies = 0, duplicatedUpdates = 0
    /// Replies to an earlier request arriving after a later one was answered, or updates with a version lower than
    /// one already seen.
    var outOfOrderReplies = 0, outOfOrderUpdates = 0
    /// Error replies (`ok: false`), as "kind: code: message".
    var errors: [String] = []
    /// One line per lost, duplicated or out-of-order reply or update, naming the request or version.
    var incidents: [String] = []
    /// Feedback round trips by the annotator's click number (1 = its first click), in the buckets of
    /// `clickBucket`.
    var feedbackByClick: [String: [Double]] = [:]
    /// The daemon's CPU seconds (utime + stime) over the click phase, with its pid; nil when not measured.
    var daemonCPUSeconds: Double?
    var daemonPID: Int32?
    /// Feedback replies received in the click phase.
    var feedbackCount = 0

    /// The bucket of an annotator's `click`-th click (1-based): `1-10`, `11-50`, `51-200`, `201-500`, `501-`.
    static func clickBucket(_ click: Int) -> String {
        switch click {
        case ...10: return "1-10"
        case 11...50: return "11-50"
        case 51...200: return "51-200"
        case 201...500: return "201-500"
        default: return "501-"
        }
    }

    /// The daemon's CPU milliseconds per feedback of the click phase; nil when not measured.
    var daemonCPUMillisecondsPerFeedback: Double? {
        guard let daemonCPUSeconds, feedbackCount > 0 else { return nil }
        return daemonCPUSeconds * 1e3 / Double(feedbackCount)
    }

    var lost: Int { lostReplies + lostUpdates }
    var duplicated: Int { duplicatedReplies + duplicatedUpdates }
    var outOfOrder: Int { outOfOrderReplies + outOfOrderUpdates }
}

/// Percentiles of one kind's samples (nearest-rank).
struct LatencySummary: Codable, Equatable {
    var count: Int
    var p50Ms: Double
    var p90Ms: Double
    var p99Ms: Double
    var maxMs: Double

    enum CodingKeys: String, CodingKey {
        case count, p50Ms = "p50_ms", p90Ms = "p90_ms", p99Ms = "p99_ms", maxMs = "max_ms"
    }

    init(_ samples: [Double]) {
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
            return (sorted[index] * 1000).rounded() / 1000
        }
        count = sorted.count
        p50Ms = rank(0.50)
        p90Ms = rank(0.90)
        p99Ms = rank(0.99)
        maxMs = rank(1.0)
    }
}

/// The daemon's CPU time over the click phase, in the `--json` document.
struct DaemonCPUJSON: Codable {
    var pid: Int32
    var cpuSeconds: Double
    var feedback: Int
    var cpuMsPerFeedback: Double

    enum CodingKeys: String, CodingKey {
        case pid, cpuSeconds = "cpu_s", feedback, cpuMsPerFeedback = "cpu_ms_per_feedback"
    }
}

/// The `--json` document: the keys issue 6 names, the feedback round trips by click number (issue 19) and the
/// daemon's CPU time per feedback (null when the daemon's process is unknown).
struct LatencyJSON: Codable {
    var kinds: [String: LatencySummary]
    var throughputPerSecond: Double
    var lost: Int
    var duplicated: Int
    var outOfOrder: Int
    var feedbackByClick: [String: LatencySummary]
    var daemonCPU: DaemonCPUJSON?

    enum CodingKeys: String, CodingKey {
        case kinds, throughputPerSecond = "throughput_per_s", lost, duplicated, outOfOrder = "out_of_order"
        case feedbackByClick = "feedback_by_click", daemonCPU = "daemon_cpu"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kinds, forKey: .kinds)
        try container.encode(throughputPerSecond, forKey: .throughputPerSecond)
        try container.encode(lost, forKey: .lost)
        try container.encode(duplicated, forKey: .duplicated)
        try container.encode(outOfOrder, forKey: .outOfOrder)
        try container.encode(feedbackByClick, forKey: .feedbackByClick)
        try container.encode(daemonCPU, forKey: .daemonCPU)  // null when not measured
    }

    init(_ report: LatencyReport) {
        feedbackByClick = report.feedbackByClick.mapValues(LatencySummary.init)
        if let pid = report.daemonPID, let seconds = report.daemonCPUSeconds,
           let perFeedback = report.daemonCPUMillisecondsPerFeedback {
            daemonCPU = DaemonCPUJSON(pid: pid, cpuSeconds: (seconds * 1000).rounded() / 1000,
                                      feedback: report.feedbackCount,
                                      cpuMsPerFeedback: (perFeedback * 1000).rounded() / 1000)
        }
        kinds = report.samples.mapValues(LatencySummary.init)
        throughputPerSecond = (report.throughputPerSecond * 100).rounded() / 100
        lost = report.lost
        duplicated = report.duplicated
        outOfOrder = report.outOfOrder
    }
}

/// Drives a running daemon like a team of annotators in a closed loop and measures it.
///
/// Annotator `a` works on image `a % images.count`; the first annotator of each image opens it, the others join it
/// with `get_mask` (as a late joiner does). Every annotator has its own DEALER and its own SUB socket subscribed to
/// its image, each on its own thread. Phases, separated by barriers: connect and subscribe (then 0.5 s so that
/// ZeroMQ subscriptions are in place before the first update), open (all images at once), join, clicks (each
/// annotator sends its next click as soon as the previous reply arrives, no think time), close. Publish delays are
/// matched by the `request_id` that mask updates carry; every subscriber must see every version of its image once,
/// in increasing order.
final class LatencyBenchmark: Sendable {
    let settings: LatencyBenchmarkSettings
    let images: [BenchImage]
    private let runID = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
    private let tally = LatencyTally()

    init(settings: LatencyBenchmarkSettings, images: [BenchImage]) {
        self.settings = settings
        self.images = images
    }

    func imageID(_ index: Int) -> String { "bench-\(runID)-\(index)" }

    /// Runs the whole benchmark; returns the measurements. An unreachable daemon or a refused image shows in the
    /// report (lost replies, errors), not as a throw; throws only when no ZeroMQ context can be created.
    func run() throws -> LatencyReport {
        let context = try ZMQContext()
        let annotators = settings.annotators
        let barrier = Barrier(parties: annotators)
        let listeners = (0..<annotators).map { UpdateListener(index: $0) }
        let group = DispatchGroup()
        var threads: [Thread] = []
        for annotator in 0..<annotators {
            let listener = listeners[annotator]
            let imageIndex = annotator % images.count
            let listenerThread = Thread { [self] in
                listener.run(endpoint: settings.resultsEndpoint, context: context, imageID: imageID(imageIndex),
                             curve: settings.curve)
            }
            listenerThread.stackSize = 1 << 20
            threads.append(listenerThread)
            group.enter()
            let worker = Thread { [self] in
                defer { group.leave() }
                runAnnotator(annotator, imageIndex: imageIndex, context: context, barrier: barrier,
                             listener: listener)
            }
            worker.stackSize = 4 << 20
            threads.append(worker)
        }
        threads.forEach { $0.start() }
        group.wait()

        // Let the last updates arrive: wait until every subscriber holds every version of its image, at most 3 s.
        let deadline = DispatchTime.now().uptimeNanoseconds + 3_000_000_000
        for (annotator, listener) in listeners.enumerated() {
            listener.waitFor(versions: tally.expectedVersions(of: annotator % images.count), deadline: deadline)
        }
        listeners.forEach { $0.stop() }
        listeners.forEach { $0.waitUntilStopped() }

        for (annotator, listener) in listeners.enumerated() {
            let imageIndex = annotator % images.count
            let (log, sentFeedback) = listener.result
            tally.countUpdates(log, of: imageIndex, imageID: imageID(imageIndex),
                               receiver: "annotator-\(annotator)'s subscriber")
            // Publish delay: this annotator's own feedback, sent → update received by its own subscriber.
            for update in log.received {
                if let sent = sentFeedback[update.requestID] {
                    tally.recordPublish(milliseconds: Double(update.receivedAt &- sent) / 1e6)
                }
            }
        }
        return tally.finish()
    }

    // MARK: one annotator

    private func runAnnotator(_ annotator: Int, imageIndex: Int, context: ZMQContext, barrier: Barrier,
                              listener: UpdateListener) {
        let name = settings.annotatorName ?? "annotator-\(annotator)"
        let image = images[imageIndex]
        let id = imageID(imageIndex)
        let isOpener = annotator < images.count
        var random = SplitMix64(seed: settings.seed &+ UInt64(annotator) &* 7919)
        let client: ProbattnClient
        do {
            client = try ProbattnClient(endpoint: settings.requestEndpoint, context: context,
                                        timeout: settings.timeout, curve: settings.curve)
        } catch {
            tally.fail("connect \(settings.requestEndpoint): \(error)")
            barrier.abandon()
            return
        }
        let requests = RequestTracker(client: client, timeout: settings.timeout)
        // Account for this annotator's replies however it ends (an annotator stops early when an open failed).
        defer {
            // A reply that arrives after its request timed out is out of order; collect stragglers briefly.
            requests.drainLateReplies(for: 0.2)
            tally.amend { report in
                report.lostReplies += requests.lost
                report.duplicatedReplies += requests.duplicated
                report.outOfOrderReplies += requests.outOfOrder
                report.incidents += requests.incidents.map { "\($0) (\(name))" }
            }
        }
        listener.waitUntilSubscribed()
        Thread.sleep(forTimeInterval: 0.5)
        barrier.wait()

        // Open: one opener per image, all images at once.
        if isOpener {
            let reply = requests.call("open_image", ["image_id": .string(id), "annotator": .string(name)],
                                      payloads: [image.bytes], listener: listener)
            absorb(reply, kind: "open_image", imageIndex: imageIndex)
            if reply?.reply.ok != true { tally.markOpenFailed() }
        }
        barrier.wait()
        if tally.hasOpenFailed { return }

        // Join: the other annotators of an image fetch its current mask.
        if !isOpener {
            let reply = requests.call("get_mask", ["image_id": .string(id)], listener: nil)
            absorb(reply, kind: "get_mask", imageIndex: imageIndex, recordsVersion: false)
        }
        barrier.wait()

        // The daemon's CPU time when everyone starts clicking (read by the last annotator to arrive).
        barrier.wait { [self] in tally.readDaemonCPUAtClickStart(pid: settings.daemonPID) }

        // Clicks, closed loop.
        tally.clickPhaseStarted(at: DispatchTime.now().uptimeNanoseconds)
        for click in 0..<settings.clicksPerAnnotator {
            let wantObject = click % 2 == 0
            let (x, y, isObject) = image.clickPosition(wantObject: wantObject, random: &random)
            let fields = ProbattnClient.feedbackFields(
                id, annotator: name, clicks: [WireClick(x: x, y: y, className: isObject ? "object" : "background")])
            let reply = requests.call("feedback", fields, listener: listener)
            absorb(reply, kind: "feedback", imageIndex: imageIndex, click: click + 1)
        }
        tally.clickPhaseEnded(at: DispatchTime.now().uptimeNanoseconds)
        // The daemon's CPU time when the last annotator's last reply arrived.
        barrier.wait { [self] in tally.readDaemonCPUAtClickEnd(pid: settings.daemonPID) }

        if isOpener {
            let reply = requests.call("close_image", ["image_id": .string(id)], listener: nil)
            absorb(reply, kind: "close_image", imageIndex: imageIndex, recordsVersion: false)
        }
    }

    /// Records a reply's round trip and the version it announces (a lost reply, nil, is counted by its tracker).
    private func absorb(_ result: (reply: ProbattnReply, milliseconds: Double)?, kind: String, imageIndex: Int,
                        recordsVersion: Bool = true, click: Int? = nil) {
        guard let (reply, milliseconds) = result else { return }
        tally.record(kind: kind, milliseconds: milliseconds, imageIndex: imageIndex, ok: reply.ok,
                     version: reply["version"]?.intValue, recordsVersion: recordsVersion,
                     error: "\(reply.errorCode ?? "?"): \(reply.errorMessage ?? "")", click: click)
    }
}

extension LatencyBenchmark {
    /// Round trips with bookkeeping of lost, duplicated and out-of-order replies, for one annotator's DEALER socket
    /// (used from one thread only).
    final class RequestTracker {
        let client: ProbattnClient
        let timeout: Double
        private var answered = Set<String>()
        /// Requests whose reply did not come in time: request id → kind.
        private var timedOut: [String: String] = [:]
        private(set) var lost = 0, duplicated = 0, outOfOrder = 0
        /// One line per lost, duplicated or out-of-order reply.
        var incidents: [String] {
            timedOut.sorted { $0.key < $1.key }.map { "lost reply: \($0.value) \($0.key)" } + otherIncidents
        }
        private var otherIncidents: [String] = []

        init(client: ProbattnClient, timeout: Double) {
            self.client = client
            self.timeout = timeout
        }

        /// Sends one request and waits for its reply; nil when it was lost (or could not be sent). Feedback send
        /// times are handed to `listener` first, so that its update can be matched.
        func call(_ kind: String, _ fields: [String: JSONValue], payloads: [[UInt8]] = [],
                  listener: UpdateListener?) -> (reply: ProbattnReply, milliseconds: Double)? {
            let id = client.nextRequestID()
            let sent = DispatchTime.now().uptimeNanoseconds
            if kind == "feedback" { listener?.noteSent(requestID: id, at: sent) }
            do {
                try client.send(kind, fields, payloads: payloads, requestID: id)
            } catch {
                lost += 1
                otherIncidents.append("lost request: \(kind) \(id) could not be sent: \(error)")
                return nil
            }
            let deadline = sent + UInt64(timeout * 1e9)
            while true {
                let now = DispatchTime.now().uptimeNanoseconds
                guard now < deadline, let reply = try? client.receive(timeout: Double(deadline - now) / 1e9) else {
                    lost += 1
                    timedOut[id] = kind
                    return nil
                }
                let received = DispatchTime.now().uptimeNanoseconds
                guard let replyID = reply.requestID else { outOfOrder += 1; continue }
                if replyID == id {
                    answered.insert(id)
                    return (reply, Double(received - sent) / 1e6)
                }
                classify(replyID)
            }
        }

        /// Reads replies still in flight for `seconds` and classifies them.
        func drainLateReplies(for seconds: Double) {
            while let reply = try? client.receive(timeout: seconds) {
                classify(reply.requestID ?? "")
            }
        }

        private func classify(_ replyID: String) {
            if answered.contains(replyID) {
                duplicated += 1
                otherIncidents.append("duplicated reply: \(replyID)")
            } else if let kind = timedOut.removeValue(forKey: replyID) {
                // It was counted lost; it came, but late and after a later request's reply.
                lost -= 1
                outOfOrder += 1
                answered.insert(replyID)
                otherIncidents.append("out-of-order reply: \(kind) \(replyID) arrived after its timeout")
            } else {
                outOfOrder += 1
                otherIncidents.append("out-of-order reply: unexpected request id '\(replyID)'")
            }
        }
    }

    /// One annotator's SUB socket, read on its own thread: records every mask update of its image.
    /// Unchecked `Sendable`: every `var` is touched only under `condition` (an NSCondition the annotator thread waits
    /// on).
    final class UpdateListener: @unchecked Sendable {
        let index: Int
        private let condition = NSCondition()
        private var subscribed = false
        private var stopping = false
        private var stopped = false
        private var log = UpdateLog()
        private var sentFeedback: [String: UInt64] = [:]

        init(index: Int) { self.index = index }

        func noteSent(requestID: String, at time: UInt64) {
            condition.withLock { sentFeedback[requestID] = time }
        }

        func run(endpoint: String, context: ZMQContext, imageID: String, curve: ZMQCurveClientKeys?) {
            defer { condition.withLock { stopped = true; subscribed = true; condition.broadcast() } }
            guard let subscriber = try? ProbattnSubscriber(endpoint: endpoint, context: context, curve: curve),
                  (try? subscriber.subscribe(imageID: imageID)) != nil else { return }
            condition.withLock { subscribed = true; condition.broadcast() }
            while !condition.withLock({ stopping }) {
                guard let update = try? subscriber.receive(timeout: 0.05) else { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                guard let version = update.header["version"]?.intValue else { continue }
                let requestID = update.header["request_id"]?.stringValue ?? ""
                condition.withLock {
                    log.record(version: version, requestID: requestID, at: now)
                    condition.broadcast()
                }
            }
        }

        func waitUntilSubscribed() {
            condition.withLock { while !subscribed { condition.wait() } }
        }

        /// Blocks until every version in `versions` was received, or until `deadline` (uptime nanoseconds).
        func waitFor(versions: Set<Int>, deadline: UInt64) {
            condition.withLock { condition.wait(until: { log.holds(versions) || stopped }, deadline: deadline) }
        }

        func stop() { condition.withLock { stopping = true } }

        /// What the subscriber received and the send times of its annotator's feedback, read after it stopped.
        var result: (log: UpdateLog, sentFeedback: [String: UInt64]) { condition.withLock { (log, sentFeedback) } }

        func waitUntilStopped() {
            condition.withLock { while !stopped { condition.wait() } }
        }
    }

    /// A reusable barrier for the annotator threads' phases.
    /// Unchecked `Sendable`: every `var` is touched only under `condition` (the threads wait on it).
    final class Barrier: @unchecked Sendable {
        private let parties: Int
        private let condition = NSCondition()
        private var arrived = 0
        private var generation = 0
        private var broken = false

        init(parties: Int) { self.parties = parties }

        /// Waits until every party arrived; the last to arrive runs `action` (if any) before releasing the others.
        func wait(then action: (() -> Void)? = nil) {
            condition.withLock {
                if broken { return }
                let current = generation
                arrived += 1
                if arrived == parties {
                    action?()
                    arrived = 0
                    generation += 1
                    condition.broadcast()
                } else {
                    while generation == current, !broken { condition.wait() }
                }
            }
        }

        /// Releases every waiter for good (a thread that cannot take part any more).
        func abandon() {
            condition.withLock { broken = true; condition.broadcast() }
        }
    }
}
