import Foundation
import ProbattnClient
import ProbattnJSON
import ProbattnStore
import Testing
#if canImport(Glibc)
import Glibc
import Synchronization
#endif

/// One real `probattnd` with the HTTP gateway for the HTTP tests that do not measure the process or stop it: started
/// on first use, killed when the test process exits. Its limits make the size errors cheap to reach.
enum SharedHTTPDaemon {
    nonisolated(unsafe) static var pid: Int32 = 0

    static let instance: Result<DaemonProcess, HarnessError> = {
        do {
            let daemon = try DaemonProcess(extraYAML: """
                limits: {max_image_pixels: 40000, queue_depth_per_image: 2, max_message_bytes: 8388608}
                """, http: true)
            try daemon.start()
            pid = daemon.pid
            atexit { if SharedHTTPDaemon.pid > 0 { kill(SharedHTTPDaemon.pid, SIGKILL) } }
            return .success(daemon)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    static func get() throws -> DaemonProcess { try instance.get() }
}

/// Requests the tests send over HTTP.
enum HTTPRequests {
    static func open(_ http: HTTPConnection, id: String, png: [UInt8], annotator: String = "alice",
                     publishPNG: Bool = false, extraParts: Int = 0) throws -> HTTPClientResponse {
        var header: [String: JSONValue] = ["image_id": .string(id), "annotator": .string(annotator)]
        if publishPNG { header["publish_png"] = true }
        let parts = [("header", "application/json", JSONValue.object(header).serialized()), ("image", "image/png", png)]
            + (0..<extraParts).map { ("extra\($0)", "application/octet-stream", [UInt8](repeating: 1, count: 10)) }
        let form = HTTPConnection.multipart(parts.map { (name: $0.0, contentType: $0.1, body: $0.2) })
        return try http.request("POST", "/api/v1/images", headers: [("Content-Type", form.contentType)], body: form.body)
    }

    static func post(_ http: HTTPConnection, _ target: String, _ json: JSONValue) throws -> HTTPClientResponse {
        try http.request("POST", target, headers: [("Content-Type", "application/json")], body: json.serialized())
    }

    static func click(_ http: HTTPConnection, id: String, annotator: String, x: Int, y: Int,
                      className: String = "object") throws -> HTTPClientResponse {
        try post(http, "/api/v1/images/\(HTTPConnection.encode(id))/feedback",
                 ["annotator": .string(annotator),
                  "clicks": [["x": .int(x), "y": .int(y), "class": .string(className)]]])
    }

    static func uniqueID(_ prefix: String) -> String { "\(prefix)-\(UInt32.random(in: 0..<UInt32.max))" }
}

/// Reads WebSocket messages until one matches, failing on timeout; returns it and what was skipped.
func nextMessage(_ ws: WebSocketConnection, timeout: Double = 30,
                 where matches: (JSONValue) -> Bool) throws -> JSONValue {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        let left = deadline.timeIntervalSinceNow
        guard left > 0 else { throw HarnessError("no matching WebSocket message within \(timeout) s") }
        if case .text(let text) = try ws.receive(timeout: left), let json = JSONValue.parse(Array(text.utf8)),
           matches(json) {
            return json
        }
    }
}

@Suite struct HTTPGatewayRoutes {
    @Test(.timeLimit(.minutes(5)))
    func everyRouteAnswersWithTheProtocolsFields() throws {
        let daemon = try SharedHTTPDaemon.get()
        let http = try daemon.httpConnection()
        let health = try http.request("GET", "/api/v1/health")
        #expect(health.status == 200)
        #expect(health.json?["kind"]?.stringValue == "health")
        #expect(health.json?["ok"]?.boolValue == true)
        #expect(health.json?["uptime_s"]?.doubleValue != nil)

        // Ids may contain "/", "?" and spaces: they travel percent-encoded.
        let id = HTTPRequests.uniqueID("dir/a?b c")
        let path = "/api/v1/images/\(HTTPConnection.encode(id))"
        let png = try TestImages.png()
        let opened = try HTTPRequests.open(http, id: id, png: png)
        #expect(opened.status == 201, "\(String(decoding: opened.body, as: UTF8.self))")
        #expect(opened.json?["image_id"]?.stringValue == id)
        #expect(opened.json?["width"]?.intValue == TestImages.width)
        #expect(opened.json?["reopened"]?.boolValue == false)
        #expect(opened.json?["content_hash"]?.stringValue?.hasPrefix("sha256:") == true)
        let reopened = try HTTPRequests.open(http, id: id, png: png, annotator: "bob")
        #expect(reopened.status == 200)
        #expect(reopened.json?["reopened"]?.boolValue == true)

        // The raw-body form of open: the fields as query parameters.
        let rawID = HTTPRequests.uniqueID("raw")
        let raw = try http.request("POST", "/api/v1/images?image_id=\(rawID)&annotator=carol&classes=object,background&request_id=r-raw",
                                   headers: [("Content-Type", "image/png")], body: png)
        #expect(raw.status == 201)
        #expect(raw.json?["request_id"]?.stringValue == "r-raw")
        #expect(raw.json?["classes"] == ["object", "background"])

        let sessions = try http.request("GET", "/api/v1/sessions")
        #expect(sessions.status == 200)
        let listed = sessions.json?["sessions"]?.arrayValue?.compactMap { $0["image_id"]?.stringValue } ?? []
        #expect(listed.contains(id) && listed.contains(rawID))

        let click = try HTTPRequests.click(http, id: id, annotator: "alice", x: 80, y: 60)
        #expect(click.status == 200)
        #expect(click.json?["kind"]?.stringValue == "feedback")
        #expect(click.json?["version"]?.intValue == 1)
        #expect(click.json?["mask"]?["counts"]?.stringValue != nil)
        #expect(click.json?["click_ids"]?.arrayValue?.count == 1)

        let undo = try HTTPRequests.post(http, path + "/undo", ["annotator": "alice"])
        #expect(undo.status == 200)
        #expect(undo.json?["version"]?.intValue == 2)
        #expect(undo.json?["undone"]?["x"]?.intValue == 80)

        let rle = try http.request("GET", path + "/mask")
        #expect(rle.status == 200)
        #expect(rle.json?["version"]?.intValue == 2)
        #expect(rle.json?["mask"]?["size"] == [.int(TestImages.height), .int(TestImages.width)])
        let pngMask = try http.request("GET", path + "/mask?format=png")
        #expect(pngMask.status == 200)
        #expect(pngMask.header("content-type") == "image/png")
        #expect(pngMask.header("x-probattn-version") == "2")
        #expect(Array(pngMask.body.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])

        let closed = try http.request("DELETE", path)
        #expect(closed.status == 200)
        #expect(closed.json?["kind"]?.stringValue == "close_image")
        #expect(closed.json?["version"]?.intValue == 2)
        #expect(try http.request("DELETE", "/api/v1/images/\(rawID)").status == 200)
        let gone = try http.request("GET", path + "/mask")
        #expect(gone.status == 404)
        #expect(gone.errorCode == "unknown_image")

        let noRoute = try http.request("GET", "/api/v2/nothing")
        #expect(noRoute.status == 404)
        #expect(noRoute.errorCode == "unknown_route")
        let wrongMethod = try http.request("GET", "/api/v1/images")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("allow") == "POST")
        // A plain GET of the WebSocket route (no upgrade) says what is missing.
        let notUpgraded = try http.request("GET", path + "/ws")
        #expect(notUpgraded.status == 400)
        #expect(notUpgraded.errorCode == "bad_request")
    }

    @Test(.timeLimit(.minutes(5)))
    func errorStatusesFollowTheirCodes() throws {
        let daemon = try SharedHTTPDaemon.get()
        let http = try daemon.httpConnection()
        let id = HTTPRequests.uniqueID("errors")
        let path = "/api/v1/images/\(id)"
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png()).status == 201)

        func expectError(_ response: HTTPClientResponse, _ status: Int, _ code: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(response.status == status, "\(String(decoding: response.body, as: UTF8.self))",
                    sourceLocation: sourceLocation)
            #expect(response.errorCode == code, sourceLocation: sourceLocation)
            #expect(response.json?["ok"]?.boolValue == false, sourceLocation: sourceLocation)
            #expect(response.header("content-type") == "application/json", sourceLocation: sourceLocation)
        }
        expectError(try HTTPRequests.open(http, id: id, png: try TestImages.png(seed: 4)), 409, "image_exists")
        expectError(try HTTPRequests.post(http, path + "/undo", ["annotator": "nobody"]), 409, "nothing_to_undo")
        expectError(try HTTPRequests.post(http, path + "/feedback", ["protocol": 2, "annotator": "a",
                                                                     "clicks": [["x": 1, "y": 1, "class": "object"]]]),
                    400, "unsupported_protocol")
        expectError(try HTTPRequests.click(http, id: id, annotator: "a", x: 5, y: 5, className: "sky"), 400,
                    "unknown_class")
        expectError(try http.request("POST", "/api/v1/images?image_id=\(id)-bad", body: Array("not an image".utf8)),
                    400, "bad_image")
        expectError(try HTTPRequests.open(http, id: id + "-big", png: try TestImages.png(width: 300, height: 200)),
                    413, "image_too_large")
        expectError(try HTTPRequests.open(http, id: id + "-frames", png: try TestImages.png(), extraParts: 3), 413,
                    "too_many_frames")

        // busy: more simultaneous clicks on one image than its queue holds (queue_depth_per_image: 2), each on its
        // own connection and thread, released together.
        let statuses = Locked<[Int]>([])
        let connections = try (0..<12).map { _ in try daemon.httpConnection() }
        let go = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for (index, connection) in connections.enumerated() {
            done.enter()
            Thread {
                go.wait()
                if let response = try? HTTPRequests.click(connection, id: id, annotator: "busy-\(index)",
                                                          x: 10 + index, y: 10) {
                    statuses.withLock { $0.append(response.status) }
                    if response.status == 429 {
                        #expect(response.errorCode == "busy")
                        #expect(response.header("retry-after") == "1")
                    }
                }
                done.leave()
            }.start()
        }
        for _ in connections { go.signal() }
        done.wait()
        #expect(statuses.withLock { $0.count } == 12)
        #expect(statuses.withLock { $0.contains(429) }, "no click was refused as busy: \(statuses.withLock { $0 })")
        #expect(statuses.withLock { $0.allSatisfy { $0 == 200 || $0 == 429 } })
        _ = try http.request("DELETE", path)
    }

    @Test func aBodyThatIsNotJSONIsABadHeader() throws {
        let http = try SharedHTTPDaemon.get().httpConnection()
        let response = try http.request("POST", "/api/v1/images/anything/feedback",
                                        headers: [("Content-Type", "application/json")], body: Array("{clicks: [".utf8))
        #expect(response.status == 400)
        #expect(response.errorCode == "bad_header")
        #expect(response.json?["kind"]?.stringValue == "feedback")
    }

    @Test func aMissingFieldIsABadRequestThatNamesIt() throws {
        let daemon = try SharedHTTPDaemon.get()
        let http = try daemon.httpConnection()
        let id = HTTPRequests.uniqueID("missing")
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png()).status == 201)
        let response = try HTTPRequests.post(http, "/api/v1/images/\(id)/feedback", ["annotator": "alice"])
        #expect(response.status == 400)
        #expect(response.errorCode == "bad_request")
        #expect(response.json?["error"]?["message"]?.stringValue?.contains("'clicks'") == true)
        _ = try http.request("DELETE", "/api/v1/images/\(id)")
    }

    @Test func anUnknownImageIs404() throws {
        let http = try SharedHTTPDaemon.get().httpConnection()
        let response = try HTTPRequests.click(http, id: HTTPRequests.uniqueID("never-opened"), annotator: "a", x: 1, y: 1)
        #expect(response.status == 404)
        #expect(response.errorCode == "unknown_image")
    }

    @Test func aClickOutsideTheImageIs400() throws {
        let http = try SharedHTTPDaemon.get().httpConnection()
        let id = HTTPRequests.uniqueID("outside")
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png()).status == 201)
        let response = try HTTPRequests.click(http, id: id, annotator: "a", x: TestImages.width, y: 3)
        #expect(response.status == 400)
        #expect(response.errorCode == "out_of_bounds")
        _ = try http.request("DELETE", "/api/v1/images/\(id)")
    }

    @Test func aBodyOverTheLimitWithContentLengthIsRefusedBeforeItIsSent() throws {
        let http = try SharedHTTPDaemon.get().httpConnection()
        // Only the head goes out: the daemon answers from Content-Length alone.
        try http.sendRaw(Array("POST /api/v1/images?image_id=huge HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".utf8))
        let response = try http.readResponse(timeout: 10)
        #expect(response.status == 413)
        #expect(response.errorCode == "message_too_large")
    }
}

@Suite struct HTTPWebSocketTests {
    @Test(.timeLimit(.minutes(5)))
    func twoClientsReceiveEveryUpdateInOrderWithItsClickAndPresence() throws {
        let daemon = try SharedHTTPDaemon.get()
        let http = try daemon.httpConnection()
        let id = HTTPRequests.uniqueID("team/one")
        let alice = try daemon.webSocket(imageID: id, annotator: "alice")
        let first = try nextMessage(alice) { $0["kind"]?.stringValue == "presence" }
        #expect(first["annotators"] == ["alice"])
        let bob = try daemon.webSocket(imageID: id, annotator: "bob")
        for ws in [alice, bob] {
            let presence = try nextMessage(ws) { $0["kind"]?.stringValue == "presence" }
            #expect(presence["annotators"] == ["alice", "bob"])
            #expect(presence["image_id"]?.stringValue == id)
        }
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png(), publishPNG: true).status == 201)
        // alice clicks over HTTP, bob over his WebSocket, then alice undoes over hers.
        #expect(try HTTPRequests.click(http, id: id, annotator: "alice", x: 80, y: 60).status == 200)
        let bobsClick: JSONValue = [
            "protocol": 1, "request_id": "bob-1", "kind": "feedback",
            "annotator": "bob", "clicks": [["x": 10, "y": 10, "class": "background"]],
        ]
        var seen = ["alice": WebSocketLog(), "bob": WebSocketLog()]
        try bob.sendText(String(decoding: bobsClick.serialized(), as: UTF8.self))
        try seen["bob"]!.collect(bob) { $0.replies["bob-1"] != nil }
        try alice.sendText(#"{"protocol": 1, "request_id": "alice-undo", "kind": "undo", "annotator": "alice"}"#)
        try seen["alice"]!.collect(alice) { $0.replies["alice-undo"] != nil }

        for (name, ws) in [("alice", alice), ("bob", bob)] {
            try seen[name]!.collect(ws) { $0.updates.count >= 4 && $0.pngFrames >= 4 }
            let updates = seen[name]!.updates
            let versions = updates.map { $0["version"]?.intValue ?? -1 }
            #expect(versions == [0, 1, 2, 3], "\(name) saw versions \(versions)")
            #expect(seen[name]!.pngFrames == 4, "\(name): a PNG frame follows every update (publish_png)")
            guard updates.count == 4 else { continue }
            #expect(updates[0]["cause"]?.stringValue == "open")
            #expect(updates[1]["click"]?["annotator"]?.stringValue == "alice")
            #expect(updates[1]["click"]?["x"]?.intValue == 80)
            #expect(updates[1]["click"]?["class"]?.stringValue == "object")
            #expect(updates[1]["click"]?["id"]?.intValue != nil)
            #expect(updates[2]["click"]?["annotator"]?.stringValue == "bob")
            #expect(updates[2]["request_id"]?.stringValue == "bob-1")
            #expect(updates[3]["cause"]?.stringValue == "undo")
            #expect(updates[3]["undone"]?["id"] == updates[1]["click"]?["id"])
        }
        #expect(seen["bob"]!.replies["bob-1"]?["version"]?.intValue == 2)
        #expect(seen["alice"]!.replies["alice-undo"]?["undone"]?["annotator"]?.stringValue == "alice")
        bob.close()
        let left = try nextMessage(alice) { $0["kind"]?.stringValue == "presence" }
        #expect(left["annotators"] == ["alice"])
        alice.close()
        _ = try http.request("DELETE", "/api/v1/images/\(HTTPConnection.encode(id))")
    }

    @Test(.timeLimit(.minutes(5)))
    func aTextFrameThatIsNotARequestGetsAnErrorAndTheConnectionStaysOpen() throws {
        let daemon = try SharedHTTPDaemon.get()
        let id = HTTPRequests.uniqueID("ws-bad")
        let http = try daemon.httpConnection()
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png()).status == 201)
        let ws = try daemon.webSocket(imageID: id, annotator: "eve")
        _ = try nextMessage(ws) { $0["kind"]?.stringValue == "presence" }
        try ws.sendText("this is not JSON")
        let notJSON = try nextMessage(ws) { $0["ok"] != nil }
        #expect(notJSON["ok"]?.boolValue == false)
        #expect(notJSON["error"]?["code"]?.stringValue == "bad_header")
        try ws.sendText(#"{"protocol": 1, "request_id": "k", "kind": "teleport"}"#)
        #expect(try nextMessage(ws) { $0["request_id"]?.stringValue == "k" }["error"]?["code"]?.stringValue
                == "unknown_kind")
        try ws.sendText(#"{"protocol": 1, "request_id": "h", "kind": "health"}"#)
        #expect(try nextMessage(ws) { $0["request_id"]?.stringValue == "h" }["error"]?["code"]?.stringValue
                == "bad_request")
        try ws.sendBinary([1, 2, 3])
        #expect(try nextMessage(ws) { $0["ok"] != nil }["error"]?["code"]?.stringValue == "bad_header")
        // Still open and serving.
        try ws.sendText(#"{"protocol": 1, "request_id": "m", "kind": "get_mask"}"#)
        let mask = try nextMessage(ws) { $0["request_id"]?.stringValue == "m" }
        #expect(mask["ok"]?.boolValue == true)
        #expect(mask["version"]?.intValue == 0)
        ws.close()
        _ = try http.request("DELETE", "/api/v1/images/\(id)")
    }
}

@Suite struct HTTPMetricsTests {
    /// `GET /metrics` parsed by prometheus_client's text-format parser: (sample name, labels, value) triples.
    static func scrape(_ http: HTTPConnection) throws -> [(name: String, labels: [String: String], value: Double)] {
        let response = try http.request("GET", "/metrics")
        #expect(response.status == 200)
        #expect(response.header("content-type")?.hasPrefix("text/plain") == true)
        let parser = Process()
        parser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        parser.arguments = ["python3", "-c", """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            print(json.dumps([[s.name, s.labels, s.value]
                              for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))
            """]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        parser.standardInput = input
        parser.standardOutput = output
        parser.standardError = errors
        try parser.run()
        input.fileHandleForWriting.write(Data(response.body))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problems = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        parser.waitUntilExit()
        guard parser.terminationStatus == 0 else {
            throw HarnessError("prometheus_client could not parse /metrics (make pydeps installs it): \(problems)")
        }
        guard let list = JSONValue.parse([UInt8](data))?.arrayValue else { throw HarnessError("parser output") }
        return list.compactMap { item in
            guard let triple = item.arrayValue, triple.count == 3, let name = triple[0].stringValue,
                  let labels = triple[1].objectValue, let value = triple[2].doubleValue else { return nil }
            return (name, labels.compactMapValues(\.stringValue), value)
        }
    }

    static func value(_ samples: [(name: String, labels: [String: String], value: Double)], _ name: String,
                      _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
            .reduce(0) { $0 + $1.value }
    }

    @Test(.timeLimit(.minutes(5)))
    func countersMoveAfterAClickOnBothTransports() throws {
        let daemon = try SharedHTTPDaemon.get()
        let http = try daemon.httpConnection()
        let id = HTTPRequests.uniqueID("metrics")
        #expect(try HTTPRequests.open(http, id: id, png: try TestImages.png()).status == 201)
        let before = try Self.scrape(http)
        #expect(try HTTPRequests.click(http, id: id, annotator: "m", x: 80, y: 60).status == 200)
        #expect(try HTTPRequests.click(http, id: id, annotator: "m", x: 500, y: 60).status == 400)
        let zmq = try daemon.client()
        #expect(try zmq.feedback(id, annotator: "z", clicks: [.init(x: 10, y: 10, className: "background")]).ok)
        let after = try Self.scrape(http)

        let httpOK = ["transport": "http", "kind": "feedback", "code": "ok"]
        let httpOutside = ["transport": "http", "kind": "feedback", "code": "out_of_bounds"]
        let zmqOK = ["transport": "zmq", "kind": "feedback", "code": "ok"]
        #expect(Self.value(after, "probattn_requests_total", httpOK) >= Self.value(before, "probattn_requests_total", httpOK) + 1)
        #expect(Self.value(after, "probattn_requests_total", httpOutside)
                >= Self.value(before, "probattn_requests_total", httpOutside) + 1)
        #expect(Self.value(after, "probattn_requests_total", zmqOK) >= Self.value(before, "probattn_requests_total", zmqOK) + 1)
        for stage in ["decode", "encode", "adapt", "propagate", "commit"] {
            #expect(Self.value(after, "probattn_stage_duration_seconds_count", ["stage": stage]) >= 1, "stage \(stage)")
        }
        #expect(Self.value(after, "probattn_stage_duration_seconds_count", ["stage": "propagate"])
                >= Self.value(before, "probattn_stage_duration_seconds_count", ["stage": "propagate"]) + 2)
        #expect(Self.value(after, "probattn_open_sessions") >= 1)
        #expect(Self.value(after, "probattn_cache_bytes") > 0)
        #expect(after.contains { $0.name == "probattn_queue_depth" })
        #expect(after.contains { $0.name == "probattn_cache_evictions_total" })
        #expect(after.contains { $0.name == "probattn_websocket_connections" })
        _ = try http.request("DELETE", "/api/v1/images/\(id)")
    }
}

/// Tests that measure or stop the daemon, each with its own.
@Suite struct HTTPProcessTests {
    @Test(.timeLimit(.minutes(5)))
    func aBodyOverTheLimitIsRefusedAsItArrivesAndMemoryStaysBounded() throws {
        let limit = 16 << 20
        let daemon = try DaemonProcess(extraYAML: "limits: {max_message_bytes: \(limit)}", http: true)
        try daemon.start()
        defer { daemon.stop() }
        let baseline = daemon.memory.rss

        // With Content-Length: refused from the head alone, before any byte of the body is sent.
        let declared = try daemon.httpConnection()
        try declared.sendRaw(Array("POST /api/v1/images?image_id=big HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n".utf8))
        let early = try declared.readResponse(timeout: 10)
        #expect(early.status == 413)
        #expect(early.errorCode == "message_too_large")

        // Without Content-Length (chunked): refused once the running total passes the limit.
        let chunked = try daemon.httpConnection()
        try chunked.sendRaw(Array("POST /api/v1/images?image_id=big2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
        let chunk = Array("100000\r\n".utf8) + [UInt8](repeating: 7, count: 1 << 20) + [13, 10]
        var sent = 0
        while sent < 200 << 20, !chunked.responseWaiting(timeout: 0) {
            do { try chunked.sendRaw(chunk) } catch { break }
            sent += 1 << 20
        }
        let late = try chunked.readResponse(timeout: 10)
        #expect(late.status == 413)
        #expect(late.errorCode == "message_too_large")
        #expect(sent < 200 << 20, "the whole 200 MiB went out before the refusal")
        let peak = daemon.memory.peak
        #expect(baseline > 0 && peak >= baseline)
        print("HTTP body limit: baseline RSS \(baseline >> 20) MiB, peak \(peak >> 20) MiB, limit \(limit >> 20) MiB, "
              + "\(sent >> 20) MiB sent before the chunked refusal")
        #expect(peak - baseline < limit + 50 << 20,
                "peak RSS \(peak >> 20) MiB, baseline \(baseline >> 20) MiB, limit \(limit >> 20) MiB")
        // The daemon serves on.
        #expect(try daemon.httpConnection().request("GET", "/api/v1/health").status == 200)
    }

    @Test(.timeLimit(.minutes(5)))
    func fiftyClientsThatDisconnectMidUploadLeaveNothingBehind() throws {
        let daemon = try DaemonProcess(http: true)
        try daemon.start()
        defer { daemon.stop() }
        // Warm up (first connections allocate the event loops' buffers), then measure.
        #expect(try daemon.httpConnection().request("GET", "/api/v1/health").status == 200)
        let descriptors = daemon.openDescriptors
        let rss = daemon.memory.rss
        var clients: [HTTPConnection] = []
        for index in 0..<50 {
            let client = try daemon.httpConnection()
            try client.sendRaw(Array("POST /api/v1/images?image_id=gone-\(index) HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n".utf8)
                               + [UInt8](repeating: UInt8(index), count: 256 << 10))
            clients.append(client)
        }
        clients.forEach { $0.close() }
        clients.removeAll()
        #expect(daemon.sample(for: 20, until: { daemon.openDescriptors <= descriptors + 5 }),
                "descriptors \(descriptors) before, \(daemon.openDescriptors) after")
        #expect(daemon.sample(for: 20, until: { daemon.memory.rss <= rss + 20 << 20 }),
                "RSS \(rss >> 20) MiB before, \(daemon.memory.rss >> 20) MiB after")
        print("Abandoned uploads: descriptors \(descriptors) -> \(daemon.openDescriptors), RSS \(rss >> 20) -> "
              + "\(daemon.memory.rss >> 20) MiB")
        #expect(rss > 0)
        #expect(!daemon.log.contains("Request done"), "an abandoned upload was run as a request")
        #expect(try daemon.httpConnection().request("GET", "/api/v1/health").status == 200)
    }

    @Test(.timeLimit(.minutes(5)))
    func aStoreFailureIs500AndARequestDuringTheDrainIs503() throws {
        let daemon = try DaemonProcess(http: true)
        try daemon.start()
        let http = try daemon.httpConnection()
        #expect(try HTTPRequests.open(http, id: "locked", png: try TestImages.png()).status == 201)

        // Another process holds the database's write lock: the commit fails, the click is an internal error.
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = ["python3", "-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            sys.stdin.read()
            """, daemon.storePath]
        let input = Pipe(), output = Pipe()
        locker.standardInput = input
        locker.standardOutput = output
        try locker.run()
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        #expect(line.contains("locked"))
        let failed = try HTTPRequests.click(http, id: "locked", annotator: "a", x: 80, y: 60)
        #expect(failed.status == 500)
        #expect(failed.errorCode == "internal")
        try input.fileHandleForWriting.close()
        locker.waitUntilExit()
        #expect(try HTTPRequests.click(http, id: "locked", annotator: "a", x: 80, y: 60).status == 200)

        // A request whose body is still arriving when SIGTERM comes is answered shutting_down.
        let png = try TestImages.png()
        let uploading = try daemon.httpConnection()
        try uploading.sendRaw(Array("POST /api/v1/images?image_id=late HTTP/1.1\r\nHost: x\r\nContent-Length: \(png.count)\r\n\r\n".utf8)
                              + png.prefix(100))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForLog("Stopping"))
        // The drain ends as soon as nothing is in flight, so the gateway may close the connection before the rest
        // of the body arrives; while it is open, the answer is 503. Either way nothing is accepted after SIGTERM.
        do {
            try uploading.sendRaw(Array(png.dropFirst(100)))
            let refused = try uploading.readResponse(timeout: 10)
            #expect(refused.status == 503)
            #expect(refused.errorCode == "shutting_down")
        } catch {
            print("The gateway closed the late upload's connection during the drain: \(error)")
        }
        #expect(try daemon.waitForExit() == 0)
        let stored = try SQLiteSessionStore(path: daemon.storePath).openSessions().map(\.session.imageID)
        #expect(stored == ["locked"], "nothing was opened after SIGTERM: \(stored)")
    }

    @Test(.timeLimit(.minutes(5)))
    func aFailedBindFailsTheStartBeforeReady() throws {
        let taken = try SharedHTTPDaemon.get().httpEndpoint.replacingOccurrences(of: "http://", with: "")
        let daemon = try DaemonProcess(extraYAML: "http: {listen: \"\(taken)\"}")
        try? daemon.start(timeout: 20)
        let status = try daemon.waitForExit(timeout: 30)
        #expect(status == 1)
        #expect(!daemon.log.contains("Daemon ready"))
        #expect(daemon.log.contains("cannot serve HTTP on \(taken)"))
        #expect(daemon.log.contains("Address already in use"))
    }
}

@Suite struct HTTPBenchShortModeTests {
    @Test(.timeLimit(.minutes(5)))
    func benchLatencyOverHTTPReportsEveryKindAndLosesNothing() throws {
        let daemon = try SharedHTTPDaemon.get()
        let jsonPath = daemon.folder + "/bench-http-\(UInt32.random(in: 0..<UInt32.max)).json"
        let bench = Process()
        bench.executableURL = URL(fileURLWithPath: DaemonProcess.productsFolder + "/probattn")
        bench.arguments = ["bench", "latency", "--transport", "http", "--endpoint", daemon.httpEndpoint,
                           "--images", "2", "--annotators", "4", "--clicks", "4", "--size", "96x64", "--json", jsonPath]
        let output = Pipe()
        bench.standardOutput = output
        try bench.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        bench.waitUntilExit()
        #expect(bench.terminationStatus == 0, "bench failed:\n\(printed)")
        let report = try #require(JSONValue.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: jsonPath)))))
        #expect(Set(report.objectValue?.keys.map { $0 } ?? []) == ["kinds", "throughput_per_s", "lost", "duplicated",
                                                                   "out_of_order", "feedback_by_click", "daemon_cpu"])
        // Four annotators' four clicks, over both routes; the daemon was found by the gateway's listening port.
        #expect(report["feedback_by_click"]?["1-10"]?["count"]?.intValue == 16)
        #expect(report["daemon_cpu"]?["pid"]?.intValue == Int(daemon.pid))
        #expect(report["daemon_cpu"]?["feedback"]?.intValue == 16)
        #expect((report["daemon_cpu"]?["cpu_ms_per_feedback"]?.doubleValue ?? -1) >= 0)
        #expect(report["lost"]?.intValue == 0)
        #expect(report["duplicated"]?.intValue == 0)
        #expect(report["out_of_order"]?.intValue == 0)
        for kind in ["open_image", "get_mask", "feedback", "ws_feedback", "publish", "close_image"] {
            #expect(report["kinds"]?[kind]?["count"]?.intValue ?? 0 > 0, "kind \(kind)")
        }
        #expect(report["kinds"]?["feedback"]?["p50_ms"]?.doubleValue != nil)
    }
}

/// What one WebSocket client received: mask updates in arrival order, replies by request id, PNG frames.
struct WebSocketLog {
    var updates: [JSONValue] = []
    var replies: [String: JSONValue] = [:]
    var pngFrames = 0

    /// Reads messages until `done` holds (30 s at most).
    mutating func collect(_ ws: WebSocketConnection, until done: (WebSocketLog) -> Bool) throws {
        let deadline = Date().addingTimeInterval(30)
        while !done(self) {
            guard deadline.timeIntervalSinceNow > 0 else { throw HarnessError("WebSocket: condition not met in 30 s") }
            switch try ws.receive(timeout: deadline.timeIntervalSinceNow) {
            case .text(let text):
                guard let json = JSONValue.parse(Array(text.utf8)) else { continue }
                switch json["kind"]?.stringValue {
                case "mask_update": updates.append(json)
                case "presence": break
                default: replies[json["request_id"]?.stringValue ?? ""] = json
                }
            case .binary(let bytes):
                if Array(bytes.prefix(4)) == [0x89, 0x50, 0x4E, 0x47] { pngFrames += 1 }
            case .close(let code, let reason):
                throw HarnessError("WebSocket closed: \(code) \(reason)")
            }
        }
    }
}

/// A value under a lock, for test threads.
final class Locked<T: Sendable>: Sendable {
    private let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout T) -> R) -> R { mutex.withLock { body(&$0) } }
}
