import ProbattnImaging

/// What the session core answers, one type per command, before any transport encodes it. Times are in seconds.

/// A click of the log as results name it: its id, where, which class, and who made it.
public struct ClickRecord: Sendable, Equatable {
    public var id: Int64
    public var x: Int
    public var y: Int
    public var className: String
    public var annotator: String

    public init(id: Int64, x: Int, y: Int, className: String, annotator: String) {
        self.id = id
        self.x = x
        self.y = y
        self.className = className
        self.annotator = annotator
    }
}

/// `open_image`: the session as it is now (new, or joined when `reopened`).
public struct OpenResult: Sendable {
    public var imageID: String
    public var width: Int
    public var height: Int
    public var classes: [String]
    public var contentHash: String
    public var version: Int
    public var reopened: Bool
    /// `decode`, `encode`, `adapt`, `propagate`, `commit`, `total` (0 for steps not run).
    public var timings: [String: Double]
}

/// `feedback` and `undo`: the new mask version.
public struct MaskChange: Sendable {
    public var imageID: String
    public var version: Int
    /// Active clicks after the change.
    public var clickCount: Int
    public var mask: EncodedMask
    /// `queue`, `propagate`, `commit`, `total`.
    public var timings: [String: Double]
    /// `feedback`: the clicks appended to the log, with their ids, in request order.
    public var added: [ClickRecord]
    /// `undo`: the click taken back.
    public var undone: ClickRecord?
    /// Ids of the active clicks out of force in this version (another class's click on the same pixel won under
    /// `conflict_policy`), in log order.
    public var overridden: [Int64]
}

/// `predict`: the mask of exactly the call's points and box.
public struct PredictResult: Sendable {
    public var contentHash: String
    public var width: Int
    public var height: Int
    public var classes: [String]
    public var mask: EncodedMask
    /// Whether the prepared image came from the cache (false: this call decoded, encoded and adapted it).
    public var cached: Bool
    /// The points the propagator saw (the request's, or the box's centre point when the request gave none).
    public var points: [WireClick]
    /// The box, clipped to the image.
    public var box: PixelBox?
    /// `queue`, `decode`, `encode`, `adapt`, `propagate`, `total` (0 for steps not run).
    public var timings: [String: Double]

    public init(contentHash: String, width: Int, height: Int, classes: [String], mask: EncodedMask, cached: Bool,
                points: [WireClick], box: PixelBox?, timings: [String: Double]) {
        self.contentHash = contentHash
        self.width = width
        self.height = height
        self.classes = classes
        self.mask = mask
        self.cached = cached
        self.points = points
        self.box = box
        self.timings = timings
    }
}

/// `get_mask`: the current version.
public struct MaskSnapshot: Sendable {
    public var imageID: String
    public var version: Int
    public var width: Int
    public var height: Int
    public var classes: [String]
    /// Who caused this version (nil for version 0).
    public var annotator: String?
    public var clickCount: Int
    public var mask: LabelMask
    public var overridden: [Int64]
    /// `mask`'s RLEs when the core holds them (every version since the session was opened or resumed and changed).
    public var encoded: EncodedMask? = nil
}

/// `close_image`.
public struct CloseResult: Sendable {
    public var imageID: String
    /// The last version.
    public var version: Int
}

/// One line of `list_sessions`.
public struct SessionSummary: Sendable, Equatable {
    public var imageID: String
    public var width: Int
    public var height: Int
    public var classes: [String]
    public var version: Int
    public var clickCount: Int
    /// Annotators with active clicks, sorted.
    public var annotators: [String]
    /// Everyone who opened the image or clicked in it, sorted.
    public var participants: [String]
    public var openedBy: String?
    /// Whether the prepared image is in the cache.
    public var cached: Bool
    /// Requests waiting or running for this image.
    public var queueDepth: Int
}

/// `health`.
public struct HealthReport: Sendable {
    public var uptimeSeconds: Double
    public var sessions: Int
    public var pendingRequests: Int
    public var workers: Int
    public var queueDepths: [String: Int]
    public var cacheEntries: Int
    public var cacheBytes: Int
    public var cacheBudgetBytes: Int
    public var cacheEvictions: Int
    public var stages: [String: LatencySummary]
}

/// The result of one command.
public enum CommandResult: Sendable {
    case opened(OpenResult)
    case changed(MaskChange)
    case mask(MaskSnapshot)
    case closed(CloseResult)
    case sessions([SessionSummary])
    case health(HealthReport)
    case predicted(PredictResult)
}

/// What every subscriber of an image receives after its mask changed (open → version 0, each feedback, each undo).
public struct MaskUpdate: Sendable {
    public enum Cause: String, Sendable {
        case open, feedback, undo
    }

    public var imageID: String
    public var version: Int
    /// Who caused it (the opener for version 0, nil when the opener gave no name).
    public var annotator: String?
    public var cause: Cause
    public var requestID: String
    public var width: Int
    public var height: Int
    public var classes: [String]
    /// Active clicks after the change.
    public var clickCount: Int
    public var mask: EncodedMask
    public var timings: [String: Double]
    /// The mask as the protocol's PNG when the session was opened with `publish_png`.
    public var png: [UInt8]?
    /// `feedback`: the clicks it added (the last one is the update's `click`).
    public var added: [ClickRecord]
    /// `undo`: the click taken back.
    public var undone: ClickRecord?
    public var overridden: [Int64]
}

/// A command's result and, when the mask changed, the update to publish (after the reply).
public struct CommandOutcome: Sendable {
    public var result: CommandResult
    public var update: MaskUpdate?

    public init(result: CommandResult, update: MaskUpdate? = nil) {
        self.result = result
        self.update = update
    }
}
