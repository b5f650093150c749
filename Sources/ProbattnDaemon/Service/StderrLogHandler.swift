import Foundation
import Logging

/// The daemon's log output: one line per event on stderr, `message key=value …` with the event's metadata (image,
/// annotator and request ids). Under systemd (`$JOURNAL_STREAM` set) each line starts with the syslog priority `<N>`
/// so journald records the level, and carries no timestamp (journald adds one); otherwise lines start with an ISO
/// timestamp and the level.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let journal: Bool
    private let output: @Sendable (String) -> Void

    /// `output` receives each finished line (with its newline); the default writes it to stderr.
    public init(label: String, level: Logger.Level = .info,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                output: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.label = label
        logLevel = level
        journal = !(environment["JOURNAL_STREAM"] ?? "").isEmpty
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The syslog priority of a level (`sd-daemon(3)`).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public func log(event: LogEvent) {
        write(level: event.level, message: event.message, metadata: event.metadata)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?) {
        var merged = metadata
        if let explicit { merged.merge(explicit) { _, new in new } }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoted("\($0.value)"))" }
        let text = ([message.description.replacingOccurrences(of: "\n", with: " ")] + fields).joined(separator: " ")
        let line = journal
            ? "<\(Self.priority(level))>\(text)\n"
            : "\(Self.timestamp()) \(level.rawValue.uppercased()) \(text)\n"
        output(line)
    }

    private static func quoted(_ value: String) -> String {
        if value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) {
            return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") + "\""
        }
        return value
    }

    private static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}
