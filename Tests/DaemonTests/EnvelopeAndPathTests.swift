import Foundation
import ProbattnClient
import ProbattnJSON
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnZMQ
import Testing
#if canImport(Glibc)
import Glibc
import Synchronization
#endif

/// Envelopes: clients whose messages carry more than a routing id — a REQ socket with `ZMQ_REQ_CORRELATE`, a DEALER
/// behind a `zmq_proxy` ROUTER/DEALER pair — get their replies with the whole envelope back.
@Suite("Daemon envelopes")
struct DaemonEnvelopeTests {
    private func header(_ id: String, kind: String = "health") -> [UInt8] {
        JSONValue.object(["protocol": 1, "request_id": .string(id), "kind": .string(kind)]).serialized()
    }

    private func replyHeader(_ frame: [UInt8]?) -> JSONValue? { frame.flatMap { JSONValue.parse($0) } }

    @Test func aCorrelatingReqClientGetsItsReplies() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let context = try ZMQContext()
        let socket = try context.socket(.req)
        try socket.setLinger(0)
        try socket.setRequestCorrelate(true)
        try socket.setRequestRelaxed(true)
        try socket.connect(daemon.requests)
        for index in 0..<3 {
            // REQ puts [request id][""] in front of the header; the daemon must send both back.
            try socket.send([header("corr-\(index)")])
            #expect(try socket.waitReadable(timeoutMilliseconds: 30_000), "reply \(index)")
            let frames = try socket.receive()
            let reply = replyHeader(frames.first)
            #expect(reply?["request_id"] == .string("corr-\(index)"), "\(frames.map(\.count))")
            #expect(reply?["ok"] == true)
        }
        socket.close()
    }

    @Test func aDealerBehindAProxyGetsItsReplies() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let context = try ZMQContext()
        let frontendEndpoint = "ipc://\(daemon.folder)/proxy.sock"
        let control = try context.socket(.pair)
        try control.bind("inproc://proxy-control")
        let started = DispatchSemaphore(value: 0)
        let stopped = DispatchSemaphore(value: 0)
        let failure = LockedText()
        let proxyThread = Thread {
            do {
                let frontend = try context.socket(.router)
                let backend = try context.socket(.dealer)
                let proxyControl = try context.socket(.pair)
                for s in [frontend, backend, proxyControl] { try s.setLinger(0) }
                try frontend.bind(frontendEndpoint)
                try backend.connect(daemon.requests)
                try proxyControl.connect("inproc://proxy-control")
                started.signal()
                try ZMQProxy.run(frontend: frontend, backend: backend, control: proxyControl)
                for s in [frontend, backend, proxyControl] { s.close() }
            } catch {
                failure.set("\(error)")
                started.signal()
            }
            stopped.signal()
        }
        proxyThread.start()
        #expect(started.wait(timeout: .now() + 10) == .success)
        defer {
            try? control.send([Array("TERMINATE".utf8)])
            _ = stopped.wait(timeout: .now() + 10)
            control.close()
        }
        #expect(failure.get() == nil, "\(failure.get() ?? "")")

        let client = try context.socket(.dealer)
        try client.setLinger(0)
        try client.connect(frontendEndpoint)
        // Behind a proxy a DEALER sends the empty delimiter itself, so the daemon can tell the envelope (the proxy's
        // routing id for this client) from the header.
        let ids = (0..<4).map { "proxied-\($0)" }
        for id in ids { try client.send([[], header(id)]) }
        var seen: Set<String> = []
        while seen.count < ids.count {
            guard try client.waitReadable(timeoutMilliseconds: 30_000) else {
                Issue.record("no further reply within 30 s; replies so far: \(seen)")
                break
            }
            let frames = try client.receive()
            #expect(frames.first == [], "the delimiter comes back: \(frames.map(\.count))")
            let reply = replyHeader(frames.dropFirst().first)
            #expect(reply?["ok"] == true, "\(String(describing: reply))")
            if let id = reply?["request_id"]?.stringValue { seen.insert(id) }
        }
        #expect(seen == Set(ids))
        client.close()
    }

    /// The envelope rule itself, on the parser's frames.
    @Test func theEnvelopeEndsAtTheFirstEmptyFrameWithinEight() {
        let h = header("x")
        typealias P = RequestParser
        #expect(P.splitEnvelope([h]).envelope.isEmpty)
        #expect(P.splitEnvelope([[], h]).envelope == [[]])
        #expect(P.splitEnvelope([[1, 2, 3, 4], [], h]) == ([[1, 2, 3, 4], []], [h]))
        // A JSON header followed by an empty payload frame has no envelope.
        #expect(P.splitEnvelope([h, []]).envelope.isEmpty)
        // No empty frame in the first eight: no envelope, frame 0 is read as the header (and refused).
        let ids = (0..<8).map { [UInt8($0 + 1)] }
        #expect(P.splitEnvelope(ids + [[], h]).envelope.isEmpty)
        #expect(P.splitEnvelope(Array(ids.prefix(7)) + [[], h]).envelope.count == 8)
        // Envelope frames do not count toward max_frames.
        let parser = P(maxMessageBytes: 1 << 20, maxFrames: 1)
        let (_, request) = P.splitEnvelope([[9, 9, 9], [7], [], h])
        #expect((try? parser.parse(request).get()) != nil)
    }
}


/// A string shared with a thread.
final class LockedText: Sendable {
    private let text = Mutex<String?>(nil)
    func set(_ value: String) { text.withLock { $0 = value } }
    func get() -> String? { text.withLock { $0 } }
}

/// `store.image_bytes: path` with `store.image_root`: a `source_path` must resolve inside the root.
@Suite("Daemon path store roots")
struct DaemonImageRootTests {
    @Test func pathsOutsideTheImageRootAreBadRequests() throws {
        let daemon = try DaemonProcess(imageBytes: "path")
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()
        let png = try TestImages.png(seed: 3)
        let inside = daemon.folder + "/inside.png"
        try Data(png).write(to: URL(fileURLWithPath: inside))
        let outsideFile = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: outsideFile) }
        try Data(png).write(to: URL(fileURLWithPath: outsideFile + "/outside.png"))
        try FileManager.default.createSymbolicLink(atPath: daemon.folder + "/link-out.png",
                                                   withDestinationPath: outsideFile + "/outside.png")
        try FileManager.default.createSymbolicLink(atPath: daemon.folder + "/passwd", withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: daemon.folder + "/link-in.png", withDestinationPath: inside)
        let refused = ["../../etc/passwd", "/etc/passwd", "/etc/shadow", daemon.folder + "/../../etc/passwd",
                       "link-out.png", daemon.folder + "/link-out.png", "passwd", "missing.png", "/nonexistent/x.png",
                       outsideFile + "/outside.png", ""]
        for (index, path) in refused.enumerated() {
            let reply = try client.request("open_image", ["image_id": .string("bad\(index)"), "source_path": .string(path)],
                                           payloads: [png])
            #expect(reply.errorCode == "bad_request", "\(path): \(reply.header)")
            #expect(reply.errorMessage?.contains("store.image_root") == true, "\(path): \(reply.errorMessage ?? "")")
        }
        // Inside the root, relative or absolute, through a symlink that stays inside: accepted, stored resolved.
        try client.request("open_image", ["image_id": "rel", "source_path": "inside.png"], payloads: [png]).checked()
        try client.request("open_image", ["image_id": "abs", "source_path": .string(inside)], payloads: [png]).checked()
        try client.request("open_image", ["image_id": "lnk", "source_path": "link-in.png"], payloads: [png]).checked()
        daemon.stop()
        let stored = try SQLiteSessionStore(path: daemon.storePath).openSessions().map(\.session)
        #expect(Set(stored.map(\.imageID)) == ["rel", "abs", "lnk"])
        let root = ImagePaths.realPath(daemon.folder) ?? daemon.folder
        #expect(stored.allSatisfy { $0.sourcePath == root + "/inside.png" }, "\(stored.map(\.sourcePath))")
    }

    @Test func validateRefusesAPathStoreWithoutARoot() throws {
        let run = try ChildRun.validate("store:\n  image_bytes: path\n")
        #expect(run.status == 1)
        #expect(run.errorLines.count == 1 && run.stderr.contains("store.image_root: required"), "\(run.stderr)")
        let relative = try ChildRun.validate("store:\n  image_bytes: path\n  image_root: images\n")
        #expect(relative.status == 1 && relative.stderr.contains("must be an absolute path"), "\(relative.stderr)")
    }
}

