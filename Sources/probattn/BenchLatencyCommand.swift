import ArgumentParser
import Foundation
import ProbattnClient
import ProbattnSession
import ProbattnJSON
import ProbattnImaging
import ProbattnKeys
import ProbattnZMQ

/// `probattn bench latency`: per-request latency of a running daemon under a closed-loop team of annotators
/// (issue 6 item 3). See `LatencyBenchmark` for the phases and what is counted.
struct BenchLatencyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Measure a running daemon's round trips and publish delays with simulated annotators.",
        discussion: """
            Each annotator sends its next click as soon as the previous reply arrives (no think time). Annotator a \
            works on image a mod N; the first annotator of each image opens it, the others join with get_mask. \
            Prints p50/p90/p99/max per request kind and for the publish delay (feedback sent -> its mask update \
            received), the feedback round trips by click number (1-10, 11-50, 51-200, 201-500), the feedback \
            throughput, the daemon's CPU time per feedback (ZeroMQ; the process of --daemon-pid or the local one \
            listening on the endpoint), and every lost, duplicated or out-of-order reply or update. Exits \
            with status 1 when any of those (or an error reply) occurred. With --transport http the clicks alternate \
            between POST .../feedback (kind feedback) and the image's WebSocket (kind ws_feedback), and publish is \
            the delay until the update reaches the WebSocket of every other annotator of the image (docs/HTTP.md).
            """)

    /// The endpoint to use: the given one, or the transport's default.
    var requestEndpoint: String { endpoint ?? (transport == "http" ? "http://127.0.0.1:5580" : "tcp://127.0.0.1:5555") }

    @Option(help: ArgumentHelp("zmq: the ZeroMQ sockets; http: the HTTP gateway (POST routes and one WebSocket per annotator).",
                               valueName: "zmq|http"))
    var transport = "zmq"

    @Option(help: ArgumentHelp("The daemon's request (ROUTER) endpoint, or with --transport http its gateway, http://HOST:PORT (default http://127.0.0.1:5580).",
                               valueName: "endpoint"))
    var endpoint: String?

    @Option(name: .customLong("results-endpoint"),
            help: ArgumentHelp("The daemon's results (PUB) endpoint.", valueName: "endpoint"))
    var resultsEndpoint = "tcp://127.0.0.1:5556"

    @Option(help: "Number of images open at once.")
    var images = 1

    @Option(help: "Number of annotators (spread over the images round-robin).")
    var annotators = 1

    @Option(help: "Clicks per annotator.")
    var clicks = 20

    @Option(help: ArgumentHelp("Size of the synthetic images.", valueName: "WxH"))
    var size = "640x480"

    @Option(name: .customLong("image-dir"),
            help: ArgumentHelp("Use the PNG/JPEG/BMP files of this folder (cycled) instead of synthetic images.",
                               valueName: "dir"))
    var imageDirectory: String?

    @Option(help: ArgumentHelp("Seconds to wait for a reply before counting it lost.", valueName: "seconds"))
    var timeout = 30.0

    @Option(help: "Seed of the synthetic images and click positions.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Also write the figures as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(name: .customLong("server-key"),
            help: ArgumentHelp("A secured daemon's public key file (its NAME.key); needs --client-key.", valueName: "file"))
    var serverKey: String?

    @Option(name: .customLong("client-key"),
            help: ArgumentHelp("The client's key pair (NAME.key_secret): connect with CURVE, every annotator acting as its annotator.",
                               valueName: "file"))
    var clientKey: String?

    @Option(name: .customLong("daemon-pid"),
            help: ArgumentHelp("The daemon's process id, for its CPU time per feedback (default: the local process listening on the request endpoint, when found).",
                               valueName: "pid"))
    var daemonPID: Int32?

    func validate() throws {
        guard images >= 1 else { throw ValidationError("--images must be at least 1") }
        guard annotators >= images else {
            throw ValidationError("--annotators must be at least --images (every image needs an annotator)")
        }
        guard clicks >= 1 else { throw ValidationError("--clicks must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        guard ["zmq", "http"].contains(transport) else { throw ValidationError("--transport must be zmq or http") }
        if transport == "http" {
            do { _ = try HTTPConnection.hostAndPort(requestEndpoint) } catch {
                throw ValidationError("--endpoint must be http://HOST:PORT with --transport http, got '\(requestEndpoint)'")
            }
        }
        if imageDirectory == nil { _ = try parsedSize() }
        guard (serverKey == nil) == (clientKey == nil) else {
            throw ValidationError("--server-key and --client-key go together")
        }
    }

    /// The CURVE keys and the key's annotator, from `--server-key` and `--client-key`; nil without them.
    private func loadKeys() throws -> (keys: ZMQCurveClientKeys, annotator: String?)? {
        guard let serverKey, let clientKey else { return nil }
        do { return try ClientKeyFiles.load(serverKey: serverKey, clientKey: clientKey) } catch {
            throw ValidationError("\(error)")
        }
    }

    private func parsedSize() throws -> (width: Int, height: Int) {
        let parts = size.lowercased().split(separator: "x")
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width >= 8, height >= 8,
              width <= 16384, height <= 16384 else {
            throw ValidationError("--size must be WIDTHxHEIGHT with each side in 8...16384, e.g. 640x480")
        }
        return (width, height)
    }

    func run() throws {
        let benchImages = try loadImages()
        let keys = try loadKeys()
        let endpoint = requestEndpoint
        let settings = LatencyBenchmarkSettings(requestEndpoint: endpoint, resultsEndpoint: resultsEndpoint,
                                                annotators: annotators, clicksPerAnnotator: clicks,
                                                timeout: timeout, seed: seed, curve: keys?.keys,
                                                annotatorName: keys?.annotator,
                                                daemonPID: daemonPID ?? DaemonCPU.pid(listeningOn: endpoint))
        let source = imageDirectory.map { "from \($0)" } ?? "synthetic"
        print("probattn bench latency: \(images) image(s) \(benchImages[0].width)x\(benchImages[0].height) (\(source)), "
              + "\(annotators) annotator(s), \(clicks) click(s) each; "
              + (transport == "http" ? "\(endpoint) (HTTP and WebSocket)" : "\(endpoint), \(resultsEndpoint)")
              + (keys.map { ", CURVE as \($0.annotator ?? "annotator-N")" } ?? ""))
        let report = transport == "http"
            ? HTTPLatencyBenchmark(settings: settings, images: benchImages).run()
            : try LatencyBenchmark(settings: settings, images: benchImages).run()
        print(Self.table(report), terminator: "")
        print(transport == "http" ? Self.daemonStages(httpEndpoint: endpoint, timeout: timeout)
              : Self.daemonStages(endpoint: endpoint, timeout: timeout, curve: keys?.keys), terminator: "")
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(LatencyJSON(report))
            do {
                try (data + Data("\n".utf8)).write(to: URL(fileURLWithPath: json))
            } catch {
                throw ValidationError("cannot write \(json): \(error.localizedDescription)")
            }
        }
        if report.lost + report.duplicated + report.outOfOrder > 0 || !report.errors.isEmpty {
            throw ExitCode(1)
        }
    }

    /// The images to open: synthetic scenes, or the folder's files decoded once to learn their size.
    private func loadImages() throws -> [BenchImage] {
        if let imageDirectory {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: imageDirectory)
                    .filter { ["png", "jpg", "jpeg", "bmp"].contains(($0 as NSString).pathExtension.lowercased()) }
                    .sorted()
            } catch {
                throw ValidationError("cannot read --image-dir \(imageDirectory): \(error.localizedDescription)")
            }
            guard !names.isEmpty else { throw ValidationError("--image-dir \(imageDirectory) has no PNG, JPEG or BMP file") }
            return try (0..<images).map { index in
                let name = names[index % names.count]
                let path = (imageDirectory as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ValidationError("cannot read \(path)")
                }
                let bytes = [UInt8](data)
                let decoded = try ImageDecoder.decode(bytes)
                return BenchImage(name: name, bytes: bytes, width: decoded.width, height: decoded.height,
                                  isObject: nil)
            }
        }
        let (width, height) = try parsedSize()
        return try (0..<images).map { index in
            let scene = SyntheticScene(width: width, height: height, seed: seed &+ UInt64(index))
            return BenchImage(name: "synthetic-\(index)", bytes: try ImageEncoding.png(scene.image),
                              width: width, height: height, isObject: scene.isObject)
        }
    }

    /// The daemon's own per-stage latencies from `health` (its most recent samples), to tell queueing from work;
    /// a note instead when the daemon does not answer.
    static func daemonStages(endpoint: String, timeout: Double, curve: ZMQCurveClientKeys? = nil) -> String {
        guard let client = try? ProbattnClient(endpoint: endpoint, timeout: min(timeout, 5), curve: curve),
              let reply = try? client.request("health"), reply.ok,
              let stages = reply["stages"]?.objectValue else {
            return "daemon stages: health request failed\n"
        }
        return stagesLine(stages)
    }

    /// The same, from `GET /api/v1/health` of the HTTP gateway.
    static func daemonStages(httpEndpoint: String, timeout: Double) -> String {
        guard let connection = try? HTTPConnection(endpoint: httpEndpoint, timeout: min(timeout, 5)),
              let response = try? connection.request("GET", "/api/v1/health"), let json = response.json else {
            return "daemon stages: health request failed\n"
        }
        return stagesLine(json["stages"]?.objectValue)
    }

    private static func stagesLine(_ stages: [String: JSONValue]?) -> String {
        guard let stages else { return "daemon stages: health request failed\n" }
        let order = ["decode", "encode", "adapt", "propagate", "commit", "feedback_total"]
        let names = order.filter { stages[$0] != nil } + stages.keys.filter { !order.contains($0) }.sorted()
        let parts = names.compactMap { name -> String? in
            guard let stage = stages[name], let p50 = stage["p50_ms"]?.doubleValue,
                  let p99 = stage["p99_ms"]?.doubleValue else { return nil }
            return String(format: "%@ %.1f/%.1f", name, p50, p99)
        }
        return "daemon stages (p50/p99 ms, from health): " + parts.joined(separator: ", ") + "\n"
    }

    /// The human-readable report.
    static func table(_ report: LatencyReport) -> String {
        let order = ["open_image", "get_mask", "feedback", "ws_feedback", "publish", "close_image"]
        let kinds = order.filter { report.samples[$0] != nil } + report.samples.keys.filter { !order.contains($0) }.sorted()
        func column(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }
        func ms(_ value: Double) -> String { String(format: "%.1f", value) }
        var lines = ["kind".padding(toLength: 12, withPad: " ", startingAt: 0)
                     + column("count", 7) + column("p50 ms", 9) + column("p90 ms", 9) + column("p99 ms", 9)
                     + column("max ms", 9)]
        for kind in kinds {
            let summary = LatencySummary(report.samples[kind] ?? [])
            lines.append(kind.padding(toLength: 12, withPad: " ", startingAt: 0) + column("\(summary.count)", 7)
                         + column(ms(summary.p50Ms), 9) + column(ms(summary.p90Ms), 9) + column(ms(summary.p99Ms), 9)
                         + column(ms(summary.maxMs), 9))
        }
        let buckets = ["1-10", "11-50", "51-200", "201-500", "501-"].filter { report.feedbackByClick[$0] != nil }
        for bucket in buckets {
            let summary = LatencySummary(report.feedbackByClick[bucket] ?? [])
            lines.append(("clicks " + bucket).padding(toLength: 14, withPad: " ", startingAt: 0)
                         + column("\(summary.count)", 5) + column(ms(summary.p50Ms), 9) + column(ms(summary.p90Ms), 9)
                         + column(ms(summary.p99Ms), 9) + column(ms(summary.maxMs), 9))
        }
        lines.append(String(format: "throughput: %.1f feedback/s over %.2f s", report.throughputPerSecond,
                            report.clickPhaseSeconds))
        if let pid = report.daemonPID, let seconds = report.daemonCPUSeconds,
           let perFeedback = report.daemonCPUMillisecondsPerFeedback {
            lines.append(String(format: "daemon CPU (pid %d, utime + stime): %.2f s over the click phase, %.2f ms per feedback",
                                pid, seconds, perFeedback))
        } else {
            lines.append("daemon CPU: not measured (ZeroMQ transport only; needs --daemon-pid or a local daemon listening on the endpoint)")
        }
        lines.append("lost: \(report.lost) (replies \(report.lostReplies), updates \(report.lostUpdates)); "
                     + "duplicated: \(report.duplicated) (replies \(report.duplicatedReplies), updates \(report.duplicatedUpdates)); "
                     + "out of order: \(report.outOfOrder) (replies \(report.outOfOrderReplies), updates \(report.outOfOrderUpdates))")
        for incident in report.incidents.prefix(50) { lines.append("  \(incident)") }
        if report.incidents.count > 50 { lines.append("  ... and \(report.incidents.count - 50) more") }
        if !report.errors.isEmpty {
            lines.append("error replies: \(report.errors.count)")
            lines += report.errors.prefix(20).map { "  \($0)" }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
