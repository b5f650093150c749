import Foundation
import ProbattnClient
import ProbattnCore
import ProbattnJSON
import ProbattnSession

/// `probattn bench latency --transport http`: the same closed-loop team as `LatencyBenchmark`, against the daemon's
/// HTTP gateway (docs/HTTP.md), with the same report.
///
/// Every annotator has one keep-alive HTTP connection and one WebSocket on its image (`?annotator=annotator-N`),
/// read on its own thread. Phases, separated by barriers: connect the WebSockets (each waits for its first presence
/// message, so it is registered before any update), open (`POST /api/v1/images`, multipart, one opener per image),
/// join (`GET .../mask`), clicks, close (`DELETE`). Clicks alternate between `POST .../feedback` (kind `feedback`)
/// and a `feedback` text frame on the WebSocket (kind `ws_feedback`, matched to its reply by `request_id`); each
/// annotator sends its next click when the previous reply arrived. `publish` is the time from sending a feedback to
/// its update arriving on the WebSocket of every other annotator of the image (its own when it works alone). Every
/// WebSocket must receive every version of its image once, in increasing order.
/// Unchecked `Sendable`: `sentFeedback` is touched only under `lock`; the `let`s are `Sendable`.
final class HTTPLatencyBenchmark: @unchecked Sendable {
    let settings: LatencyBenchmarkSettings
    let images: [BenchImage]
    private let runID = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
    private let tally = LatencyTally()
    private let lock = NSLock()
    /// Feedback sent: request id → (annotator, uptime ns).
    private var sentFeedback: [String: (annotator: Int, at: UInt64)] = [:]

    init(settings: LatencyBenchmarkSettings, images: [BenchImage]) {
        self.settings = settings
        self.images = images
    }

    func imageID(_ index: Int) -> String { "bench-\(runID)-\(index)" }

    func run() -> LatencyReport {
        let annotators = settings.annotators
        let barrier = LatencyBenchmark.Barrier(parties: annotators)
        let listeners = (0..<annotators).map { WebSocketListener(index: $0) }
        let group = DispatchGroup()
        for annotator in 0..<annotators {
            group.enter()
            let worker = Thread { [self] in
                defer { group.leave() }
                runAnnotator(annotator, imageIndex: annotator % images.count, barrier: barrier,
                             listener: listeners[annotator])
            }
            worker.stackSize = 4 << 20
            worker.start()
        }
        group.wait()
        let deadline = DispatchTime.now().uptimeNanoseconds + 3_000_000_000
        for (annotator, listener) in listeners.enumerated() {
            listener.waitFor(versions: tally.expectedVersions(of: annotator % images.count), deadline: deadline)
        }
        listeners.forEach { $0.stop() }

        let perImage = Dictionary(grouping: 0..<annotators) { $0 % images.count }
        let sentFeedback = lock.withLock { self.sentFeedback }
        for (annotator, listener) in listeners.enumerated() {
            let imageIndex = annotator % images.count
            let (log, lostReplies, duplicatedReplies, replyIncidents) = listener.result
            tally.countUpdates(log, of: imageIndex, imageID: imageID(imageIndex),
                               receiver: "annotator-\(annotator)'s WebSocket")
            tally.amend { report in
                report.lostReplies += lostReplies
                report.duplicatedReplies += duplicatedReplies
                report.incidents += replyIncidents.map { "\($0) (annotator-\(annotator))" }
            }
            let alone = (perImage[imageIndex]?.count ?? 1) == 1
            for update in log.received {
                guard let sent = sentFeedback[update.requestID] else { continue }
                if sent.annotator != annotator || alone {
                    tally.recordPublish(milliseconds: Double(update.receivedAt &- sent.at) / 1e6)
                }
            }
        }
        return tally.finish()
    }

    private func runAnnotator(_ annotator: Int, imageIndex: Int, barrier: LatencyBenchmark.Barrier,
                              listener: WebSocketListener) {
        let name = "annotator-\(annotator)"
        let image = images[imageIndex]
        let id = imageID(imageIndex)
        let encodedID = HTTPConnection.encode(id)
        let isOpener = annotator < images.count
        var random = SplitMix64(seed: settings.seed &+ UInt64(annotator) &* 7919)
        var counter = 0
        func nextID() -> String {
            counter += 1
            return "\(runID)-\(annotator)-\(counter)"
        }
        let http: HTTPConnection
        do {
            http = try HTTPConnection(endpoint: settings.requestEndpoint, timeout: settings.timeout)
            try listener.connect(endpoint: settings.requestEndpoint,
                                 target: "/api/v1/images/\(encodedID)/ws?annotator=\(HTTPConnection.encode(name))",
                                 timeout: settings.timeout)
        } catch {
            tally.fail("connect \(settings.requestEndpoint): \(error)")
            barrier.abandon()
            return
        }
        defer { http.close() }
        barrier.wait()

        if isOpener {
            let header: JSONValue = ["image_id": .string(id), "annotator": .string(name), "request_id": .string(nextID())]
            let form = HTTPConnection.multipart([("header", "application/json", header.serialized()),
                                                 ("image", "application/octet-stream", image.bytes)])
            let result = call(http, "POST", "/api/v1/images", contentType: form.contentType, body: form.body)
            absorb(result, kind: "open_image", imageIndex: imageIndex)
            if result?.json["ok"]?.boolValue != true { tally.markOpenFailed() }
        }
        barrier.wait()
        if tally.hasOpenFailed { return }

        if !isOpener {
            let result = call(http, "GET", "/api/v1/images/\(encodedID)/mask?request_id=\(nextID())")
            absorb(result, kind: "get_mask", imageIndex: imageIndex, recordsVersion: false)
        }
        barrier.wait()

        // The daemon's CPU time when everyone starts clicking (read by the last annotator to arrive).
        barrier.wait { [self] in tally.readDaemonCPUAtClickStart(pid: settings.daemonPID) }
        tally.clickPhaseStarted(at: DispatchTime.now().uptimeNanoseconds)
        for click in 0..<settings.clicksPerAnnotator {
            let (x, y, isObject) = image.clickPosition(wantObject: click % 2 == 0, random: &random)
            let requestID = nextID()
            var fields: [String: JSONValue] = [
                "image_id": .string(id), "annotator": .string(name), "request_id": .string(requestID),
                "clicks": [["x": .int(x), "y": .int(y), "class": .string(isObject ? "object" : "background")]],
            ]
            let viaWebSocket = click % 2 == 1
            let sent = DispatchTime.now().uptimeNanoseconds
            lock.withLock { sentFeedback[requestID] = (annotator, sent) }
            if viaWebSocket {
                fields["protocol"] = .int(probattnProtocolVersion)
                fields["kind"] = "feedback"
                let result = listener.request(JSONValue.object(fields), requestID: requestID, sent: sent,
                                              timeout: settings.timeout)
                absorb(result, kind: "ws_feedback", imageIndex: imageIndex, click: click + 1)
            } else {
                let result = call(http, "POST", "/api/v1/images/\(encodedID)/feedback",
                                  contentType: "application/json", body: JSONValue.object(fields).serialized(),
                                  sent: sent)
                absorb(result, kind: "feedback", imageIndex: imageIndex, click: click + 1)
            }
        }
        tally.clickPhaseEnded(at: DispatchTime.now().uptimeNanoseconds)
        // The daemon's CPU time when the last annotator's last reply arrived.
        barrier.wait { [self] in tally.readDaemonCPUAtClickEnd(pid: settings.daemonPID) }

        if isOpener {
            let result = call(http, "DELETE", "/api/v1/images/\(encodedID)?request_id=\(nextID())")
            absorb(result, kind: "close_image", imageIndex: imageIndex, recordsVersion: false)
        }
    }

    /// One HTTP round trip: the reply JSON (the body; for errors the error reply) and its milliseconds; nil when
    /// no response came (counted lost).
    private func call(_ http: HTTPConnection, _ method: String, _ target: String, contentType: String? = nil,
                      body: [UInt8] = [], sent: UInt64 = DispatchTime.now().uptimeNanoseconds)
        -> (json: JSONValue, milliseconds: Double)? {
        do {
            let response = try http.request(method, target, headers: contentType.map { [("Content-Type", $0)] } ?? [],
                                            body: body)
            let milliseconds = Double(DispatchTime.now().uptimeNanoseconds - sent) / 1e6
            guard let json = response.json else {
                tally.fail("\(method) \(target): HTTP \(response.status) without a JSON body")
                return nil
            }
            return (json, milliseconds)
        } catch {
            tally.amend { report in
                report.lostReplies += 1
                report.incidents.append("lost reply: \(method) \(target): \(error)")
            }
            return nil
        }
    }

    /// Records a reply's round trip and the version it announces (a lost reply, nil, is counted by `call` or the
    /// WebSocket listener). Both routes of a click count in its bucket.
    private func absorb(_ result: (json: JSONValue, milliseconds: Double)?, kind: String, imageIndex: Int,
                        recordsVersion: Bool = true, click: Int? = nil) {
        guard let (json, milliseconds) = result else { return }
        tally.record(kind: kind, milliseconds: milliseconds, imageIndex: imageIndex,
                     ok: json["ok"]?.boolValue == true, version: json["version"]?.intValue,
                     recordsVersion: recordsVersion,
                     error: "\(json["error"]?["code"]?.stringValue ?? "?"): \(json["error"]?["message"]?.stringValue ?? "")",
                     click: click)
    }
}

extension HTTPLatencyBenchmark {
    /// One annotator's WebSocket, read on its own thread: records every mask update of its image and hands the
    /// replies to `ws_feedback` requests to the annotator's thread.
    /// Unchecked `Sendable`: every `var` is touched only under `condition` (an NSCondition the annotator thread waits
    /// on).
    final class WebSocketListener: @unchecked Sendable {
        let index: Int
        private let condition = NSCondition()
        private var socket: WebSocketConnection?
        private var joined = false
        private var stopping = false
        private var ended = false
        private var log = UpdateLog()
        /// Replies to `ws_feedback` requests that never came (or requests that could not be sent) or came twice,
        /// and a line for each.
        private var lostReplies = 0, duplicatedReplies = 0
        private var replyIncidents: [String] = []
        /// Replies by request id, with their arrival time, until the annotator takes them.
        private var replies: [String: (JSONValue, UInt64)] = [:]
        private var answered = Set<String>()

        init(index: Int) { self.index = index }

        /// Connects, starts the reader thread and waits for the first presence message (the daemon has then
        /// registered the connection for updates).
        func connect(endpoint: String, target: String, timeout: Double) throws {
            let socket = try WebSocketConnection(endpoint: endpoint, target: target, timeout: timeout)
            condition.withLock { self.socket = socket }
            let reader = Thread { [self] in read(socket) }
            reader.stackSize = 1 << 20
            reader.start()
            let deadline = Date(timeIntervalSinceNow: timeout)
            try condition.withLock {
                while !joined, !ended {
                    guard condition.wait(until: deadline) else { break }
                }
                guard joined else { throw HTTPClientError("no presence message on \(target) within \(timeout) s") }
            }
        }

        private func read(_ socket: WebSocketConnection) {
            defer { condition.withLock { ended = true; condition.broadcast() } }
            while !condition.withLock({ stopping }) {
                guard let message = try? socket.receive(timeout: 0.2) else {
                    if condition.withLock({ stopping }) { return }
                    continue
                }
                let now = DispatchTime.now().uptimeNanoseconds
                guard case .text(let text) = message else {
                    if case .close = message { return }
                    continue
                }
                guard let json = JSONValue.parse(Array(text.utf8)) else { continue }
                condition.withLock {
                    switch json["kind"]?.stringValue {
                    case "presence":
                        joined = true
                    case "mask_update":
                        guard let version = json["version"]?.intValue else { break }
                        log.record(version: version, requestID: json["request_id"]?.stringValue ?? "", at: now)
                    default:
                        if let id = json["request_id"]?.stringValue {
                            if answered.contains(id) || replies[id] != nil {
                                duplicatedReplies += 1
                                replyIncidents.append("duplicated reply: \(id)")
                            } else {
                                replies[id] = (json, now)
                            }
                        }
                    }
                    condition.broadcast()
                }
            }
        }

        /// Sends a request as a text frame and waits for its reply.
        func request(_ json: JSONValue, requestID: String, sent: UInt64, timeout: Double)
            -> (json: JSONValue, milliseconds: Double)? {
            guard let socket = condition.withLock({ self.socket }) else { return nil }
            do {
                try socket.sendText(String(decoding: json.serialized(), as: UTF8.self))
            } catch {
                condition.withLock {
                    lostReplies += 1
                    replyIncidents.append("lost request: \(requestID) could not be sent: \(error)")
                }
                return nil
            }
            let deadline = Date(timeIntervalSinceNow: timeout)
            return condition.withLock {
                while replies[requestID] == nil, !ended {
                    guard condition.wait(until: deadline) else { break }
                }
                guard let (reply, at) = replies.removeValue(forKey: requestID) else {
                    lostReplies += 1
                    replyIncidents.append("lost reply: ws_feedback \(requestID)")
                    return nil
                }
                answered.insert(requestID)
                return (reply, Double(at &- sent) / 1e6)
            }
        }

        /// Blocks until every version in `versions` was received, or until `deadline` (uptime nanoseconds).
        func waitFor(versions: Set<Int>, deadline: UInt64) {
            condition.withLock { condition.wait(until: { log.holds(versions) || ended }, deadline: deadline) }
        }

        /// What the WebSocket received, its lost and duplicated replies and their incidents, read after it stopped.
        var result: (log: UpdateLog, lostReplies: Int, duplicatedReplies: Int, replyIncidents: [String]) {
            condition.withLock { (log, lostReplies, duplicatedReplies, replyIncidents) }
        }

        /// Ends the reader thread (it checks every 0.2 s) and closes the WebSocket.
        func stop() {
            let socket: WebSocketConnection? = condition.withLock {
                stopping = true
                return self.socket
            }
            condition.withLock {
                let deadline = Date(timeIntervalSinceNow: 2)
                while !ended, socket != nil {
                    guard condition.wait(until: deadline) else { break }
                }
            }
            socket?.close()
        }
    }
}
