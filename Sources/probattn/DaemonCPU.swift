import Foundation

/// The CPU time of the daemon a benchmark talks to, read from Linux's `/proc`: `utime + stime` of `/proc/PID/stat`
/// (fields 14 and 15, in clock ticks of `sysconf(_SC_CLK_TCK)`), all the process's threads together.
///
/// The daemon is the process given with `--daemon-pid`, or the local process that listens on the request endpoint:
/// for `tcp://HOST:PORT` (or the HTTP gateway's `http://HOST:PORT`) the socket in state LISTEN on that port in
/// `/proc/net/tcp` and `/proc/net/tcp6`, for
/// `ipc://PATH` the Unix socket bound to that path in `/proc/net/unix`; the process is the one whose `/proc/PID/fd`
/// holds that socket's inode. Both need a daemon on this machine and permission to read its `/proc` entries.
enum DaemonCPU {
    /// User plus system CPU seconds of process `pid`, nil when `/proc/PID/stat` cannot be read.
    static func seconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // After "(comm)" come the fields from 3 (state) on; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (user + system) / (ticks > 0 ? ticks : 100)
    }

    /// The pid of the local process listening on `endpoint` (`tcp://HOST:PORT`, `http://HOST:PORT` or
    /// `ipc://PATH`), nil when none is found.
    static func pid(listeningOn endpoint: String) -> Int32? {
        guard let inode = socketInode(endpoint) else { return nil }
        let target = "socket:[\(inode)]"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for entry in entries {
            guard let pid = Int32(entry), pid != getpid() else { continue }
            let folder = "/proc/\(entry)/fd"
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: folder) else { continue }
            for fd in fds where (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(folder)/\(fd)")) == target {
                return pid
            }
        }
        return nil
    }

    /// The inode of the listening socket of `endpoint`.
    private static func socketInode(_ endpoint: String) -> String? {
        if endpoint.hasPrefix("ipc://") {
            let path = String(endpoint.dropFirst("ipc://".count))
            guard let table = try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8) else { return nil }
            // Num RefCount Protocol Flags Type St Inode Path
            for line in table.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                if columns.count >= 8, columns[7] == path { return String(columns[6]) }
            }
            return nil
        }
        guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("http://"), let colon = endpoint.lastIndex(of: ":"),
              let port = Int(endpoint[endpoint.index(after: colon)...]) else { return nil }
        let hexPort = String(format: "%04X", port)
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let table = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            for line in table.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count >= 10, columns[3] == "0A", columns[1].hasSuffix(":" + hexPort) else { continue }
                return String(columns[9])
            }
        }
        return nil
    }
}
