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

    /// Wire-level mistakes (decoding: `RequestParser`, tested in-process in SessionTests) reach a client over the
    /// socket as error replies with their codes and messages, and the daemon answers the next request normally.
    /// Session-level mistakes (unknown image, click outside, bad image, ...) are tested on the session core in
    /// SessionTests.
    @Test func badRequestsGetErrorRepliesAndTheDaemonKeepsServing() throws {
        let (daemon, client) = try daemonWithImage()
        defer { daemon.stop() }
        try client.sendRaw([Array("this is { not json".utf8)])
        let notJSON = try client.receive()
        #expect(errorCode(notJSON) == "bad_header")
        #expect(notJSON["request_id"] == .null)
        try client.sendRaw([Array("[1, 2, 3]".utf8)])
        #expect(errorCode(try client.receive()) == "bad_header", "a JSON array is not a header")

        let missing = try client.request("feedback", ["image_id": "img", "clicks": [["x": 1, "y": 1, "class": "object"]]])
        #expect(errorCode(missing) == "bad_request")
        #expect(missing.errorMessage?.contains("annotator") == true, "names the field: \(missing.errorMessage ?? "")")
        let mistyped = try client.request("feedback", ["image_id": "img", "annotator": "a",
                                                       "clicks": [["x": "12", "y": 1, "class": "object"]]])
        #expect(errorCode(mistyped) == "bad_request")
        #expect(mistyped.errorMessage?.contains("clicks[0].x") == true, "\(mistyped.errorMessage ?? "")")

        let unknown = try client.request("segment_everything", [:])
        #expect(errorCode(unknown) == "unknown_kind")
        #expect(unknown["kind"] == "segment_everything")
        #expect(unknown.errorMessage?.contains("open_image") == true, "lists the valid kinds")

        let version = try client.request("health", ["protocol": 2])
        #expect(errorCode(version) == "unsupported_protocol")
        #expect(version["protocol"] == 1, "the reply says which version the daemon speaks")

        #expect(errorCode(try client.request("open_image", ["image_id": "huge"],
                                             payloads: [[UInt8](repeating: 7, count: 150_000),
                                                        [UInt8](repeating: 7, count: 150_000)])) == "message_too_large",
                "frames each within the limit that add up to more (a single frame over it is cut by ZeroMQ)")
        #expect(errorCode(try client.request("open_image", ["image_id": "many"], payloads: [[1], [2], [3], [4]]))
                == "too_many_frames")
        // One session-level error end to end: the core's code travels the same way.
        #expect(errorCode(try client.feedback("img", annotator: "a", clicks: [WireClick(x: 160, y: 0, className: "object")]))
                == "out_of_bounds")
        try expectStillServing(client)
        #expect(try client.getMask("img").checked().version == 0, "refused requests changed nothing")
    }
}
