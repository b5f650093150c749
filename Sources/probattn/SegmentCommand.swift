import ArgumentParser
import Foundation
import ProbattnClient
import ProbattnSession
import ProbattnJSON
import ProbattnKeys
import ProbattnZMQ

/// `probattn segment IMAGE --click X,Y,CLASS …`: segments an image through a running daemon. Opens the image, sends
/// each click as one feedback (like an annotator would), writes the final mask as a PNG of the image's size (first
/// class = 255) and prints every mask version with its timings.
struct SegmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segment",
        abstract: "Segment an image with clicks through a running probattnd.")

    @Argument(help: "The image file (PNG, JPEG or BMP).")
    var image: String

    @Option(name: .customLong("click"), parsing: .singleValue,
            help: "A click X,Y,CLASS in pixels (x right, y down); CLASS is a class name or its index. Repeatable.")
    var clicks: [String] = []

    @Option(name: .long, help: "Where to write the mask PNG.")
    var out: String = "mask.png"

    @Option(name: .long, help: "The daemon's request endpoint.")
    var endpoint: String = "tcp://127.0.0.1:5555"

    @Option(name: .customLong("results-endpoint"),
            help: "The daemon's results endpoint; when given, each update's publish delay is measured too.")
    var resultsEndpoint: String?

    @Option(name: .long, help: "Comma-separated class names of the session.")
    var classes: String = "object,background"

    @Option(name: .long, help: "The image id to use on the daemon (default: derived from the file name).")
    var imageID: String?

    @Option(name: .long, help: "The annotator name sent with the clicks (default: the client key's, else probattn-segment).")
    var annotator: String?

    @Flag(name: .customLong("keep-open"), help: "Leave the image open on the daemon instead of closing it.")
    var keepOpen = false

    @Option(name: .long, help: "Seconds to wait for each reply.")
    var timeout: Double = 30

    @Option(name: .customLong("server-key"),
            help: ArgumentHelp("A secured daemon's public key file (its NAME.key); needs --client-key.", valueName: "file"))
    var serverKey: String?

    @Option(name: .customLong("client-key"),
            help: ArgumentHelp("The client's key pair (NAME.key_secret) to connect with CURVE.", valueName: "file"))
    var clientKey: String?

    func parsedClicks(classNames: [String]) throws -> [WireClick] {
        guard !clicks.isEmpty else { throw ValidationError("give at least one --click X,Y,CLASS") }
        return try clicks.map { text in
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard parts.count == 3, let x = Int(parts[0]), let y = Int(parts[1]), !parts[2].isEmpty else {
                throw ValidationError("--click '\(text)' is not X,Y,CLASS (for example 120,80,object)")
            }
            var name = parts[2]
            if let index = Int(name) {
                guard classNames.indices.contains(index) else {
                    throw ValidationError("--click '\(text)': class index \(index) is not in 0..<\(classNames.count)")
                }
                name = classNames[index]
            }
            return WireClick(x: x, y: y, className: name)
        }
    }

    func run() throws {
        guard (serverKey == nil) == (clientKey == nil) else {
            throw ValidationError("--server-key and --client-key go together")
        }
        let keys: (keys: ZMQCurveClientKeys, annotator: String?)?
        do { keys = try serverKey.flatMap { server in try clientKey.map { try ClientKeyFiles.load(serverKey: server, clientKey: $0) } } } catch {
            throw ValidationError("\(error)")
        }
        let annotator = self.annotator ?? keys?.annotator ?? "probattn-segment"
        let classNames = classes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let wireClicks = try parsedClicks(classNames: classNames)
        let bytes: [UInt8]
        do { bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: image))) } catch {
            // A file that is not there is not a usage mistake: one line naming it, no usage text.
            let why = FileManager.default.fileExists(atPath: image) ? "cannot read it" : "no such file"
            FileHandle.standardError.write(Data("probattn segment: \(image): \(why)\n".utf8))
            throw ExitCode.failure
        }
        let id = imageID ?? "segment-\((image as NSString).lastPathComponent)-\(UInt32.random(in: 0...UInt32.max))"
        let client = try ProbattnClient(endpoint: endpoint, timeout: timeout, curve: keys?.keys)
        var subscriber: ProbattnSubscriber?
        if let resultsEndpoint {
            let s = try ProbattnSubscriber(endpoint: resultsEndpoint, curve: keys?.keys)
            try s.subscribe(imageID: id)
            Thread.sleep(forTimeInterval: 0.3)  // let the subscription reach the daemon before the first update
            subscriber = s
        }
        do {
            let opened = try client.openImage(id, bytes: bytes, classes: classNames, annotator: annotator).checked()
            print("opened \(id): \(opened["width"]?.intValue ?? 0)x\(opened["height"]?.intValue ?? 0), "
                  + "version \(opened["version"]?.intValue ?? 0), timings_ms \(opened["timings_ms"] ?? .null)")
            _ = try? subscriber?.receive(timeout: 2)  // version 0
            for click in wireClicks {
                let sent = Date()
                let reply = try client.feedback(id, annotator: annotator, clicks: [click]).checked()
                var line = "click (\(click.x), \(click.y), \(click.className)) -> version "
                    + "\(reply["version"]?.intValue ?? -1), round trip \(String(format: "%.1f", Date().timeIntervalSince(sent) * 1000)) ms, "
                    + "timings_ms \(reply["timings_ms"] ?? .null)"
                if let subscriber {
                    while let update = try? subscriber.receive(timeout: 5) {
                        if update.header["version"] == reply["version"] {
                            line += ", published after \(String(format: "%.1f", Date().timeIntervalSince(sent) * 1000)) ms"
                            break
                        }
                    }
                }
                print(line)
            }
            let mask = try client.getMask(id, format: .png).checked()
            guard let png = mask.frames.first else { throw ProbattnClientError.malformedReply("get_mask without PNG") }
            try Data(png).write(to: URL(fileURLWithPath: out))
            print("mask version \(mask["version"]?.intValue ?? -1) written to \(out)")
            if !keepOpen { _ = try client.closeImage(id) }
        } catch let error as ProbattnClientError {
            if !keepOpen { _ = try? client.closeImage(id) }
            FileHandle.standardError.write(Data("probattn segment: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
