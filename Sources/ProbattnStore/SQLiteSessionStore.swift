import Foundation
import GRDB
import ProbattnJSON
import ProbattnSession
import ProbattnStages

/// The SQLite writer stage (`type: sqlite`; GRDB, WAL mode, `synchronous=FULL`): images, the append-only click log, and every mask version.
/// Every method commits one transaction before it returns, so a reply sent after it never acknowledges work that a
/// crash could lose. Thread-safe: called from the worker threads concurrently (GRDB serialises the writes).
public final class SQLiteSessionStore: SessionPersistence, Sendable {
    private let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) the database at `path`, creating its folder, and migrates the schema.
    public init(path: String) throws {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE images (
                    session INTEGER PRIMARY KEY AUTOINCREMENT,
                    image_id TEXT NOT NULL,
                    width INTEGER NOT NULL,
                    height INTEGER NOT NULL,
                    content_hash TEXT NOT NULL,
                    classes TEXT NOT NULL,
                    bytes BLOB,
                    source_path TEXT,
                    publish_png INTEGER NOT NULL DEFAULT 0,
                    opened_by TEXT,
                    opened_at REAL NOT NULL,
                    closed_at REAL
                );
                CREATE UNIQUE INDEX images_open_id ON images(image_id) WHERE closed_at IS NULL;
                CREATE TABLE clicks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    session INTEGER NOT NULL REFERENCES images(session),
                    annotator TEXT NOT NULL,
                    x INTEGER NOT NULL,
                    y INTEGER NOT NULL,
                    class_index INTEGER NOT NULL,
                    class TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    request_id TEXT,
                    undone INTEGER NOT NULL DEFAULT 0,
                    undone_at REAL
                );
                CREATE INDEX clicks_session ON clicks(session, id);
                CREATE TABLE masks (
                    session INTEGER NOT NULL REFERENCES images(session),
                    version INTEGER NOT NULL,
                    annotator TEXT,
                    cause TEXT NOT NULL,
                    request_id TEXT,
                    rle_counts TEXT NOT NULL,
                    class_masks TEXT,
                    propagate_ms REAL NOT NULL,
                    total_ms REAL NOT NULL,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (session, version)
                );
                """)
        }
        // v2: a version may be kept as its change from the version before (`StoredMask.delta`): the delta_* columns
        // hold the rectangle, rle_counts and class_masks the rectangle's RLE. Rows written before have them NULL
        // (full versions).
        migrator.registerMigration("v2-mask-deltas") { db in
            try db.execute(sql: """
                ALTER TABLE masks ADD COLUMN delta_x INTEGER;
                ALTER TABLE masks ADD COLUMN delta_y INTEGER;
                ALTER TABLE masks ADD COLUMN delta_width INTEGER;
                ALTER TABLE masks ADD COLUMN delta_height INTEGER;
                """)
        }
        try migrator.migrate(pool)
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    private static func json(_ classMasks: [String: String]?) -> String? {
        classMasks.map { String(decoding: JSONValue.object($0.mapValues(JSONValue.string)).serialized(), as: UTF8.self) }
    }

    /// Writes one version: its delta when it has one (see `StoredMask.delta`), its full RLE otherwise.
    private func insert(mask: StoredMask, session: Int64, _ db: Database) throws {
        let delta = mask.delta
        try db.execute(sql: """
            INSERT INTO masks (session, version, annotator, cause, request_id, rle_counts, class_masks, propagate_ms,
                               total_ms, created_at, delta_x, delta_y, delta_width, delta_height)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [session, mask.version, mask.annotator, mask.cause, mask.requestID,
                             delta?.rleCounts ?? mask.rleCounts, Self.json(delta.map(\.classMasks) ?? mask.classMasks),
                             mask.propagateMilliseconds, mask.totalMilliseconds, Self.now,
                             delta?.x, delta?.y, delta?.width, delta?.height])
    }

    /// Records a new session with its mask version 0; returns the session's store id.
    public func open(_ session: StoredSession, firstMask: StoredMask) throws -> Int64 {
        try pool.write { db in
            let classes = String(decoding: JSONValue.array(session.classes.map(JSONValue.string)).serialized(),
                                 as: UTF8.self)
            try db.execute(sql: """
                INSERT INTO images (image_id, width, height, content_hash, classes, bytes, source_path, publish_png,
                                    opened_by, opened_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [session.imageID, session.width, session.height, session.contentHash, classes,
                                 session.bytes.map { Data($0) }, session.sourcePath, session.publishPNG,
                                 session.openedBy, Self.now])
            let id = db.lastInsertedRowID
            try insert(mask: firstMask, session: id, db)
            return id
        }
    }

    /// Appends clicks to the log and records the mask they produced, in one transaction; returns the clicks' ids.
    public func append(clicks: [NewClick],
                       requestID: String, session: Int64, mask: StoredMask) throws -> [StoredClick] {
        try pool.write { db in
            let time = Self.now
            var stored: [StoredClick] = []
            for c in clicks {
                try db.execute(sql: """
                    INSERT INTO clicks (session, annotator, x, y, class_index, class, created_at, request_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [session, c.annotator, c.x, c.y, c.classIndex, c.className, time, requestID])
                stored.append(StoredClick(id: db.lastInsertedRowID, annotator: c.annotator, x: c.x, y: c.y,
                                          classIndex: c.classIndex, time: time))
            }
            try insert(mask: mask, session: session, db)
            return stored
        }
    }

    /// Marks one click undone and records the resulting mask, in one transaction.
    public func undo(click: Int64, session: Int64, mask: StoredMask) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE clicks SET undone = 1, undone_at = ? WHERE id = ? AND session = ?",
                           arguments: [Self.now, click, session])
            try insert(mask: mask, session: session, db)
        }
    }

    /// Ends a session: it is no longer resumed on restart (its rows stay).
    public func close(session: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE images SET closed_at = ? WHERE session = ?", arguments: [Self.now, session])
        }
    }

    /// Every open session with its active clicks (log order) and its latest mask: what a restart resumes.
    public func openSessions() throws -> [ResumableSession] {
        try pool.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM images WHERE closed_at IS NULL ORDER BY session")
            return try rows.map { row in
                let session = Self.sessionRow(row)
                let id = session.storeID
                let clicks = try Row.fetchAll(db, sql: """
                    SELECT id, annotator, x, y, class_index, created_at FROM clicks
                    WHERE session = ? AND undone = 0 ORDER BY id
                    """, arguments: [id]).map { c in
                    StoredClick(id: c["id"], annotator: c["annotator"], x: c["x"], y: c["y"],
                                classIndex: c["class_index"], time: c["created_at"])
                }
                let latest = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM masks WHERE session = ?",
                                              arguments: [id])
                // A version that cannot be rebuilt is handed over as stored; the core then reports it unreadable
                // and skips the session, as for any corrupt mask.
                var mask: StoredMask?
                if let latest {
                    do { mask = try Self.rebuild(session, version: latest, db) } catch {
                        mask = try Row.fetchOne(db, sql: "SELECT * FROM masks WHERE session = ? AND version = ?",
                                                arguments: [id, latest]).map(Self.storedRow)
                    }
                }
                return ResumableSession(session: session, clicks: clicks, mask: mask)
            }
        }
    }

    /// One row of the masks table as it is stored (a full version, or a delta when `delta` is set).
    private static func storedRow(_ m: Row) -> StoredMask {
        var classMasks: [String: String]?
        if let text: String = m["class_masks"] {
            classMasks = JSONValue.parse(Array(text.utf8))?.objectValue?.compactMapValues(\.stringValue)
        }
        var delta: StoredMaskDelta?
        if let width: Int = m["delta_width"] {
            delta = StoredMaskDelta(x: m["delta_x"] ?? 0, y: m["delta_y"] ?? 0, width: width,
                                    height: m["delta_height"] ?? 0, rleCounts: m["rle_counts"],
                                    classMasks: classMasks)
        }
        return StoredMask(version: m["version"], annotator: m["annotator"], cause: m["cause"],
                          requestID: m["request_id"], rleCounts: delta == nil ? m["rle_counts"] : "",
                          classMasks: delta == nil ? classMasks : nil, propagateMilliseconds: m["propagate_ms"],
                          totalMilliseconds: m["total_ms"], delta: delta)
    }

    /// Version `version` of a session as a full mask (`delta` nil): the nearest full version at or before it with
    /// the deltas after it applied, encoded again. Nil when the session has no such version.
    private static func rebuild(_ session: StoredSession, version: Int, _ db: Database) throws -> StoredMask? {
        guard let base = try Int.fetchOne(db, sql: """
            SELECT MAX(version) FROM masks WHERE session = ? AND version <= ? AND delta_width IS NULL
            """, arguments: [session.storeID, version]) else { return nil }
        let rows = try Row.fetchAll(db, sql: """
            SELECT * FROM masks WHERE session = ? AND version >= ? AND version <= ? ORDER BY version
            """, arguments: [session.storeID, base, version]).map(storedRow)
        guard var result = rows.last, result.version == version else { return nil }
        guard rows.count > 1 else { return result }
        var labels = try MaskCodec.labels(from: rows[0], width: session.width, height: session.height,
                                          classes: session.classes)
        for row in rows.dropFirst() {
            guard let delta = row.delta else {
                throw StoreError("mask version \(row.version) of session \(session.storeID) is neither full nor a delta")
            }
            try MaskCodec.apply(delta, to: &labels, classes: session.classes)
        }
        let encoded = EncodedMask(labels, classes: session.classes)
        result.rleCounts = encoded.rle.counts
        result.classMasks = encoded.classMasks?.mapValues(\.counts)
        result.delta = nil
        return result
    }

    /// Version `version` of the session `session` (open or closed) as a full mask, rebuilt from the store; nil when
    /// the store has no such version. For tests, audits and the storage benchmark.
    public func mask(session: Int64, version: Int) throws -> StoredMask? {
        try pool.read { db in
            guard let record = try Self.sessionRecord(session, db) else { return nil }
            return try Self.rebuild(record, version: version, db)
        }
    }

    /// What a session's mask versions occupy in the masks table: the number of versions, of them the full ones,
    /// and the bytes of their RLE text (`rle_counts` plus `class_masks`).
    public func maskStorage(session: Int64) throws -> (versions: Int, full: Int, bytes: Int) {
        try pool.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*) AS n, SUM(delta_width IS NULL) AS full,
                       SUM(LENGTH(rle_counts) + COALESCE(LENGTH(class_masks), 0)) AS bytes
                FROM masks WHERE session = ?
                """, arguments: [session])
            return (row?["n"] ?? 0, row?["full"] ?? 0, row?["bytes"] ?? 0)
        }
    }

    private static func sessionRecord(_ id: Int64, _ db: Database) throws -> StoredSession? {
        try Row.fetchOne(db, sql: "SELECT * FROM images WHERE session = ?", arguments: [id]).map(sessionRow)
    }

    private static func sessionRow(_ row: Row) -> StoredSession {
        let classesText: String = row["classes"]
        let classes = JSONValue.parse(Array(classesText.utf8))?.arrayValue?.compactMap(\.stringValue) ?? []
        let bytes: Data? = row["bytes"]
        return StoredSession(
            storeID: row["session"], imageID: row["image_id"], width: row["width"], height: row["height"],
            contentHash: row["content_hash"], classes: classes, bytes: bytes.map { [UInt8]($0) },
            sourcePath: row["source_path"], publishPNG: row["publish_png"], openedBy: row["opened_by"])
    }

    /// Every click of a session's log, undone ones included (for tests and audits), oldest first.
    public func clickLog(imageID: String) throws -> [(click: StoredClick, undone: Bool)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT c.* FROM clicks c JOIN images i ON i.session = c.session
                WHERE i.image_id = ? ORDER BY c.id
                """, arguments: [imageID]).map { c in
                (StoredClick(id: c["id"], annotator: c["annotator"], x: c["x"], y: c["y"],
                             classIndex: c["class_index"], time: c["created_at"]), c["undone"] as Bool)
            }
        }
    }

    /// Moves the WAL into the main database file; called on shutdown ("flush the writer").
    public func checkpoint() throws {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }
}

/// The store found rows it cannot read back.
public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension SQLiteSessionStore {
    /// The stage type name in the config.
    public static let typeName = "sqlite"

    /// The registration of `type: sqlite`: no options; the database file is the config's `store.path`
    /// (`WriterEnvironment.storePath`).
    public static let descriptor = WriterDescriptor(
        role: .writer, typeName: typeName,
        summary: "commits images, the click log and every mask version to SQLite (store.path)",
        configuration: NoOptions.self
    ) { _, environment in try SQLiteSessionStore(path: environment.storePath) }
}
