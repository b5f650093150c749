import Foundation
import ProbattnImaging
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import ProbattnStore
import Testing

/// Mask versions through the real SQLite store: versions kept as deltas with a full version every
/// `StoredMask.fullVersionInterval`, every version rebuilt bit-exact, restarts, old store files, and the updates'
/// `delta`.
@Suite("Mask versions in the SQLite store")
struct MaskStoreTests {
    static func temporaryStorePath() -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("probattn-maskstore-\(UUID().uuidString)")
        return folder.appendingPathComponent("store.sqlite").path
    }

    static func core(_ store: any SessionPersistence) -> SessionCore {
        SessionCore(settings: SessionSettings(maxImagePixels: 1 << 24, conflictPolicy: .latestWins,
                                              storesImagePaths: false, pipeline: defaultPipeline),
                    persistence: store, cache: PreparedCache(budgetBytes: 1 << 30))
    }

    /// Opens `id` and runs `clicks` random clicks (every 7th an undo), returning every version's mask as the core
    /// produced it (the updates' masks) and the updates.
    static func run(_ core: SessionCore, id: String, classes: [String], clicks: Int, seed: UInt64) throws
        -> [MaskUpdate] {
        var updates: [MaskUpdate] = []
        var counter = 0
        func execute(_ body: RequestBody) throws {
            counter += 1
            let outcome = try core.execute(Request(requestID: "\(id)-\(counter)", body))
            if let update = outcome.update { updates.append(update) }
        }
        try execute(.openImage(imageID: id, classes: classes, annotator: "alice", sourcePath: nil, publishPNG: false,
                               bytes: try Scene.png()))
        var state = seed
        func next() -> UInt64 {  // a 64-bit LCG (Knuth's MMIX constants): enough to scatter test clicks
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for step in 1...clicks {
            if step % 7 == 0 {
                try execute(.undo(imageID: id, annotator: "alice"))
                continue
            }
            let x = Int(next() % UInt64(Scene.width)), y = Int(next() % UInt64(Scene.height))
            let className = classes[Int(next() % UInt64(classes.count))]
            try execute(.feedback(imageID: id, annotator: "alice", clicks: [WireClick(x: x, y: y, className: className)]))
        }
        return updates
    }

    @Test(arguments: [["object", "background"], ["cat", "dog", "background"]])
    func everyVersionRebuiltFromTheStoreEqualsTheCoresMask(classes: [String]) throws {
        let path = Self.temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try SQLiteSessionStore(path: path)
        let clicks = 2 * StoredMask.fullVersionInterval + 6
        let updates = try Self.run(Self.core(store), id: "img", classes: classes, clicks: clicks, seed: 7)
        #expect(updates.count == clicks + 1)
        let session = try #require(try store.openSessions().first).session.storeID

        for (index, update) in updates.enumerated() {
            #expect(update.version == index)
            let stored = try #require(try store.mask(session: session, version: update.version))
            #expect(stored.delta == nil, "a rebuilt version is full")
            let labels = try MaskCodec.labels(from: stored, width: Scene.width, height: Scene.height, classes: classes)
            #expect(labels == update.mask.mask, "version \(update.version)")
            #expect(stored.rleCounts == update.mask.rle.counts)
            // The update's delta applied to the version before gives this version.
            if index > 0 {
                let delta = try #require(update.mask.delta)
                var rebuilt = updates[index - 1].mask.mask
                try MaskCodec.apply(MaskCodec.stored(delta), to: &rebuilt, classes: classes)
                #expect(rebuilt == update.mask.mask, "delta of version \(update.version)")
            } else {
                #expect(update.mask.delta == nil, "version 0 has no delta")
            }
        }
        #expect(try store.mask(session: session, version: updates.count) == nil)
        let storage = try store.maskStorage(session: session)
        #expect(storage.versions == updates.count)
        // Versions 0, 32, 64 are full, and those whose delta was no shorter than the full mask; the rest deltas.
        #expect(storage.full >= 1 + clicks / StoredMask.fullVersionInterval)
        #expect(storage.full < storage.versions / 2, "most versions are deltas")

        // A restart resumes the latest version, rebuilt from the last full version and the deltas after it.
        let restarted = Self.core(try SQLiteSessionStore(path: path))
        try restarted.resume()
        let resumed = try restarted.snapshot("img")
        #expect(resumed.version == updates.last?.version)
        #expect(resumed.mask == updates.last?.mask.mask)
        // The resumed core goes on with deltas from the resumed mask.
        let more = try restarted.execute(Request(requestID: "after", .feedback(
            imageID: "img", annotator: "bob", clicks: [WireClick(x: 80, y: 60, className: classes[0])])))
        let next = try #require(more.update)
        var rebuilt = resumed.mask
        try MaskCodec.apply(MaskCodec.stored(try #require(next.mask.delta)), to: &rebuilt, classes: classes)
        #expect(rebuilt == next.mask.mask)
        let last = try #require(try SQLiteSessionStore(path: path).mask(session: session, version: next.version))
        #expect(try MaskCodec.labels(from: last, width: Scene.width, height: Scene.height, classes: classes)
                == next.mask.mask)
    }

    /// A store file written with the schema before mask deltas (migration "v1" only) opens, resumes its session and
    /// takes delta versions after the migration.
    @Test func aStoreFileWithTheFirstSchemaIsMigrated() throws {
        let path = Self.temporaryStorePath()
        let folder = (path as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let full = LabelMask(width: Scene.width, height: Scene.height, labels: (0..<(Scene.width * Scene.height)).map {
            ($0 % Scene.width) < 50 ? 0 : 1
        })
        let counts = COCORLE(mask: full, objectClass: 0).counts
        let script = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.executescript('''
            CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
            INSERT INTO grdb_migrations VALUES ('v1');
            CREATE TABLE images (session INTEGER PRIMARY KEY AUTOINCREMENT, image_id TEXT NOT NULL,
                width INTEGER NOT NULL, height INTEGER NOT NULL, content_hash TEXT NOT NULL, classes TEXT NOT NULL,
                bytes BLOB, source_path TEXT, publish_png INTEGER NOT NULL DEFAULT 0, opened_by TEXT,
                opened_at REAL NOT NULL, closed_at REAL);
            CREATE UNIQUE INDEX images_open_id ON images(image_id) WHERE closed_at IS NULL;
            CREATE TABLE clicks (id INTEGER PRIMARY KEY AUTOINCREMENT, session INTEGER NOT NULL REFERENCES images(session),
                annotator TEXT NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL, class_index INTEGER NOT NULL,
                class TEXT NOT NULL, created_at REAL NOT NULL, request_id TEXT, undone INTEGER NOT NULL DEFAULT 0,
                undone_at REAL);
            CREATE INDEX clicks_session ON clicks(session, id);
            CREATE TABLE masks (session INTEGER NOT NULL REFERENCES images(session), version INTEGER NOT NULL,
                annotator TEXT, cause TEXT NOT NULL, request_id TEXT, rle_counts TEXT NOT NULL, class_masks TEXT,
                propagate_ms REAL NOT NULL, total_ms REAL NOT NULL, created_at REAL NOT NULL,
                PRIMARY KEY (session, version));
            ''')
            db.execute("INSERT INTO images (image_id, width, height, content_hash, classes, opened_at) "
                       "VALUES ('old', ?, ?, 'sha256:0', '[\\"object\\",\\"background\\"]', 0)", (int(sys.argv[2]), int(sys.argv[3])))
            for version in range(3):
                db.execute("INSERT INTO masks (session, version, cause, rle_counts, propagate_ms, total_ms, created_at) "
                           "VALUES (1, ?, 'feedback', ?, 1, 1, 0)", (version, sys.argv[4]))
            db.commit()
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, path, "\(Scene.width)", "\(Scene.height)", counts]
        try python.run()
        python.waitUntilExit()
        #expect(python.terminationStatus == 0)

        let store = try SQLiteSessionStore(path: path)
        let resumed = try #require(try store.openSessions().first)
        #expect(resumed.mask?.version == 2)
        #expect(resumed.mask?.rleCounts == counts)
        var changed = full
        for y in 10..<20 { for x in 60..<70 { changed.labels[y * Scene.width + x] = 0 } }
        let delta = MaskDelta(rect: PixelRect(x: 60, y: 10, width: 10, height: 10),
                              rle: ColumnRuns.rle(of: changed, objectClass: 0,
                                                  rect: PixelRect(x: 60, y: 10, width: 10, height: 10)),
                              classMasks: nil)
        _ = try store.append(clicks: [NewClick(annotator: "a", x: 65, y: 15, classIndex: 0, className: "object")],
                             requestID: "r", session: resumed.session.storeID,
                             mask: StoredMask(version: 3, annotator: "a", cause: "feedback", requestID: "r",
                                              rleCounts: COCORLE(mask: changed, objectClass: 0).counts,
                                              classMasks: nil, propagateMilliseconds: 1, totalMilliseconds: 1,
                                              delta: MaskCodec.stored(delta)))
        let again = try #require(try SQLiteSessionStore(path: path).openSessions().first)
        #expect(again.mask?.version == 3)
        #expect(again.mask?.rleCounts == COCORLE(mask: changed, objectClass: 0).counts)
        #expect(try store.maskStorage(session: resumed.session.storeID).full == 3)
    }
}
