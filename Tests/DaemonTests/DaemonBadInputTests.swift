import Foundation
import ProbattnDaemon
import ProbattnImaging
import Testing
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation

/// Bad input, one case each: the daemon answers with the documented error code and keeps serving (the next request
/// gets a normal answer).
@Suite("Daemon bad input")
struct DaemonBadInputTests {
    /// Starts a daemon with small limits and one open 160×120 image called "img".
    private func daemonWithImage() throws -> (DaemonProcess, ProbattnClient) {
        let daemon = try DaemonProcess(extraYAML: """
            limits:
              max_image_pixels: 20000
              max_message_bytes: 200000
              max_frames: 3
            """)
        try daemon.start()
        let client = try daemon.client()
        try client.openImage("img", bytes: try TestImages.png()).checked()
        return (daemon, client)
    }

    /// The reply's error code, after checking the reply echoes the request id.
    private func errorCode(_ reply: ProbattnReply) -> String? {
        #expect(reply.ok == false)
        #expect(reply.errorMessage?.isEmpty == false)
        return reply.errorCode
    }

    private func expectStillServing(_ client: ProbattnClient) throws {
        let reply = try client.getMask("img")
        #expect(reply.ok, "the daemon answers the next request normally: \(reply.header)")
    }

    @Test func nonJSONHeader() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        try client.sendRaw([Array("this is { not json".utf8)])
        let reply = try client.receive()
        #expect(errorCode(reply) == "bad_header")
        #expect(reply["request_id"] == .null)
        try client.sendRaw([Array("[1, 2, 3]".utf8)])
        #expect(errorCode(try client.receive()) == "bad_header", "a JSON array is not a header")
        try expectStillServing(client)
    }

    @Test func missingField() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.request("feedback", ["image_id": "img", "clicks": [["x": 1, "y": 1, "class": "object"]]])
        #expect(errorCode(reply) == "bad_request")
        #expect(reply.errorMessage?.contains("annotator") == true, "names the field: \(reply.errorMessage ?? "")")
        #expect(errorCode(try client.request("get_mask", [:])) == "bad_request")
        try expectStillServing(client)
    }

    @Test func mistypedField() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.request("feedback", ["image_id": "img", "annotator": "a",
                                                    "clicks": [["x": "12", "y": 1, "class": "object"]]])
        #expect(errorCode(reply) == "bad_request")
        #expect(reply.errorMessage?.contains("clicks[0].x") == true, "\(reply.errorMessage ?? "")")
        #expect(errorCode(try client.request("feedback", ["image_id": "img", "annotator": "a",
                                                          "clicks": [["x": 1.5, "y": 1, "class": "object"]]]))
                == "bad_request")
        #expect(errorCode(try client.request("get_mask", ["image_id": 7])) == "bad_request")
        #expect(errorCode(try client.request("feedback", ["image_id": "img", "annotator": "a", "clicks": []]))
                == "bad_request")
        try expectStillServing(client)
    }

    @Test func unknownKind() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.request("segment_everything", [:])
        #expect(errorCode(reply) == "unknown_kind")
        #expect(reply["kind"] == "segment_everything")
        #expect(reply.errorMessage?.contains("open_image") == true, "lists the valid kinds")
        try expectStillServing(client)
    }

    @Test func unknownImage() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        #expect(errorCode(try client.feedback("nope", annotator: "a", clicks: [WireClick(x: 1, y: 1, className: "object")]))
                == "unknown_image")
        #expect(errorCode(try client.undo("nope", annotator: "a")) == "unknown_image")
        #expect(errorCode(try client.closeImage("nope")) == "unknown_image")
        try expectStillServing(client)
    }

    @Test func clickOutsideTheImage() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        for (x, y) in [(160, 10), (10, 120), (-1, 5), (5, -1)] {
            let reply = try client.feedback("img", annotator: "a", clicks: [WireClick(x: x, y: y, className: "object")])
            #expect(errorCode(reply) == "out_of_bounds", "(\(x), \(y))")
        }
        // A refused request changes nothing.
        #expect(try client.getMask("img").checked().version == 0)
        try expectStillServing(client)
    }

    @Test func classNotInTheSession() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.feedback("img", annotator: "a", clicks: [WireClick(x: 5, y: 5, className: "cat")])
        #expect(errorCode(reply) == "unknown_class")
        #expect(reply.errorMessage?.contains("background") == true, "lists the session's classes")
        #expect(try client.getMask("img").checked().version == 0)
        try expectStillServing(client)
    }

    @Test func undecodableOrTruncatedImage() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        #expect(errorCode(try client.openImage("junk", bytes: Array("definitely not an image".utf8))) == "bad_image")
        let png = try TestImages.png()
        #expect(errorCode(try client.openImage("cut", bytes: Array(png.prefix(png.count / 2)))) == "bad_image")
        let jpeg = try ImageEncoding.jpeg(TestImages.rgb())
        #expect(errorCode(try client.openImage("cutjpeg", bytes: Array(jpeg.prefix(200)))) == "bad_image")
        #expect(errorCode(try client.getMask("cut")) == "unknown_image", "a refused open leaves no session")
        try expectStillServing(client)
    }

    @Test func imageOverTheSizeLimit() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let big = try TestImages.png(width: 200, height: 120)  // 24 000 pixels > 20 000
        #expect(errorCode(try client.openImage("big", bytes: big)) == "image_too_large")
        try expectStillServing(client)
    }

    @Test func messageOverTheSizeLimit() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        // Frames each within the limit (200 000) that add up to more; a single frame over it is cut by ZeroMQ.
        let reply = try client.request("open_image", ["image_id": "huge"],
                                       payloads: [[UInt8](repeating: 7, count: 150_000),
                                                  [UInt8](repeating: 7, count: 150_000)])
        #expect(errorCode(reply) == "message_too_large")
        try expectStillServing(client)
    }

    @Test func tooManyFrames() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.request("open_image", ["image_id": "many"], payloads: [[1], [2], [3], [4]])
        #expect(errorCode(reply) == "too_many_frames")
        try expectStillServing(client)
    }

    @Test func unsupportedProtocolVersion() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        let reply = try client.request("health", ["protocol": 2])
        #expect(errorCode(reply) == "unsupported_protocol")
        #expect(reply["protocol"] == 1, "the reply says which version the daemon speaks")
        try expectStillServing(client)
    }

    @Test func fullQueuesAnswerBusy() throws {
        let daemon = try DaemonProcess(extraYAML: """
            limits:
              queue_depth_per_image: 1
            """)
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()
        try client.openImage("img", bytes: try TestImages.png()).checked()
        let ids = try (0..<40).map { i in
            try client.send("feedback", ProbattnClient.feedbackFields(
                "img", annotator: "a", clicks: [WireClick(x: 40 + i, y: 60, className: "object")]))
        }
        let replies = try collectReplies(client, ids: ids)
        let codes = replies.values.map { $0.ok ? "ok" : ($0.errorCode ?? "?") }
        #expect(codes.contains("busy"), "a full per-image queue refuses with busy: \(codes)")
        #expect(codes.allSatisfy { $0 == "ok" || $0 == "busy" })
        // Accepted feedback was applied in arrival order: versions increase with the request order.
        let accepted = ids.compactMap { replies[$0] }.filter(\.ok).compactMap(\.version)
        #expect(accepted == Array(1...accepted.count))
        try expectStillServing(client)
    }
}
