import Foundation
import ProbattnEvaluation
import ProbattnJSON
import Synchronization

/// Progress of `probattn eval` on standard error: a bar redrawn in place on a terminal, one plain line per instance
/// otherwise (logs, CI). Thread-safe: workers report as they finish.
final class EvalProgress: Sendable {
    let total: Int
    let maxClicks: Int
    let interactive = isatty(STDERR_FILENO) != 0
    /// Instances finished and the sum of their NoC@90; the lock also keeps one worker's line whole.
    private let counts = Mutex<(completed: Int, nocSum: Int)>((0, 0))
    private let start = DispatchTime.now().uptimeNanoseconds

    init(total: Int, maxClicks: Int) {
        self.total = total
        self.maxClicks = maxClicks
        if interactive { draw(current: "", completed: 0, nocSum: 0) }
    }

    /// Called after each instance.
    func finished(_ result: InstanceResult) {
        counts.withLock { counts in
            counts.completed += 1
            counts.nocSum += result.noc90
            report(result, completed: counts.completed, nocSum: counts.nocSum)
        }
    }

    private func report(_ result: InstanceResult, completed: Int, nocSum: Int) {
        if interactive {
            draw(current: result.name, completed: completed, nocSum: nocSum)
        } else {
            let clickMs = result.secondsPerClick.reduce(0, +) / Double(max(result.secondsPerClick.count, 1)) * 1000
            let line = "[\(completed)/\(total)] \(result.name): NoC@85 \(result.noc85) NoC@90 \(result.noc90) "
                + String(format: "IoU@1 %.3f IoU@%d %.3f open %.3fs click %.1fms\n", result.ious.first ?? 0,
                         maxClicks, result.ious.last ?? 0, result.secondsOpen, clickMs)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// Called at the end: ends the bar's line.
    func finish() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func draw(current: String, completed: Int, nocSum: Int) {
        let width = 30
        let filled = total == 0 ? width : completed * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let eta = completed == 0 ? "" : String(format: " ETA %.0fs", elapsed / Double(completed) * Double(total - completed))
        let noc = completed == 0 ? "" : String(format: " NoC@90 %.2f", Double(nocSum) / Double(completed))
        let name = current.isEmpty ? "" : " " + String(current.prefix(20))
        FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(completed)/\(total)\(noc)\(eta)\(name)".utf8))
    }
}
