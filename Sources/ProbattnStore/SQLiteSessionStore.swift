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
        try migrator.migrate(pool)
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    private func insert(mask: StoredMask, session: Int64, _ db: Database) throws {
        var classMasks: String?
        if let masks = mask.classMasks {
            classMasks = String(decoding: JSONValue.object(masks.mapValues(JSONValue.string)).serialized(), as: UTF8.self)
        }
        try db.execute(sql: """
            INSERT INTO masks (session, version, annotator, cause, request_id, rle_counts, class_masks, propagate_ms,
                               total_ms, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [session, mask.version, mask.annotator, mask.cause, mask.requestID, mask.rleCounts,
                             classMasks, mask.propagateMilliseconds, mask.totalMilliseconds, Self.now])
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
                let id: Int64 = row["session"]
                let classesText: String = row["classes"]
                let classes = JSONValue.parse(Array(classesText.utf8))?.arrayValue?.compactMap(\.stringValue) ?? []
                let bytes: Data? = row["bytes"]
                let session = StoredSession(
                    storeID: id, imageID: row["image_id"], width: row["width"], height: row["height"],
                    contentHash: row["content_hash"], classes: classes, bytes: bytes.map { [UInt8]($0) },
                    sourcePath: row["source_path"], publishPNG: row["publish_png"], openedBy: row["opened_by"])
                let clicks = try Row.fetchAll(db, sql: """
                    SELECT id, annotator, x, y, class_index, created_at FROM clicks
                    WHERE session = ? AND undone = 0 ORDER BY id
                    """, arguments: [id]).map { c in
                    StoredClick(id: c["id"], annotator: c["annotator"], x: c["x"], y: c["y"],
                                classIndex: c["class_index"], time: c["created_at"])
                }
                let mask = try Row.fetchOne(db, sql: """
                    SELECT * FROM masks WHERE session = ? ORDER BY version DESC LIMIT 1
                    """, arguments: [id]).map { m -> StoredMask in
                    var classMasks: [String: String]?
                    if let text: String = m["class_masks"] {
                        classMasks = JSONValue.parse(Array(text.utf8))?.objectValue?.compactMapValues(\.stringValue)
                    }
                    return StoredMask(version: m["version"], annotator: m["annotator"], cause: m["cause"],
                                      requestID: m["request_id"], rleCounts: m["rle_counts"],
                                      classMasks: classMasks, propagateMilliseconds: m["propagate_ms"],
                                      totalMilliseconds: m["total_ms"])
                }
                return ResumableSession(session: session, clicks: clicks, mask: mask)
            }
        }
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
