/// The writer stage: what the session core hands on after every change, and what it reads back when the daemon
/// restarts. The SQLite writer (`ProbattnStore.SQLiteSessionStore`, type `sqlite`) is the daemon's; the in-memory
/// writer (`ProbattnSession.InMemorySessionStore`, type `memory`) serves `probattn eval` and tests. Each is registered
/// by a `WriterDescriptor`; the config's `role: writer` stage selects one.
///
/// Contract: every call commits before it returns (a reply sent after it never acknowledges work a crash could lose);
/// calls for one session come one at a time and in order, calls for different sessions may run concurrently.
public protocol SessionPersistence: AnyObject, Sendable {
    /// Records a new session with its mask version 0; returns the session's store id (unique, never reused).
    func open(_ session: StoredSession, firstMask: StoredMask) throws -> Int64
    /// Appends clicks to the session's log and records the mask they produced, in one transaction; returns the
    /// clicks with their ids (increasing, in the order given).
    func append(clicks: [NewClick], requestID: String, session: Int64, mask: StoredMask) throws -> [StoredClick]
    /// Marks one click undone and records the resulting mask, in one transaction.
    func undo(click: Int64, session: Int64, mask: StoredMask) throws
    /// Ends a session: it is no longer returned by `openSessions` (its records stay).
    func close(session: Int64) throws
    /// Every open session with its active clicks (log order) and its latest mask: what a restart resumes.
    func openSessions() throws -> [ResumableSession]
    /// Makes everything written durable in its final place (the daemon calls it on shutdown).
    func checkpoint() throws
}

/// The writer protocol under the name the pipeline's roles use.
public typealias SessionWriter = SessionPersistence

/// What a writer's factory needs besides its options: the config's `store` section as the daemon resolved it.
public struct WriterEnvironment: Sendable, Equatable {
    /// The database file (absolute, or relative to the working directory), for writers that keep one.
    public var storePath: String

    public init(storePath: String) { self.storePath = storePath }
}

/// How a writer type is registered (`StageDescriptor`), and the registry of the writers a program links.
public typealias WriterDescriptor = StageDescriptor<any SessionWriter, WriterEnvironment>
public typealias WriterRegistry = StageRegistry<any SessionWriter, WriterEnvironment>

/// A mask version as the store keeps it: the first class's COCO RLE (always) and, for sessions with more than two
/// classes, one RLE per class. `delta`, when set, is the change from version − 1; a store may keep only it (the
/// SQLite store does) and must then rebuild the full mask from the nearest earlier full version and the deltas after
/// it. The session core sets it on every version except each `fullVersionInterval`-th and those whose delta would be
/// no shorter than the full mask, so a rebuild applies fewer than `fullVersionInterval` deltas.
public struct StoredMask: Sendable, Equatable {
    /// Every how many versions the core hands the store a version without `delta` (version 0 never has one).
    public static let fullVersionInterval = 32

    public var version: Int
    public var annotator: String?
    public var cause: String
    public var requestID: String?
    public var rleCounts: String
    public var classMasks: [String: String]?
    public var propagateMilliseconds: Double
    public var totalMilliseconds: Double
    public var delta: StoredMaskDelta?

    public init(version: Int, annotator: String?, cause: String, requestID: String?, rleCounts: String,
                classMasks: [String: String]?, propagateMilliseconds: Double, totalMilliseconds: Double,
                delta: StoredMaskDelta? = nil) {
        self.version = version
        self.annotator = annotator
        self.cause = cause
        self.requestID = requestID
        self.rleCounts = rleCounts
        self.classMasks = classMasks
        self.propagateMilliseconds = propagateMilliseconds
        self.totalMilliseconds = totalMilliseconds
        self.delta = delta
    }
}

/// The change of a mask version from the one before (`MaskDelta` as the store keeps it): the rectangle and its
/// content's COCO RLE counts (size `[height, width]`), of the first class and, for more than two classes, of every
/// class. An empty rectangle means nothing changed.
public struct StoredMaskDelta: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    public var rleCounts: String
    public var classMasks: [String: String]?

    public init(x: Int, y: Int, width: Int, height: Int, rleCounts: String, classMasks: [String: String]?) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.rleCounts = rleCounts
        self.classMasks = classMasks
    }
}

/// One image session as the store keeps it.
public struct StoredSession: Sendable {
    public var storeID: Int64
    public var imageID: String
    public var width: Int
    public var height: Int
    public var contentHash: String
    public var classes: [String]
    /// The encoded image (nil when the store keeps only `sourcePath`).
    public var bytes: [UInt8]?
    public var sourcePath: String?
    public var publishPNG: Bool
    public var openedBy: String?

    public init(storeID: Int64, imageID: String, width: Int, height: Int, contentHash: String, classes: [String],
                bytes: [UInt8]?, sourcePath: String?, publishPNG: Bool, openedBy: String?) {
        self.storeID = storeID
        self.imageID = imageID
        self.width = width
        self.height = height
        self.contentHash = contentHash
        self.classes = classes
        self.bytes = bytes
        self.sourcePath = sourcePath
        self.publishPNG = publishPNG
        self.openedBy = openedBy
    }
}

/// A click to append to the log.
public struct NewClick: Sendable, Equatable {
    public var annotator: String
    public var x: Int
    public var y: Int
    public var classIndex: Int
    public var className: String

    public init(annotator: String, x: Int, y: Int, classIndex: Int, className: String) {
        self.annotator = annotator
        self.x = x
        self.y = y
        self.classIndex = classIndex
        self.className = className
    }
}

/// One click of the append-only log.
public struct StoredClick: Sendable, Equatable {
    public var id: Int64
    public var annotator: String
    public var x: Int
    public var y: Int
    public var classIndex: Int
    public var time: Double

    public init(id: Int64, annotator: String, x: Int, y: Int, classIndex: Int, time: Double) {
        self.id = id
        self.annotator = annotator
        self.x = x
        self.y = y
        self.classIndex = classIndex
        self.time = time
    }
}

/// An open session as a restart finds it.
public struct ResumableSession: Sendable {
    public var session: StoredSession
    public var clicks: [StoredClick]
    public var mask: StoredMask?

    public init(session: StoredSession, clicks: [StoredClick], mask: StoredMask?) {
        self.session = session
        self.clicks = clicks
        self.mask = mask
    }
}
