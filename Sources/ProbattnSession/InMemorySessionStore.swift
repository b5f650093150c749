import Foundation
import ProbattnStages

/// The in-memory writer stage (`type: memory`): the same contract as the SQLite writer (ids increase, undone clicks
/// stay in the log, closed sessions are not resumed) without a file. Used by `probattn eval` and by tests (and by a
/// daemon whose config names it, which then resumes nothing after a restart); everything is lost with the process.
/// Thread-safe.
/// Unchecked `Sendable`: every `var` is touched only under `lock`.
public final class InMemorySessionStore: SessionPersistence, @unchecked Sendable {
    private struct Record {
        var session: StoredSession
        var clicks: [(click: StoredClick, undone: Bool)] = []
        var masks: [StoredMask] = []
        var closed = false
    }

    private let lock = NSLock()
    private var records: [Int64: Record] = [:]
    private var nextSessionID: Int64 = 1
    private var nextClickID: Int64 = 1
    /// Whether to keep every mask version (tests read them back) or only the latest (eval: bounded memory).
    private let keepsEveryVersion: Bool

    public init(keepsEveryVersion: Bool = true) { self.keepsEveryVersion = keepsEveryVersion }

    private static var now: Double { Date().timeIntervalSince1970 }

    private func record(_ mask: StoredMask, into record: inout Record) {
        if keepsEveryVersion { record.masks.append(mask) } else { record.masks = [mask] }
    }

    public func open(_ session: StoredSession, firstMask: StoredMask) throws -> Int64 {
        lock.lock(); defer { lock.unlock() }
        let id = nextSessionID
        nextSessionID += 1
        var stored = session
        stored.storeID = id
        var entry = Record(session: stored)
        record(firstMask, into: &entry)
        records[id] = entry
        return id
    }

    public func append(clicks: [NewClick], requestID: String, session: Int64, mask: StoredMask) throws
        -> [StoredClick] {
        lock.lock(); defer { lock.unlock() }
        guard var entry = records[session] else { throw InMemoryStoreError("no session \(session)") }
        let time = Self.now
        var stored: [StoredClick] = []
        for c in clicks {
            let click = StoredClick(id: nextClickID, annotator: c.annotator, x: c.x, y: c.y, classIndex: c.classIndex,
                                    time: time)
            nextClickID += 1
            entry.clicks.append((click, false))
            stored.append(click)
        }
        record(mask, into: &entry)
        records[session] = entry
        return stored
    }

    public func undo(click: Int64, session: Int64, mask: StoredMask) throws {
        lock.lock(); defer { lock.unlock() }
        guard var entry = records[session] else { throw InMemoryStoreError("no session \(session)") }
        guard let index = entry.clicks.firstIndex(where: { $0.click.id == click }) else {
            throw InMemoryStoreError("no click \(click) in session \(session)")
        }
        entry.clicks[index].undone = true
        record(mask, into: &entry)
        records[session] = entry
    }

    public func close(session: Int64) throws {
        lock.lock(); defer { lock.unlock() }
        records[session]?.closed = true
        // A closed session is never read again: drop what it held.
        records[session]?.masks = []
        records[session]?.clicks = []
        records[session]?.session.bytes = nil
    }

    public func openSessions() throws -> [ResumableSession] {
        lock.lock(); defer { lock.unlock() }
        return records.keys.sorted().compactMap { id in
            guard let entry = records[id], !entry.closed else { return nil }
            return ResumableSession(session: entry.session, clicks: entry.clicks.filter { !$0.undone }.map(\.click),
                                    mask: entry.masks.last)
        }
    }

    public func checkpoint() throws {}

    /// Every mask version recorded for a session, oldest first (only the latest when `keepsEveryVersion` is off).
    public func masks(session: Int64) -> [StoredMask] {
        lock.lock(); defer { lock.unlock() }
        return records[session]?.masks ?? []
    }

    /// Every click of a session's log, undone ones included, oldest first.
    public func clickLog(session: Int64) -> [(click: StoredClick, undone: Bool)] {
        lock.lock(); defer { lock.unlock() }
        return records[session]?.clicks ?? []
    }
}

extension InMemorySessionStore {
    /// The `memory` writer's options.
    public struct Configuration: StageConfiguration, Equatable {
        /// `keep_every_version` (default true): keep every mask version (tests read them back), or only the latest
        /// (`probattn eval`: bounded memory).
        public var keepsEveryVersion: Bool

        public init(options: [String: ConfigValue]) throws {
            var r = StageOptionReader(stage: "writer '\(InMemorySessionStore.typeName)'", options: options)
            keepsEveryVersion = try r.bool("keep_every_version", default: true)
            try r.finish()
        }
    }

    /// The stage type name in the config.
    public static let typeName = "memory"

    /// The registration of `type: memory`.
    public static let descriptor = WriterDescriptor(
        role: .writer, typeName: typeName, summary: "keeps sessions, clicks and masks in memory (lost with the process)",
        configuration: Configuration.self
    ) { configuration, _ in InMemorySessionStore(keepsEveryVersion: configuration.keepsEveryVersion) }
}

/// A call named a session or click the in-memory store does not have.
public struct InMemoryStoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
