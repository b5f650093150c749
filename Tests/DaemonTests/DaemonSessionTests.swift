import Foundation
import ProbattnDaemon
import ProbattnImaging
import ProbattnZMQ
import Testing
#if canImport(Glibc)
import Glibc
import ProbattnSegmentation
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation
#endif

/// End-to-end sessions against the real `probattnd` binary over ZeroMQ.
@Suite("Daemon sessions")
struct DaemonSessionTests {
    @Test func openFeedbackUndoGetMaskClose() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()
        let png = try TestImages.png()

        let opened = try client.openImage("img", bytes: png, annotator: "alice").checked()
        #expect(opened["width"]?.intValue == TestImages.width)
        #expect(opened["height"]?.intValue == TestImages.height)
        #expect(opened.version == 0)
        #expect(opened["reopened"] == false)
        #expect(opened["classes"] == ["object", "background"])
        #expect(opened["content_hash"]?.stringValue?.hasPrefix("sha256:") == true)

        let first = try client.feedback("img", annotator: "alice", clicks: [WireClick(x: 80, y: 60, className: "object")]).checked()
        #expect(first.version == 1)
        #expect(first["clicks"]?.intValue == 1)
        let second = try client.feedback("img", annotator: "alice",
                                         clicks: [WireClick(x: 10, y: 10, className: "background")]).checked()
        #expect(second.version == 2)
        let mask = try second.binaryMask()
        #expect(mask.count == TestImages.width * TestImages.height)
        #expect(mask[60 * TestImages.width + 80], "the object click's pixel is in the mask")
        #expect(!mask[10 * TestImages.width + 10], "the background click's pixel is not")
        for key in ["queue", "propagate", "commit", "total"] {
            #expect(second["timings_ms"]?[key]?.doubleValue != nil, "timing \(key)")
        }

        let undone = try client.undo("img", annotator: "alice").checked()
        #expect(undone.version == 3)
        #expect(undone["undone"] == ["id": .int(second["click_ids"]?.arrayValue?.first?.intValue ?? -1), "x": 10,
                                     "y": 10, "class": "background", "annotator": "alice"])
        #expect(undone["clicks"]?.intValue == 1)

        let current = try client.getMask("img", format: .both).checked()
        #expect(current.version == 3)
        #expect(current["annotator"] == "alice")
        #expect(try current.binaryMask() == undone.binaryMask())
        let decoded = try ImageDecoder.decode(try #require(current.frames.first))
        #expect(decoded.width == TestImages.width && decoded.height == TestImages.height)
        // PNG: object = 255, background = 0, the same pixels as the RLE.
        let rle = try current.binaryMask()
        #expect(decoded.pixels.enumerated().allSatisfy { i, v in i % 3 != 0 || (v == 255) == rle[i / 3] })

        let sessions = try client.request("list_sessions").checked()
        let listed = try #require(sessions["sessions"]?.arrayValue?.first)
        #expect(listed["image_id"] == "img")
        #expect(listed["version"] == 3)
        #expect(listed["annotators"] == ["alice"])

        let health = try client.request("health").checked()
        #expect(health["sessions"] == 1)
        #expect(health["stages"]?["propagate"]?["count"]?.intValue ?? 0 >= 4)
        #expect(health["stages"]?["propagate"]?["p99_ms"]?.doubleValue != nil)

        let closed = try client.closeImage("img").checked()
        #expect(closed.version == 3)
        #expect(try client.getMask("img").errorCode == "unknown_image")
        #expect(try client.request("list_sessions").checked()["sessions"] == [])
    }

    @Test func reqSocketClientsGetTheirEnvelopeBack() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let context = try ZMQContext()
        let req = try context.socket(.req)
        try req.setLinger(0)
        try req.connect(daemon.requests)
        try req.send([JSONValue.object(["protocol": 1, "request_id": "req-1", "kind": "health"]).serialized()])
        #expect(try req.waitReadable(timeoutMilliseconds: 20_000))
        let frames = try req.receive()
        let reply = try #require(JSONValue.parse(frames[0]))
        #expect(reply["request_id"] == "req-1")
        #expect(reply["ok"] == true)
    }

    @Test func twoAnnotatorsAndTheirSubscribersSeeEveryUpdateInOrder() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let alice = try daemon.client(), bob = try daemon.client()
        let aliceUpdates = try daemon.subscriber(imageID: "img1")
        let bobUpdates = try daemon.subscriber(imageID: "img1")
        let img10Updates = try daemon.subscriber(imageID: "img10")
        // Subscriptions travel asynchronously: wait until an update of another image reaches the subscriber.
        try waitUntilSubscribed([aliceUpdates, bobUpdates, img10Updates], daemon: daemon)

        let png = try TestImages.png()
        try alice.openImage("img1", bytes: png, annotator: "alice").checked()
        let joined = try bob.openImage("img1", bytes: png, annotator: "bob").checked()
        #expect(joined["reopened"] == true, "a second open of the same bytes joins the session")
        try bob.openImage("img10", bytes: png, annotator: "bob").checked()

        var expected: [(Int, String)] = [(0, "alice")]
        let clicks: [(ProbattnClient, String, WireClick)] = [
            (alice, "alice", WireClick(x: 80, y: 60, className: "object")),
            (bob, "bob", WireClick(x: 5, y: 5, className: "background")),
            (alice, "alice", WireClick(x: 50, y: 40, className: "object")),
            (bob, "bob", WireClick(x: 150, y: 110, className: "background")),
        ]
        for (client, name, click) in clicks {
            let reply = try client.feedback("img1", annotator: name, clicks: [click]).checked()
            expected.append((reply.version ?? -1, name))
            _ = try bob.feedback("img10", annotator: "bob", clicks: [click]).checked()
        }
        let undo = try bob.undo("img1", annotator: "bob").checked()
        #expect(undo["undone"]?["x"] == 150, "bob's undo removes bob's own last click")
        expected.append((undo.version ?? -1, "bob"))
        #expect(expected.map(\.0) == Array(0...5))

        for subscriber in [aliceUpdates, bobUpdates] {
            var seen: [(Int, String)] = []
            while seen.count < expected.count {
                let update = try nextUpdate(subscriber, timeout: 20)
                #expect(update.topic == Array("mask/img1".utf8) + [0])
                #expect(update.header["image_id"] == "img1")
                seen.append((update.header["version"]?.intValue ?? -1, update.header["annotator"]?.stringValue ?? ""))
            }
            #expect(seen.map(\.0) == expected.map(\.0), "every version, in order")
            #expect(seen.map(\.1) == expected.map(\.1), "with the annotator who caused it")
        }
        // img10's subscriber got only img10's updates (no prefix collision with img1).
        var img10Versions: [Int] = []
        while let update = try? nextUpdate(img10Updates, timeout: 1) {
            #expect(update.header["image_id"] == "img10")
            img10Versions.append(update.header["version"]?.intValue ?? -1)
        }
        #expect(img10Versions == Array(0...4))

        // A late joiner reads the current state with get_mask.
        let late = try daemon.client().getMask("img1").checked()
        #expect(late.version == 5)
        #expect(late["clicks"] == 3)
    }

    /// Subscriptions travel asynchronously. Each subscriber also subscribes to a probe image's topic, and the probe
    /// image is opened and closed until every subscriber has received one of its updates: then all their
    /// subscriptions are in place. Probe updates are skipped by `nextUpdate`.
    private func waitUntilSubscribed(_ subscribers: [ProbattnSubscriber], daemon: DaemonProcess) throws {
        for subscriber in subscribers { try subscriber.subscribe(imageID: "probe") }
        let client = try daemon.client()
        let png = try TestImages.png(width: 16, height: 16)
        var waiting = Set(subscribers.indices)
        for _ in 0..<100 where !waiting.isEmpty {
            try client.openImage("probe", bytes: png).checked()
            try client.closeImage("probe").checked()
            for index in waiting where (try? subscribers[index].receive(timeout: 0.2)) != nil {
                waiting.remove(index)
            }
        }
        try #require(waiting.isEmpty, "every subscriber received a probe update")
    }

    /// The next update that is not the probe's.
    private func nextUpdate(_ subscriber: ProbattnSubscriber, timeout: Double) throws
        -> (topic: [UInt8], header: JSONValue, png: [UInt8]?) {
        while true {
            let update = try subscriber.receive(timeout: timeout)
            if update.header["image_id"] != "probe" { return update }
        }
    }

    @Test func crashAfterAcknowledgedClicksLosesNothing() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        let client = try daemon.client()
        let png = try TestImages.png(seed: 3)
        try client.openImage("survivor", bytes: png, annotator: "alice").checked()
        let clicks = [WireClick(x: 80, y: 60, className: "object"), WireClick(x: 8, y: 100, className: "background"),
                      WireClick(x: 45, y: 35, className: "object"), WireClick(x: 150, y: 10, className: "background")]
        for (index, click) in clicks.enumerated() {
            try client.feedback("survivor", annotator: index % 2 == 0 ? "alice" : "bob", clicks: [click]).checked()
        }
        try client.undo("survivor", annotator: "bob").checked()
        let before = try client.getMask("survivor").checked()
        // One more request in flight when the daemon dies: it may or may not be committed, but nothing acknowledged
        // may be lost.
        try client.send("feedback", ProbattnClient.feedbackFields("survivor", annotator: "carol",
                                                                   clicks: [WireClick(x: 100, y: 80, className: "object")]))
        daemon.signal(SIGKILL)
        #expect(try daemon.waitForExit() == -SIGKILL)

        let restarted = try DaemonProcess(folder: daemon.folder)
        try restarted.start()
        defer { restarted.stop() }
        let again = try restarted.client()
        let after = try again.getMask("survivor").checked()
        let inFlightCommitted = (after.version ?? 0) > (before.version ?? 0)
        if inFlightCommitted {
            #expect(after.version == (before.version ?? 0) + 1)
        } else {
            #expect(after.version == before.version)
            #expect(after["mask"] == before["mask"], "the mask after the restart is the one before the crash")
            #expect(after["annotator"] == before["annotator"])
        }
        // Every acknowledged click is in the log, in order, with the undo recorded.
        let log = try SQLiteSessionStore(path: restarted.storePath).clickLog(imageID: "survivor")
        #expect(Array(log.prefix(4)).map { [$0.click.x, $0.click.y] } == clicks.map { [$0.x, $0.y] })
        #expect(Array(log.prefix(4)).map(\.undone) == [false, false, false, true])
        #expect(Array(log.prefix(4)).map(\.click.annotator) == ["alice", "bob", "alice", "bob"])

        // Recomputing from the log gives the stored mask: replay the active clicks on a fresh session of the same image.
        let active = log.filter { !$0.undone }.map { entry in
            WireClick(x: entry.click.x, y: entry.click.y, className: ["object", "background"][entry.click.classIndex])
        }
        try again.openImage("replay", bytes: png).checked()
        let replayed = try again.feedback("replay", annotator: "replayer", clicks: active).checked()
        #expect(replayed["mask"] == after["mask"], "the stored latest mask equals a recomputation from the click log")

        // The resumed session keeps working (its image is prepared again from the stored bytes).
        let next = try again.feedback("survivor", annotator: "alice",
                                      clicks: [WireClick(x: 60, y: 50, className: "object")]).checked()
        #expect(next.version == (after.version ?? 0) + 1)
    }

    @Test func segmentCommandWritesTheMaskPNG() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let imagePath = daemon.folder + "/picture.png"
        let maskPath = daemon.folder + "/mask.png"
        try Data(try TestImages.png()).write(to: URL(fileURLWithPath: imagePath))
        let (status, output) = try DaemonProcess.runProduct("probattn", [
            "segment", imagePath, "--click", "80,60,object", "--click", "5,5,background", "--out", maskPath,
            "--endpoint", daemon.requests, "--results-endpoint", daemon.results])
        #expect(status == 0, "probattn segment failed:\n\(output)")
        #expect(output.contains("version 2"), "prints the mask version:\n\(output)")
        let mask = try ImageDecoder.decodeFile(atPath: maskPath)
        #expect(mask.width == TestImages.width && mask.height == TestImages.height)
        #expect(mask.rgb(x: 80, y: 60).0 == 255)
        #expect(mask.rgb(x: 5, y: 5).0 == 0)
    }
}

/// `store.image_bytes: path`: the store keeps the client's path, and a restart re-reads the file.
@Suite("Daemon path store")
struct DaemonPathStoreTests {
    @Test func pathModeStoresThePathAndResumesFromTheFile() throws {
        let daemon = try DaemonProcess(imageBytes: "path")
        try daemon.start()
        let client = try daemon.client()
        let png = try TestImages.png(seed: 5)
        let imagePath = daemon.folder + "/picture.png"
        try Data(png).write(to: URL(fileURLWithPath: imagePath))
        #expect(try client.openImage("p", bytes: png).errorCode == "bad_request", "source_path is required")
        try client.request("open_image", ["image_id": "p", "source_path": .string(imagePath)], payloads: [png]).checked()
        try client.feedback("p", annotator: "a", clicks: [WireClick(x: 80, y: 60, className: "object")]).checked()
        let before = try client.getMask("p").checked()
        daemon.signal(SIGKILL)
        _ = try daemon.waitForExit()

        let stored = try SQLiteSessionStore(path: daemon.storePath).openSessions()
        #expect(stored.count == 1)
        #expect(stored.first?.session.bytes == nil, "no image bytes in the store")
        #expect(stored.first?.session.sourcePath == imagePath)

        let restarted = try DaemonProcess(imageBytes: "path", folder: daemon.folder)
        try restarted.start()
        defer { restarted.stop() }
        let again = try restarted.client()
        #expect(try again.getMask("p").checked()["mask"] == before["mask"])
        // The next click needs the prepared image: it is rebuilt from the file.
        let next = try again.feedback("p", annotator: "a", clicks: [WireClick(x: 5, y: 5, className: "background")])
            .checked()
        #expect(next.version == 2)
        #expect(restarted.log.contains("Image prepared again"))
    }
}
