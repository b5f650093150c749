import Foundation
import ProbattnDaemon
import ProbattnImaging
import ProbattnZMQ
import Testing
#if canImport(Glibc)
import Glibc
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation
#endif

/// Starts the real `probattnd` binary (from the build products folder, next to the test bundle) with a temporary
/// config and store, on `ipc://` endpoints in a temporary folder, and stops it again. Every wait has a deadline.
/// Unchecked `Sendable`: the `var`s are set and read by the test's thread only; the pipe and termination handlers,
/// which run on other threads, touch only `logSignal`, `exited` and the log file.
final class DaemonProcess: @unchecked Sendable {
    let folder: String
    let configPath: String
    let storePath: String
    let logPath: String
    let requests: String
    let results: String
    private(set) var process: Process?
    private var extraEnvironment: [String: String]
    /// Broadcast whenever the daemon wrote to its log.
    private let logSignal = NSCondition()
    /// Signalled once the process has exited.
    private let exited = DispatchSemaphore(value: 0)
    private let imageBytes: String
    /// The CURVE keys `start` asks `health` with (a secured daemon answers no one else); nil for an open daemon.
    var startupKeys: ZMQCurveClientKeys?
    /// Whether the config has the HTTP gateway (on a free loopback port, read from the log after start).
    let http: Bool
    /// `http://127.0.0.1:PORT` once started with `http`.
    private(set) var httpEndpoint = ""

    /// Writes the config (`extraYAML` is appended: limits, sessions, …) without starting anything. With `http`, the
    /// gateway listens on `127.0.0.1:0` (a free port).
    init(extraYAML: String = "", imageBytes: String = "inline", environment: [String: String] = [:],
         folder: String? = nil, http: Bool = false) throws {
        self.imageBytes = imageBytes
        self.http = http
        let base = folder ?? Self.makeTemporaryFolder()
        self.folder = base
        configPath = base + "/probattnd.yaml"
        storePath = base + "/state/store.sqlite"
        logPath = base + "/daemon.log"
        requests = "ipc://\(base)/requests.sock"
        results = "ipc://\(base)/results.sock"
        extraEnvironment = environment
        try writeConfig(extraYAML: extraYAML)
    }

    static func makeTemporaryFolder() -> String {
        var template = Array("/tmp/probattnd-test-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { buffer -> String in
            guard let base = buffer.baseAddress, let result = mkdtemp(base) else {
                return "/tmp/probattnd-test-\(UUID().uuidString)"
            }
            return String(cString: result)
        }
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func writeConfig(extraYAML: String) throws {
        let yaml = """
            endpoints:
              requests: \(requests)
              results: \(results)
            store:
              path: \(storePath)
              image_bytes: \(imageBytes)\(imageBytes == "path" ? "\n  image_root: \(folder)" : "")
            logging:
              level: debug
            \(http ? "http: {listen: \"127.0.0.1:0\"}" : "")
            \(extraYAML)
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Runs `executable` with `arguments` to its end; returns its exit status and everything it printed (stdout and
    /// stderr together).
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Runs a build product (`probattn`, `probattnd`) of this build, as `run` does.
    static func runProduct(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try run(productsFolder + "/" + name, arguments)
    }

    /// The folder of the build products: where the test bundle, `probattnd`, `probattn` and the plugins are.
    static var productsFolder: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var folder = (exe as NSString).deletingLastPathComponent
        // The test runner may live inside `<name>.xctest/…`; climb out of it.
        while folder.contains(".xctest") { folder = (folder as NSString).deletingLastPathComponent }
        return folder
    }

    /// Starts `probattnd run --config …` and waits until it answers `health`.
    func start(timeout: Double = 60) throws {
        let binary = Self.productsFolder + "/probattnd"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw HarnessError("probattnd not found at \(binary); build it first (swift build --build-tests)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", configPath]
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = nil
        environment["WATCHDOG_USEC"] = nil
        environment["JOURNAL_STREAM"] = nil
        for (k, v) in extraEnvironment { environment[k] = v }
        process.environment = environment
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logFile.seekToEndOfFile()
        // The daemon's output goes through a pipe: every chunk is appended to the log file and wakes `waitForLog`.
        let output = Pipe()
        output.fileHandleForReading.readabilityHandler = { [logSignal] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                try? logFile.close()
            } else {
                logFile.write(data)
            }
            logSignal.lock()
            logSignal.broadcast()
            logSignal.unlock()
        }
        process.standardError = output
        process.standardOutput = output
        process.terminationHandler = { [exited] _ in exited.signal() }
        try process.run()
        self.process = process
        // Ask for health until it answers; fail at once (with the log) if the daemon exits instead.
        let client = try ProbattnClient(endpoint: requests, timeout: 0.5, curve: startupKeys)
        let deadline = Date().addingTimeInterval(timeout)
        // One request suffices: the DEALER queues it until the daemon binds.
        let pending = try client.send("health")
        while true {
            if let reply = try? client.receive(timeout: 0.5) {
                guard reply.ok, reply.requestID == pending else {
                    throw HarnessError("unexpected health reply: \(reply.header)")
                }
                if http { try readHTTPEndpoint(deadline: deadline) }
                return
            }
            guard process.isRunning else {
                throw HarnessError("probattnd exited with status \(process.terminationStatus) during start-up. Log:\n\(log)")
            }
            guard Date() < deadline else {
                throw HarnessError("probattnd did not answer within \(timeout) s. Log:\n\(log)")
            }
        }
    }

    /// Waits for "Daemon ready" (logged once the HTTP listener is bound) and takes the bound port from the
    /// "HTTP listening address=HOST:PORT" line.
    private func readHTTPEndpoint(deadline: Date) throws {
        guard waitForLog("Daemon ready", timeout: max(0, deadline.timeIntervalSinceNow)) else {
            throw HarnessError(process?.isRunning == true ? "no 'Daemon ready' line in time. Log:\n\(log)"
                               : "probattnd exited before the HTTP gateway was ready. Log:\n\(log)")
        }
        let text = log
        guard let line = text.components(separatedBy: "\n").first(where: { $0.contains("HTTP listening") }),
              let range = line.range(of: "address=") else {
            throw HarnessError("no 'HTTP listening' line before 'Daemon ready'. Log:\n\(text)")
        }
        let address = line[range.upperBound...].split(separator: " ").first.map(String.init) ?? ""
        httpEndpoint = "http://\(address)"
    }

    /// Re-reads a value that changes without any event to wait on (the process's open descriptors or its RSS, from
    /// /proc) until `condition` holds or `timeout` passes; returns whether it held. This samples a measurement, it
    /// synchronises with nothing: between readings it waits on a semaphore that nobody signals.
    func sample(for timeout: Double, every interval: Double = 0.05, until condition: () -> Bool) -> Bool {
        let deadline = DispatchTime.now() + timeout
        let pause = DispatchSemaphore(value: 0)
        while !condition() {
            guard DispatchTime.now() < deadline else { return false }
            _ = pause.wait(timeout: .now() + interval)
        }
        return true
    }

    /// A keep-alive HTTP connection to the gateway.
    func httpConnection(timeout: Double = 30) throws -> HTTPConnection {
        try HTTPConnection(endpoint: httpEndpoint, timeout: timeout)
    }

    /// A WebSocket on an image (`annotator` becomes `?annotator=`).
    func webSocket(imageID: String, annotator: String? = nil, timeout: Double = 30) throws -> WebSocketConnection {
        let query = annotator.map { "?annotator=\(HTTPConnection.encode($0))" } ?? ""
        return try WebSocketConnection(endpoint: httpEndpoint,
                                       target: "/api/v1/images/\(HTTPConnection.encode(imageID))/ws\(query)",
                                       timeout: timeout)
    }

    /// Resident and peak resident memory of the daemon (VmRSS, VmHWM), in bytes.
    var memory: (rss: Int, peak: Int) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = status.components(separatedBy: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return (Int(line.split(whereSeparator: \.isWhitespace).dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// Open file descriptors of the daemon.
    var openDescriptors: Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }

    var pid: Int32 { process?.processIdentifier ?? -1 }

    func signal(_ number: Int32) { if let process, process.isRunning { kill(process.processIdentifier, number) } }

    /// Waits for the process to end; returns its exit status (or the signal number, negated).
    @discardableResult
    func waitForExit(timeout: Double = 30) throws -> Int32 {
        guard let process else { return 0 }
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            _ = exited.wait(timeout: .now() + 30)
            exited.signal()   // later waits return at once
            throw HarnessError("probattnd did not exit within \(timeout) s; killed. Log:\n\(log)")
        }
        exited.signal()       // later waits return at once
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
    }

    /// SIGTERM and wait; SIGKILL when it does not stop in time.
    func stop() {
        signal(SIGTERM)
        _ = try? waitForExit(timeout: 30)
    }

    /// Waits until the log contains `text` (woken by every write of the daemon; at most `timeout` seconds).
    func waitForLog(_ text: String, timeout: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        logSignal.lock()
        defer { logSignal.unlock() }
        while !log.contains(text) {
            guard logSignal.wait(until: deadline) else { return log.contains(text) }
        }
        return true
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func client(timeout: Double = 30) throws -> ProbattnClient {
        try ProbattnClient(endpoint: requests, timeout: timeout)
    }

    func subscriber(imageID: String?) throws -> ProbattnSubscriber {
        let s = try ProbattnSubscriber(endpoint: results)
        try s.subscribe(imageID: imageID)
        return s
    }

    deinit {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: folder)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Test images: a dark background with a bright rectangle (the "object").
enum TestImages {
    static let width = 160
    static let height = 120
    /// The rectangle covers x in [40, 120), y in [30, 90).
    static func inside(_ x: Int, _ y: Int) -> Bool { (40..<120).contains(x) && (30..<90).contains(y) }

    static func rgb(width: Int = width, height: Int = height, seed: UInt8 = 0) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3
                let bright = (width * 1 / 4..<width * 3 / 4).contains(x) && (height / 4..<height * 3 / 4).contains(y)
                let noise = UInt8(truncatingIfNeeded: (x * 7 + y * 13 + Int(seed)) % 9)
                pixels[o] = bright ? 220 &+ noise : 25 &+ noise
                pixels[o + 1] = bright ? 190 &+ noise : 35 &+ noise
                pixels[o + 2] = bright ? 40 &+ noise : 95 &+ noise
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    static func png(width: Int = width, height: Int = height, seed: UInt8 = 0) throws -> [UInt8] {
        try ImageEncoding.png(rgb(width: width, height: height, seed: seed))
    }
}

extension ProbattnReply {
    /// The reply's mask as a row-major binary mask.
    func binaryMask() throws -> [Bool] {
        guard let mask = header["mask"], let size = mask["size"]?.arrayValue?.compactMap(\.intValue), size.count == 2,
              let counts = mask["counts"]?.stringValue else {
            throw HarnessError("reply has no mask: \(header)")
        }
        return try COCORLE(size: size, counts: counts).decodeBinary()
    }

    var version: Int? { header["version"]?.intValue }
}

/// Receives replies until one per request id has arrived; fails on duplicates or a timeout.
func collectReplies(_ client: ProbattnClient, ids: [String], timeout: Double = 30) throws -> [String: ProbattnReply] {
    var replies: [String: ProbattnReply] = [:]
    while replies.count < ids.count {
        let reply = try client.receive(timeout: timeout)
        guard let id = reply.requestID, ids.contains(id) else { throw HarnessError("unexpected reply \(reply.header)") }
        guard replies[id] == nil else { throw HarnessError("duplicate reply for \(id)") }
        replies[id] = reply
    }
    return replies
}
