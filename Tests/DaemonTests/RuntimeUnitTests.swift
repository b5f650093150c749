import Foundation
import Logging
@testable import ProbattnDaemon
import ProbattnImaging
import ProbattnSegmentation
import Testing
import ProbattnConfig
import ProbattnSession
import ProbattnStore
import ProbattnWire
import ProbattnClient
import ProbattnJSON
import ProbattnEvaluation

@Suite("Log lines")
struct LogLineTests {
    private func capture(environment: [String: String], _ body: (Logger) -> Void) -> [String] {
        let lines = Locked<[String]>([])
        let handler = StderrLogHandler(label: "test", level: .debug, environment: environment) { line in
            lines.withLock { $0.append(line) }
        }
        body(Logger(label: "test", factory: { _ in handler }))
        return lines.withLock { $0 }
    }

    @Test func underJournaldLinesCarryThePriorityAndTheIDs() {
        let lines = capture(environment: ["JOURNAL_STREAM": "8:1234"]) { logger in
            logger.error("Request refused", metadata: ["image": "img 1", "annotator": "alice", "request": "r-9"])
            logger.info("Request done")
        }
        #expect(lines == ["<3>Request refused annotator=alice image=\"img 1\" request=r-9\n", "<6>Request done\n"])
    }

    @Test func onATerminalLinesStartWithATimestampAndTheLevel() {
        let lines = capture(environment: [:]) { $0.warning("Slow", metadata: ["image": "x"]) }
        #expect(lines.count == 1)
        #expect(lines.first?.contains(" WARNING Slow image=x") == true)
        #expect(lines.first?.hasPrefix("20") == true)
    }
}
