import Foundation
import ProbattnDaemon
import Testing
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation

/// CI's short mode of `probattn bench latency` (issue 6): starts the real `probattnd` on ipc:// endpoints in a
/// temporary folder, runs the benchmark binary against it with 1 image and 2 clicks, and checks the JSON report.
@Suite struct BenchLatencyShortModeTests {
    /// The folder of the build products (the test runner lives next to `probattn` and `probattnd`).
    private static func productsFolder() throws -> URL {
        let runner = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var folder = URL(fileURLWithPath: runner).deletingLastPathComponent()
        // Swift Testing may run from inside the .xctest bundle folder on some layouts.
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("probattnd").path),
              folder.path != "/" {
            folder = folder.deletingLastPathComponent()
        }
        return folder
    }

    @Test(.timeLimit(.minutes(5)))
    func theShortModeRunsAgainstTheRealDaemonAndWritesTheReport() throws {
        let products = try Self.productsFolder()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let requests = "ipc://\(folder.path)/requests"
        let results = "ipc://\(folder.path)/results"
        let configPath = folder.appendingPathComponent("probattnd.yaml").path
        try """
            endpoints: {requests: "\(requests)", results: "\(results)"}
            store: {path: "\(folder.path)/store.sqlite"}
            logging: {level: warning}
            notify: {watchdog: false}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)

        let daemon = Process()
        daemon.executableURL = products.appendingPathComponent("probattnd")
        daemon.arguments = ["run", "--config", configPath]
        daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try daemon.run()
        defer {
            if daemon.isRunning { daemon.terminate() }
            daemon.waitUntilExit()
        }
        // Ready when it answers `health` (the DEALER queues the request until the daemon binds).
        let probe = try ProbattnClient(endpoint: requests, timeout: 60)
        let ready = (try? probe.request("health", [:], timeout: 60))?.ok == true
        try #require(ready, "probattnd did not answer health within 60 s")

        let jsonPath = folder.appendingPathComponent("latency.json").path
        let bench = Process()
        bench.executableURL = products.appendingPathComponent("probattn")
        bench.arguments = ["bench", "latency", "--endpoint", requests, "--results-endpoint", results,
                           "--images", "1", "--annotators", "1", "--clicks", "2", "--size", "96x64",
                           "--json", jsonPath]
        let output = Pipe()
        bench.standardOutput = output
        try bench.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        bench.waitUntilExit()
        #expect(bench.terminationStatus == 0, "bench failed:\n\(printed)")
        #expect(printed.contains("feedback"))

        let data = try Data(contentsOf: URL(fileURLWithPath: jsonPath))
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(report.keys) == ["kinds", "throughput_per_s", "lost", "duplicated", "out_of_order",
                                     "feedback_by_click", "daemon_cpu"])
        // Both clicks are in the first bucket; the daemon was found by the ipc endpoint it listens on.
        let byClick = try #require(report["feedback_by_click"] as? [String: [String: Any]])
        #expect(Set(byClick.keys) == ["1-10"])
        #expect(byClick["1-10"]?["count"] as? Int == 2)
        #expect(Set((byClick["1-10"] ?? [:]).keys) == ["count", "p50_ms", "p90_ms", "p99_ms", "max_ms"])
        let cpu = try #require(report["daemon_cpu"] as? [String: Any], "daemon_cpu is \(report["daemon_cpu"] ?? "absent")")
        #expect(cpu["pid"] as? Int == Int(daemon.processIdentifier))
        #expect(cpu["feedback"] as? Int == 2)
        #expect((cpu["cpu_s"] as? Double ?? -1) >= 0)
        #expect((cpu["cpu_ms_per_feedback"] as? Double ?? -1) >= 0)
        #expect(report["lost"] as? Int == 0)
        #expect(report["duplicated"] as? Int == 0)
        #expect(report["out_of_order"] as? Int == 0)
        #expect((report["throughput_per_s"] as? Double ?? 0) > 0)
        let kinds = try #require(report["kinds"] as? [String: [String: Any]])
        for kind in ["open_image", "feedback", "publish", "close_image"] {
            let summary = try #require(kinds[kind], "no \(kind) in \(kinds.keys.sorted())")
            #expect(Set(summary.keys) == ["count", "p50_ms", "p90_ms", "p99_ms", "max_ms"])
            let p50 = summary["p50_ms"] as? Double ?? -1, p99 = summary["p99_ms"] as? Double ?? -1
            let max = summary["max_ms"] as? Double ?? -1
            #expect(p50 > 0 && p50 <= p99 && p99 <= max)
        }
        #expect(kinds["feedback"]?["count"] as? Int == 2)
        #expect(kinds["publish"]?["count"] as? Int == 2)
        #expect(kinds["open_image"]?["count"] as? Int == 1)
    }

    @Test func aDaemonThatNeverAnswersIsReportedAsLostAndFailsTheRun() throws {
        let products = try Self.productsFolder()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let jsonPath = folder.appendingPathComponent("latency.json").path
        let bench = Process()
        bench.executableURL = products.appendingPathComponent("probattn")
        bench.arguments = ["bench", "latency", "--endpoint", "ipc://\(folder.path)/nobody",
                           "--results-endpoint", "ipc://\(folder.path)/nobody-pub", "--clicks", "1",
                           "--size", "32x24", "--timeout", "0.5", "--json", jsonPath]
        let output = Pipe()
        bench.standardOutput = output
        try bench.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        bench.waitUntilExit()
        #expect(bench.terminationStatus == 1)
        #expect(printed.contains("lost reply: open_image"))
        let data = try Data(contentsOf: URL(fileURLWithPath: jsonPath))
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(report["lost"] as? Int == 1)
    }
}
