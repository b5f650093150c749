import Foundation
import ProbattnCore
import Testing

/// A process pinned to one CPU sizes its thread counts to that CPU: `probattn bench kernel` under `taskset -c 0`
/// defaults `--threads` to the usable cores (`UsableCores.count()`, which the daemon's and `eval`'s core pools use
/// too), and its JSON reports the count it ran with.
@Suite struct UsableCoresProcessTests {
    @Test func aProcessPinnedToOneCPUUsesOneThread() throws {
        let taskset = "/usr/bin/taskset"
        guard FileManager.default.isExecutableFile(atPath: taskset) else {
            Issue.record("\(taskset) (util-linux) is needed to pin the process to one CPU")
            return
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("usable-cores-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func threads(_ command: [String]) throws -> Int {
            let json = folder.appendingPathComponent("kernel-\(command.count).json").path
            let probattn = DaemonProcess.productsFolder + "/probattn"
            let arguments = ["bench", "kernel", "--H", "256", "--M", "64", "--repeats", "1", "--budget", "1",
                             "--json", json]
            let (status, output) = command.isEmpty
                ? try DaemonProcess.run(probattn, arguments)
                : try DaemonProcess.run(command[0], Array(command.dropFirst()) + [probattn] + arguments)
            try #require(status == 0, "bench kernel failed: \(output)")
            let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            return try #require((rows as? [[String: Any]])?.first?["threads"] as? Int)
        }
        #expect(try threads([taskset, "-c", "0"]) == 1)
        // Unpinned, it counts what this process counts (both inherit the same affinity and cgroup).
        #expect(try threads([]) == UsableCores.count())
    }
}
