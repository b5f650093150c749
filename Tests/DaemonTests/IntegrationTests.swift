import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ProbattnClient
import ProbattnConfig
import ProbattnImaging
import ProbattnJSON
import Testing
#if canImport(Glibc)
import Glibc
import Synchronization
#endif

/// A child process run to completion with a deadline; its output is collected through pipes.
struct ChildProcess {
    var status: Int32
    var stdout: String
    var stderr: String

    static func run(_ executable: String, _ arguments: [String], timeout: Double,
                    environment: [String: String] = [:]) throws -> ChildProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let outData = Collected(), errData = Collected()
        out.fileHandleForReading.readabilityHandler = { h in outData.append(h.availableData) }
        err.fileHandleForReading.readabilityHandler = { h in errData.append(h.availableData) }
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        try process.run()
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kill(-process.processIdentifier, SIGKILL)
            process.terminate()
            _ = done.wait(timeout: .now() + 10)
            throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(Int(timeout)) s")
        }
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        let restOut = out.fileHandleForReading.readDataToEndOfFile(), restErr = err.fileHandleForReading.readDataToEndOfFile()
        outData.append(restOut)
        errData.append(restErr)
        return ChildProcess(status: process.terminationStatus, stdout: String(decoding: outData.data, as: UTF8.self),
                            stderr: String(decoding: errData.data, as: UTF8.self))
    }

    private final class Collected: Sendable {
        private let bytes = Mutex(Data())
        func append(_ more: Data) { bytes.withLock { $0 += more } }
        var data: Data { bytes.withLock { $0 } }
    }
}

enum Integration {
    /// The package root (this file is Tests/DaemonTests/IntegrationTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The body CVAT's lambda manager posts to an interactor (`LambdaFunction.invoke` in
    /// cvat/apps/lambda_manager/views.py at e4c12a27d40622723d680945366574a233491add): `threshold` only when the UI sent
    /// one, then image, pos_points, neg_points, obj_bbox (null when the UI sent none).
    static func cvatBody(png: [UInt8], positive: [[Double]], negative: [[Double]], box: JSONValue = .null) -> JSONValue {
        ["image": .string(Data(png).base64EncodedString()),
         "pos_points": .array(positive.map { .array($0.map(JSONValue.double)) }),
         "neg_points": .array(negative.map { .array($0.map(JSONValue.double)) }),
         "obj_bbox": box]
    }

    /// Decodes an interactor reply as CVAT's UI does (tools-control.tsx `runInteractionRequest` with cvat-core's
    /// `InteractorResults`): `mask` is rows of one non-zero value and 0, sized by `bounds` = [xtl, ytl, xbr, ybr]
    /// (inclusive), placed at (xtl, ytl) in the frame. Returns the full-frame mask.
    static func decodeCVAT(_ reply: JSONValue, width: Int, height: Int) throws -> [Bool] {
        guard let rows = reply["mask"]?.arrayValue, let bounds = reply["bounds"]?.arrayValue?.compactMap(\.intValue),
              bounds.count == 4 else {
            throw HarnessError("not an InteractorResults object: \(String(describing: reply).prefix(300))")
        }
        let (x0, y0, x1, y1) = (bounds[0], bounds[1], bounds[2], bounds[3])
        guard rows.count == y1 - y0 + 1, x0 >= 0, y0 >= 0, x1 < width, y1 < height else {
            throw HarnessError("bounds \(bounds) do not fit \(rows.count) rows in a \(width)x\(height) frame")
        }
        var full = [Bool](repeating: false, count: width * height)
        var values = Set<Int>()
        for (r, row) in rows.enumerated() {
            guard let cells = row.arrayValue?.compactMap(\.intValue), cells.count == x1 - x0 + 1 else {
                throw HarnessError("row \(r) does not have xbr - xtl + 1 = \(x1 - x0 + 1) integers")
            }
            for (c, v) in cells.enumerated() {
                values.insert(v)
                if v != 0 { full[(y0 + r) * width + x0 + c] = true }
            }
        }
        guard values.subtracting([0]).count == 1 else {
            throw HarnessError("the mask must hold 0 and exactly one other value (cvat-core mask2Rle), has \(values.sorted())")
        }
        return full
    }

    static func expectedRectangle() -> [Bool] {
        (0..<(TestImages.width * TestImages.height)).map { TestImages.inside($0 % TestImages.width, $0 / TestImages.width) }
    }
}

@Suite("Label Studio and CVAT integrations", .serialized)
struct IntegrationTests {
    @Test("CVAT: the lambda manager's JSON on POST /cvat/interactor gives the two-region image's object")
    func cvatGateway() throws {
        let daemon = try SharedHTTPDaemon.get()
        let base = daemon.httpEndpoint
        let png = try TestImages.png(seed: 11)
        let body = Integration.cvatBody(png: png, positive: [[80.4, 60.7]], negative: [[10, 10]])
        let first = try Exchange.post(base + "/cvat/interactor", body)
        #expect(first.status == 200, "\(first.text)")
        let mask = try Integration.decodeCVAT(try #require(JSONValue.parse(first.body)), width: TestImages.width,
                                              height: TestImages.height)
        let differing = zip(mask, Integration.expectedRectangle()).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) pixels differ from the bright rectangle")
        // The same frame again (CVAT sends the image on every call): the preparation is shared.
        let again = try Exchange.post(base + "/cvat/interactor",
                                          Integration.cvatBody(png: png, positive: [[80, 60], [50, 40]], negative: [[10, 10]]))
        #expect(again.status == 200)
        let box = try Exchange.post(base + "/cvat/interactor", Integration.cvatBody(
            png: png, positive: [], negative: [], box: [[38, 28], [122, 92]]))
        #expect(box.status == 200, "a box alone is a prompt: \(box.text)")
        let boxed = try Integration.decodeCVAT(try #require(JSONValue.parse(box.body)), width: TestImages.width,
                                               height: TestImages.height)
        #expect(zip(boxed, Integration.expectedRectangle()).filter { $0 != $1 }.count == 0)
    }

    @Test("CVAT: the nuclio handler, run locally, forwards the call and returns the daemon's reply")
    func cvatHandler() throws {
        let daemon = try SharedHTTPDaemon.get()
        let folder = DaemonProcess.makeTemporaryFolder()
        let request = folder + "/request.json"
        try Data(Integration.cvatBody(png: try TestImages.png(seed: 12), positive: [[80, 60]], negative: [[10, 10]])
            .serialized()).write(to: URL(fileURLWithPath: request))
        let script = Integration.root + "/Tests/Integration/cvat/run_handler.py"
        for mode in ["json", "raw"] {
            let run = try ChildProcess.run("/usr/bin/env", ["python3", script, daemon.httpEndpoint, request, mode],
                                           timeout: 60)
            #expect(run.status == 0, "\(run.stderr)")
            let out = try #require(JSONValue.parse(Array(run.stdout.utf8)), "\(run.stdout)")
            #expect(out["status"]?.intValue == 200, "\(run.stdout)")
            #expect(out["content_type"]?.stringValue == "application/json")
            let reply = try #require(JSONValue.parse(Array((out["body"]?.stringValue ?? "").utf8)))
            let mask = try Integration.decodeCVAT(reply, width: TestImages.width, height: TestImages.height)
            #expect(zip(mask, Integration.expectedRectangle()).filter { $0 != $1 }.count == 0)
        }
        // An error of the daemon comes back with its status and text.
        try Data(#"{"image": "", "pos_points": [], "neg_points": []}"#.utf8).write(to: URL(fileURLWithPath: request))
        let bad = try ChildProcess.run("/usr/bin/env", ["python3", script, daemon.httpEndpoint, request], timeout: 60)
        let out = try #require(JSONValue.parse(Array(bad.stdout.utf8)), "\(bad.stdout) \(bad.stderr)")
        #expect(out["status"]?.intValue == 400)
        #expect(out["content_type"]?.stringValue == "text/plain")
    }

    @Test("CVAT: bad input gets a non-200 status with a text body, and the daemon keeps serving")
    func cvatBadInput() throws {
        let daemon = try SharedHTTPDaemon.get()
        let base = daemon.httpEndpoint
        let png = try TestImages.png()
        let cases: [(String, [UInt8], Int)] = [
            ("malformed body", Array("{\"image\": ".utf8), 400),
            ("no image", JSONValue.object(["pos_points": [[1, 1]], "neg_points": []]).serialized(), 400),
            ("not base64", JSONValue.object(["image": "%%%", "pos_points": [[1, 1]], "neg_points": []]).serialized(), 400),
            ("not an image", Integration.cvatBody(png: Array("hello".utf8), positive: [[1, 1]], negative: []).serialized(), 400),
            ("point outside", Integration.cvatBody(png: png, positive: [[500, 10]], negative: []).serialized(), 400),
            ("no positive point", Integration.cvatBody(png: png, positive: [], negative: [[3, 3]]).serialized(), 400),
            ("missing neg_points", JSONValue.object(["image": .string(Data(png).base64EncodedString()),
                                                     "pos_points": [[1, 1]]]).serialized(), 400),
            // The shared daemon allows 8 MiB bodies and 40000 pixels.
            ("body over max_message_bytes", [UInt8](repeating: 0x20, count: 9 << 20), 413),
            ("over the pixel limit", Integration.cvatBody(png: try TestImages.png(width: 250, height: 200),
                                                          positive: [[10, 10]], negative: []).serialized(), 413),
        ]
        for (name, body, status) in cases {
            let response = try Exchange.send("POST", base + "/cvat/interactor", body: body)
            #expect(response.status == status, "\(name): \(response.status) \(response.text)")
            #expect(response.header("content-type")?.hasPrefix("text/plain") == true, "\(name)")
            #expect(!response.text.isEmpty, "\(name): the body says why")
        }
        let fine = try Exchange.post(base + "/cvat/interactor",
                                         Integration.cvatBody(png: png, positive: [[80, 60]], negative: []))
        #expect(fine.status == 200)
    }

    @Test("predict over ZeroMQ and HTTP: the mask of exactly the call's points, on a preparation shared by content")
    func predictCommand() throws {
        let daemon = try SharedHTTPDaemon.get()
        let base = daemon.httpEndpoint
        let png = try TestImages.png(seed: 14)
        let header: JSONValue = ["points": [["x": 80, "y": 60, "class": "object"], ["x": 5, "y": 5, "class": "background"]]]
        let form = HTTPConnection.multipart([(name: "header", contentType: "application/json", body: header.serialized()),
                                             (name: "image", contentType: "image/png", body: png)])
        let first = try Exchange.send("POST", base + "/api/v1/predict", body: form.body, contentType: form.contentType)
        #expect(first.status == 200, "\(first.text)")
        let reply = try #require(JSONValue.parse(first.body))
        #expect(reply["ok"]?.boolValue == true)
        #expect(reply["cached"]?.boolValue == false)
        let hash = try #require(reply["content_hash"]?.stringValue)
        // By content hash only: the preparation is reused.
        var byHash = header
        if case .object(var fields) = byHash { fields["content_hash"] = .string(hash); byHash = .object(fields) }
        let second = try Exchange.post(base + "/api/v1/predict", byHash)
        let again = try #require(JSONValue.parse(second.body))
        #expect(again["cached"]?.boolValue == true, "\(second.text)")
        #expect(again["timings_ms"]?["encode"]?.doubleValue == 0)
        #expect(again["mask"] == reply["mask"], "same points, same image: same mask")
        let unknown = try Exchange.post(base + "/api/v1/predict",
                                            ["points": [["x": 1, "y": 1, "class": "object"]], "content_hash": "sha256:00"])
        #expect(unknown.status == 404)
        // Over ZeroMQ: the same command and the same mask; no session was opened.
        let client = try daemon.client()
        let zmq = try client.request("predict", ["points": header["points"]!], payloads: [png])
        #expect(zmq.ok, "\(zmq.header)")
        #expect(zmq.header["mask"] == reply["mask"])
        #expect(zmq.header["cached"]?.boolValue == true)
        let badPoint = try client.request("predict", ["points": [["x": 500, "y": 1, "class": "object"]]], payloads: [png])
        #expect(badPoint.header["error"]?["code"]?.stringValue == "out_of_bounds")
    }

    @Test("Label Studio: a task URL that does not answer within fetch_timeout_s is a 504 in label-studio-ml's shape")
    func labelStudioTimeout() throws {
        // A loopback listener that never accepts: the connection is made by the kernel, no answer ever comes.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        #expect(listen(listener, 16) == 0)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let daemon = try DaemonProcess(extraYAML: """
            label_studio: {url: "http://127.0.0.1:\(port)", api_key: "0123456789abcdef", fetch_timeout_s: 1}
            """, http: true)
        try daemon.start()
        defer { daemon.stop() }
        let base = daemon.httpEndpoint
        let started = Date()
        let response = try Exchange.post(base + "/label-studio/predict", LabelStudioBodies.predict(imageURL: "/data/upload/1/a.png"))
        let seconds = Date().timeIntervalSince(started)
        #expect(response.status == 504, "\(response.text)")
        let body = try #require(JSONValue.parse(response.body))
        #expect(body["status"]?.intValue == 504)
        #expect(body["detail"]?.stringValue?.contains("fetch_timeout_s") == true, "\(response.text)")
        #expect(seconds < 10, "answered after \(seconds) s")
        let health = try Exchange.send("GET", base + "/label-studio/health")
        #expect(health.status == 200)
    }

    /// The end-to-end acceptance test against a real Label Studio 1.23 (installed under .build/ when missing).
    @Test("Label Studio 1.23: interactive brush prediction through Label Studio's own endpoint", .timeLimit(.minutes(30)))
    func labelStudioEndToEnd() throws {
        let setup = try ChildProcess.run("/usr/bin/env", ["python3", Integration.root + "/Tests/Integration/label_studio/lsenv.py",
                                                          Integration.root], timeout: 1500)
        guard setup.status == 0, let python = setup.stdout.split(separator: "\n").last.map(String.init) else {
            Issue.record("cannot install Label Studio 1.23 under .build/: \(setup.stderr)")
            return
        }
        let daemon = try DaemonProcess(extraYAML: "limits: {max_image_pixels: 20000}", http: true)
        try daemon.start()
        defer { daemon.stop() }
        let work = DaemonProcess.makeTemporaryFolder()
        let report = work + "/report.json"
        let run = try ChildProcess.run(python, [Integration.root + "/Tests/Integration/label_studio/ls_e2e.py",
                                                daemon.httpEndpoint, work + "/ls", report], timeout: 1200)
        let text = (try? String(contentsOfFile: report, encoding: .utf8)) ?? "(no report)"
        print("Label Studio end-to-end report:\n\(text)")
        #expect(run.status == 0, "the Label Studio end-to-end check failed: \(run.stderr.suffix(4000))")
        let health = try Exchange.send("GET", daemon.httpEndpoint + "/label-studio/health")
        #expect(health.status == 200, "the daemon keeps serving")
    }
}

@Suite("label_studio config")
struct LabelStudioConfigTests {
    @Test("label_studio: url, api_key, fetch_timeout_s; strict like every other section")
    func decoding() throws {
        let config = try DaemonConfig.decode(yaml: """
            label_studio: {url: "http://127.0.0.1:8080", api_key: abc, fetch_timeout_s: 2.5}
            """)
        #expect(config.labelStudio.url == "http://127.0.0.1:8080")
        #expect(config.labelStudio.apiKey == "abc")
        #expect(config.labelStudio.fetchTimeoutSeconds == 2.5)
        #expect(try DaemonConfig.decode(yaml: "").labelStudio.fetchTimeoutSeconds == 10)
        for bad in ["label_studio: {url: ftp://x}", "label_studio: {fetch_timeout_s: 0}", "label_studio: {token: x}",
                    "label_studio: {fetch_timeout_s: soon}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try DaemonConfig.decode(yaml: bad) }
        }
    }
}

/// Bodies shaped as Label Studio 1.23 sends them (docs/INTEGRATIONS.md).
enum LabelStudioBodies {
    static let config = """
        <View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image"><Label value="Object"/></BrushLabels>\
        <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object" smart="true"/></KeyPointLabels></View>
        """

    static func predict(imageURL: String, x: Double = 50, y: Double = 50, width: Int = 160, height: Int = 120) -> JSONValue {
        ["tasks": [["id": 1, "data": ["image": .string(imageURL)]]], "project": "1.1", "label_config": .string(config),
         "params": ["login": .null, "password": .null, "context": ["result": [[
             "original_width": .int(width), "original_height": .int(height), "image_rotation": 0,
             "value": ["x": .double(x), "y": .double(y), "width": 1.5, "keypointlabels": ["Object"]],
             "is_positive": true, "id": "k1", "from_name": "kp", "to_name": "image", "type": "keypointlabels"]]]]]
    }
}

/// One HTTP exchange through URLSession (a fresh request each time; every wait has the session's timeout).
struct Exchange {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }

    static func send(_ method: String, _ url: String, body: [UInt8] = [], contentType: String = "application/json",
                     timeout: Double = 60) throws -> Exchange {
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: timeout)
        request.httpMethod = method
        if method != "GET" {
            request.httpBody = Data(body)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let done = DispatchSemaphore(value: 0)
        let box = Box()
        URLSession.shared.dataTask(with: request) { data, response, error in
            box.set(data: data, response: response as? HTTPURLResponse, error: error)
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + timeout + 5) == .success else { throw HarnessError("\(method) \(url): no answer") }
        let (data, response, error) = box.get()
        guard let response else { throw HarnessError("\(method) \(url): \(error.map { "\($0)" } ?? "no response")") }
        var headers: [String: String] = [:]
        for (k, v) in response.allHeaderFields { headers["\(k)"] = "\(v)" }
        return Exchange(status: response.statusCode, headers: headers, body: [UInt8](data ?? Data()))
    }

    static func post(_ url: String, _ json: JSONValue) throws -> Exchange {
        try send("POST", url, body: json.serialized())
    }

    /// Unchecked `Sendable`: `value` (Foundation's response and error types, not `Sendable`) is touched only under
    /// `lock`.
    private final class Box: @unchecked Sendable {
        private let lock = NSLock()
        private var value: (Data?, HTTPURLResponse?, Error?) = (nil, nil, nil)
        func set(data: Data?, response: HTTPURLResponse?, error: Error?) { lock.withLock { value = (data, response, error) } }
        func get() -> (Data?, HTTPURLResponse?, Error?) { lock.withLock { value } }
    }
}
