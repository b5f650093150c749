import Foundation
import ProbattnDaemon
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

/// Signals, systemd notifications and the documented Python example, against the real binary.
@Suite("Daemon lifecycle")
struct DaemonLifecycleTests {
    @Test func sigtermAnswersEveryRequestInFlightAndExitsZero() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        let client = try daemon.client()
        let png = try TestImages.png()
        for i in 0..<3 { try client.openImage("img\(i)", bytes: png).checked() }
        var ids: [String] = []
        for round in 0..<8 {
            for i in 0..<3 {
                ids.append(try client.send("feedback", ProbattnClient.feedbackFields(
                    "img\(i)", annotator: "a", clicks: [WireClick(x: 20 + round * 10, y: 60, className: "object")])))
            }
        }
        // A health request answered means the daemon has read every request before it (one DEALER's messages arrive
        // in order, health is answered at once): the feedback jobs are now queued or running when SIGTERM comes.
        let probe = try client.send("health")
        var replies: [String: ProbattnReply] = [:]
        while true {
            let reply = try client.receive(timeout: 30)
            if reply.requestID == probe { break }
            if let id = reply.requestID { replies[id] = reply }
        }
        let inFlight = ids.count - replies.count
        daemon.signal(SIGTERM)
        // A new request while the daemon drains is refused.
        #expect(daemon.waitForLog("Stopping"), "the daemon begins draining")
        let late = try daemon.client()
        let lateReply = try late.request("health", timeout: 10)
        #expect(lateReply.errorCode == "shutting_down")
        for (id, reply) in try collectReplies(client, ids: ids.filter { replies[$0] == nil }) {
            replies[id] = reply
        }
        #expect(inFlight > 0, "some requests were still in flight at SIGTERM")
        #expect(replies.count == ids.count, "every request got exactly one reply")
        let codes = Set(replies.values.map { $0.ok ? "ok" : ($0.errorCode ?? "?") })
        #expect(codes == ["ok"], "requests accepted before SIGTERM are completed, not refused: \(codes)")
        #expect(try daemon.waitForExit() == 0)
        #expect(daemon.log.contains("Stopped"))
    }

    @Test func sighupWithABrokenConfigKeepsTheOldOne() throws {
        let daemon = try DaemonProcess(extraYAML: """
            limits:
              max_frames: 3
            """)
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()

        try "limits:\n  max_frames: 1\n  no_such_limit: 1\n".write(toFile: daemon.configPath, atomically: true,
                                                                     encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("Reload failed"), "the error is logged:\n\(daemon.log)")
        #expect(daemon.log.contains("no_such_limit"), "the log says why")
        // Still the old limits (max_frames 3, not the broken file's 1): a 2-frame open is accepted, 4 frames are not.
        let png = try TestImages.png()
        #expect(try client.request("open_image", ["image_id": "a"], payloads: [png]).ok)
        #expect(try client.request("open_image", ["image_id": "b"], payloads: [png, [1], [2]]).errorCode
                == "too_many_frames")

        // A valid reload applies live: max_frames 1 now refuses every open_image.
        try daemon.writeConfig(extraYAML: "limits:\n  max_frames: 1\n")
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("Configuration reloaded"))
        #expect(try client.request("open_image", ["image_id": "c"], payloads: [png]).errorCode == "too_many_frames")
        #expect(try client.request("health").ok)
    }

    @Test func notifyMessagesArriveInOrder() throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        let socketPath = folder + "/notify.sock"
        let listener = try DatagramListener(path: socketPath)
        let daemon = try DaemonProcess(environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "400000"],
                                       folder: folder)
        try daemon.start()
        #expect(try listener.waitFor("READY=1", timeout: 20))
        daemon.signal(SIGHUP)
        #expect(try listener.waitFor("READY=1", timeout: 20), "READY=1 again after the reload")
        #expect(try listener.waitFor("WATCHDOG=1", timeout: 20), "watchdog pings go on after the reload")
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
        #expect(try listener.waitFor("STOPPING=1", timeout: 5))

        let messages = listener.received
        let lifecycle = messages.filter { !$0.hasPrefix("WATCHDOG=") && !$0.hasPrefix("STATUS=") }
        #expect(lifecycle.count == 4, "\(messages)")
        if lifecycle.count == 4 {
            #expect(lifecycle[0] == "READY=1")
            let reloading = lifecycle[1].split(separator: "\n").map(String.init)
            #expect(reloading.first == "RELOADING=1")
            #expect(reloading.count == 2 && reloading[1].hasPrefix("MONOTONIC_USEC=")
                    && UInt64(reloading[1].dropFirst("MONOTONIC_USEC=".count)) != nil)
            #expect(lifecycle[2] == "READY=1")
            #expect(lifecycle[3] == "STOPPING=1")
        }
        let firstReady = messages.firstIndex(of: "READY=1") ?? Int.max
        let watchdogs = messages.indices.filter { messages[$0] == "WATCHDOG=1" }
        #expect(!watchdogs.isEmpty, "WATCHDOG=1 is sent every half of WATCHDOG_USEC")
        #expect(watchdogs.allSatisfy { $0 > firstReady }, "and only once serving")
    }

    @Test func pythonExampleRunsAsWritten() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let script = root.appendingPathComponent("docs/examples/client.py").path
        // The protocol document embeds the same program.
        let doc = try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        let code = try String(contentsOfFile: script, encoding: .utf8)
        #expect(doc.contains(code.trimmingCharacters(in: .whitespacesAndNewlines)),
                "docs/PROTOCOL.md embeds docs/examples/client.py verbatim")

        let (status, output) = try DaemonProcess.run("/usr/bin/env", ["python3", script, daemon.requests,
                                                                     daemon.results])
        // No skipping: a missing python3 or pyzmq is a failure (make test installs pyzmq).
        #expect(status == 0, "the example failed:\n\(output)")
        #expect(output.contains("PASS"))
    }
}

/// An AF_UNIX datagram socket standing in for systemd's notification socket.
final class DatagramListener {
    private let fd: Int32
    private(set) var received: [String] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw HarnessError("path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw HarnessError("bind(\(path)) failed: errno \(errno)") }
    }

    deinit { close(fd) }

    /// Reads datagrams until one equal to `message` arrives after the ones already seen; false on timeout.
    func waitFor(_ message: String, timeout: Double) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let start = received.count
        while Date() < deadline {
            if received[start...].contains(message) { return true }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received.append(String(decoding: buffer[0..<n], as: UTF8.self)) }
        }
        return received[start...].contains(message)
    }
}
