import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// A click in force in a session, with who made it and its id in the store's log.
public struct ActiveClick: Sendable, Equatable {
    public var id: Int64
    public var annotator: String
    public var click: Click

    public init(id: Int64, annotator: String, click: Click) {
        self.id = id
        self.annotator = annotator
        self.click = click
    }
}

/// Which click wins when two active clicks of different classes sit on the same pixel, and which of two equally near
/// clicks of different classes gives a click-disc pixel its class.
public enum ConflictPolicy: String, Sendable, Equatable, CaseIterable {
    /// The most recent click decides.
    case latestWins = "latest_wins"
    /// The earliest click that is still active decides.
    case firstWins = "first_wins"

    /// How the propagator breaks a tie between two equally near clicks under this policy (its clicks are in log
    /// order): the later click for `latest_wins`, the earlier for `first_wins`.
    public var clickTieBreak: ClickTieBreak { self == .firstWins ? .earlier : .later }
}

/// One open image and its collaborative state. The immutable part describes the image; the mutable part (clicks,
/// mask, version) is changed only by commands of this image — which run one at a time — and read under the core's
/// lock.
/// Unchecked `Sendable`: the `var`s are read and written only under the owning `SessionCore`'s lock; the `let`s are
/// `Sendable`.
final class ImageSession: @unchecked Sendable {
    let storeID: Int64
    let imageID: String
    let width: Int
    let height: Int
    let classes: [String]
    let contentHash: String
    let publishPNG: Bool
    /// The encoded image file, kept to prepare the image again after a cache eviction (nil: re-read `sourcePath`).
    let imageBytes: [UInt8]?
    let sourcePath: String?
    /// Who opened the image (nil when the opener gave no name).
    let openedBy: String?
    /// The pipeline this session was opened with (a reload that changes stages affects images opened later).
    let pipeline: SegmentationPipeline
    /// The resolution the stages work at for this image (`limits.working_pixels` when it was opened or resumed).
    let resolution: WorkingResolution

    var clicks: [ActiveClick]
    var version: Int
    var mask: LabelMask
    /// `mask`'s encodings, from which the next version's are built (nil after a restart until the next change).
    var encoded: EncodedMask?
    /// Of a reduced image (`resolution.isReduced`), the working mask `mask` is the expansion of, from which the next
    /// version is encoded (nil at the image's own resolution, and after a restart until the next change).
    var workingMask: LabelMask?
    var maskAnnotator: String?
    /// Everyone who opened or clicked in this session (for listings).
    var participants: Set<String>

    init(storeID: Int64, imageID: String, width: Int, height: Int, classes: [String], contentHash: String,
         publishPNG: Bool, imageBytes: [UInt8]?, sourcePath: String?, openedBy: String?,
         pipeline: SegmentationPipeline, resolution: WorkingResolution, clicks: [ActiveClick], version: Int,
         mask: LabelMask, maskAnnotator: String?) {
        self.storeID = storeID
        self.imageID = imageID
        self.width = width
        self.height = height
        self.classes = classes
        self.contentHash = contentHash
        self.publishPNG = publishPNG
        self.imageBytes = imageBytes
        self.sourcePath = sourcePath
        self.openedBy = openedBy
        self.pipeline = pipeline
        self.resolution = resolution
        self.clicks = clicks
        self.version = version
        self.mask = mask
        self.maskAnnotator = maskAnnotator
        participants = Set(clicks.map(\.annotator) + (openedBy.map { [$0] } ?? []))
    }
}

/// Which active clicks the propagator sees. Every active click is in force except where clicks of different classes
/// sit on the very same pixel: there `conflict_policy` picks the class (of the latest click on that pixel, or of the
/// earliest), and the clicks of the other classes on that pixel are overridden (they stay active: undoing the winner
/// brings them back into force). Clicks on the same token but different pixels are all kept; the propagator splits
/// such a token between them (`BeliefPropagator`).
public enum ConflictResolution {
    public struct Outcome: Sendable, Equatable {
        /// The clicks in force, in log order (the oldest first) under either policy, as the propagator takes them;
        /// where two of them tie (equally near a disc pixel) the policy's `clickTieBreak` decides.
        public var inForce: [Click]
        /// The ids of the active clicks that are out of force, in log order.
        public var overridden: [Int64]
    }

    /// Resolves `clicks` (in log order, image coordinates) under `policy`, on the pixels of the working
    /// `resolution` (two clicks in one working pixel sit on the same pixel); the clicks in force are given in
    /// working coordinates. Linear in the number of clicks.
    public static func resolve(_ clicks: [ActiveClick], resolution: WorkingResolution,
                               policy: ConflictPolicy) -> Outcome {
        let width = resolution.workingWidth
        func working(_ click: Click) -> Click {
            Click(x: resolution.working(click.x), y: resolution.working(click.y), classIndex: click.classIndex)
        }
        var winner: [Int: Int] = [:]
        for active in clicks {
            let click = working(active.click)
            let pixel = click.y * width + click.x
            if policy == .latestWins || winner[pixel] == nil { winner[pixel] = click.classIndex }
        }
        var inForce: [Click] = []
        var overridden: [Int64] = []
        inForce.reserveCapacity(clicks.count)
        for active in clicks {
            let click = working(active.click)
            if winner[click.y * width + click.x] == click.classIndex {
                inForce.append(click)
            } else {
                overridden.append(active.id)
            }
        }
        return Outcome(inForce: inForce, overridden: overridden)
    }
}
