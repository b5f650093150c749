#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes systemd service notifications (`sd_notify`) without libsystemd: each message is one `AF_UNIX`/`SOCK_DGRAM`
/// datagram of newline-separated `KEY=VALUE` lines sent to the socket named by `$NOTIFY_SOCKET` (a leading `@` names
/// a socket in the abstract namespace). Without the variable (not started by systemd with `Type=notify`) every call
/// is a no-op, so the daemon calls it unconditionally.
///
/// When the daemon calls what: `ready()` once sockets are bound and the pipeline is built; `reloading()` when a
/// SIGHUP reload starts, then `ready()` when it is done (applied or rejected); `stopping()` when a graceful stop
/// begins; `watchdog()` every `watchdogInterval` from the loop that does real work, so that a wedged loop trips
/// systemd's watchdog; `status(_:)` for the one-line text `systemctl status` shows.
public struct SystemdNotifier: Sendable {
    /// The notification socket from `$NOTIFY_SOCKET`, or nil when notifications are disabled.
    public let socketPath: String?
    /// The watchdog timeout systemd enforces (`$WATCHDOG_USEC`), when it applies to this process
    /// (`$WATCHDOG_PID` unset or equal to our PID).
    public let watchdogTimeout: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"] ?? ""
        socketPath = path.isEmpty ? nil : path
        watchdogTimeout = Self.watchdogTimeout(environment: environment, pid: getpid())
    }

    /// True when `$NOTIFY_SOCKET` is set.
    public var isEnabled: Bool { socketPath != nil }

    /// How often to send `WATCHDOG=1`: half the timeout, as systemd recommends; nil when no watchdog is armed.
    public var watchdogInterval: Duration? { watchdogTimeout.map { $0 / 2 } }

    /// Sends one notification: `state` is one or more `KEY=VALUE` lines separated by `\n`. Returns false when
    /// notifications are disabled or the datagram could not be sent (the daemon keeps running either way).
    @discardableResult
    public func send(_ state: String) -> Bool {
        guard let socketPath else { return false }
        return Self.sendDatagram(Array(state.utf8), to: socketPath)
    }

    /// `READY=1`: start-up (or a reload) finished.
    @discardableResult public func ready() -> Bool { send("READY=1") }

    /// `RELOADING=1` with `MONOTONIC_USEC` (the CLOCK_MONOTONIC time in µs, which systemd ≥ 253 requires).
    @discardableResult public func reloading() -> Bool {
        send("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())")
    }

    /// `STOPPING=1`: a graceful shutdown began.
    @discardableResult public func stopping() -> Bool { send("STOPPING=1") }

    /// `WATCHDOG=1`: the keep-alive ping.
    @discardableResult public func watchdog() -> Bool { send("WATCHDOG=1") }

    /// `STATUS=<text>`: free text for `systemctl status` (newlines become spaces).
    @discardableResult public func status(_ text: String) -> Bool {
        send("STATUS=" + text.split(whereSeparator: \.isNewline).joined(separator: " "))
    }

    /// CLOCK_MONOTONIC in microseconds, the clock systemd uses for `MONOTONIC_USEC`.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    static func watchdogTimeout(environment: [String: String], pid: pid_t) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0,
              usec <= UInt64(Int64.max) else { return nil }
        if let pidText = environment["WATCHDOG_PID"], !pidText.isEmpty {
            guard let target = pid_t(pidText), target == pid else { return nil }
        }
        return .microseconds(Int64(usec))
    }

    private static func sendDatagram(_ bytes: [UInt8], to path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A filesystem path needs room for its terminating NUL; an abstract name does not.
        guard !pathBytes.isEmpty, pathBytes.count + (abstract ? 0 : 1) <= capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        let length = socklen_t(pathOffset + pathBytes.count + (abstract ? 0 : 1))

        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let sent = bytes.withUnsafeBytes { payload in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(fd, payload.baseAddress, payload.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == bytes.count
    }
}
