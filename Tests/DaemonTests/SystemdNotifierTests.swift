#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import ProbattnDaemon
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation

/// A datagram socket bound like systemd's notification socket, in a fresh temporary folder or in the abstract
/// namespace; receives what `SystemdNotifier` sends.
private final class NotifySocketListener {
    let fd: Int32
    /// The value to put in `$NOTIFY_SOCKET`.
    let address: String
    private let folder: URL?

    init(abstract: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var name: [UInt8]
        if abstract {
            address = "@probattn-test-\(UUID().uuidString)"
            folder = nil
            name = Array(address.utf8)
            name[0] = 0
        } else {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-notify-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            folder = dir
            address = dir.appendingPathComponent("notify").path
            name = Array(address.utf8) + [0]
        }
        var sockaddress = sockaddr_un()
        sockaddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sockaddress.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + name.count)
        let status = withUnsafePointer(to: &sockaddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard status == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text, nil after a 2 s timeout.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    deinit {
        close(fd)
        if let folder { try? FileManager.default.removeItem(at: folder) }
    }
}

@Suite struct SystemdNotifierTests {
    @Test func messagesArriveInOrderOnAFilesystemSocket() throws {
        let listener = try NotifySocketListener()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.address])
        #expect(notifier.isEnabled)
        #expect(notifier.ready())
        #expect(notifier.status("serving\n2 sessions"))
        #expect(notifier.watchdog())
        #expect(notifier.stopping())
        #expect(listener.receive() == "READY=1")
        #expect(listener.receive() == "STATUS=serving 2 sessions")
        #expect(listener.receive() == "WATCHDOG=1")
        #expect(listener.receive() == "STOPPING=1")
    }

    @Test func reloadingCarriesTheMonotonicClock() throws {
        let listener = try NotifySocketListener()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.address])
        let before = SystemdNotifier.monotonicMicroseconds()
        #expect(notifier.reloading())
        let after = SystemdNotifier.monotonicMicroseconds()
        let message = try #require(listener.receive())
        let lines = message.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first == "RELOADING=1")
        let stamp = try #require(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        #expect(stamp >= before && stamp <= after)
    }

    @Test func aLeadingAtSelectsTheAbstractNamespace() throws {
        let listener = try NotifySocketListener(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.address])
        #expect(notifier.send("READY=1\nSTATUS=up"))
        #expect(listener.receive() == "READY=1\nSTATUS=up")
    }

    @Test func withoutTheVariableNothingIsSent() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(notifier.watchdogInterval == nil)
    }

    @Test func aMissingSocketIsReportedNotFatal() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify"])
        #expect(!notifier.ready())
        let tooLong = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
        #expect(!tooLong.ready())
    }

    @Test func theWatchdogIntervalIsHalfTheTimeoutForThisProcessOnly() {
        let ours = SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"])
        #expect(ours.watchdogTimeout == .seconds(30))
        #expect(ours.watchdogInterval == .seconds(15))
        let noPid = SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000"])
        #expect(noPid.watchdogInterval == .seconds(1))
        let other = SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid() + 1)"])
        #expect(other.watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogInterval == nil)
    }
}
