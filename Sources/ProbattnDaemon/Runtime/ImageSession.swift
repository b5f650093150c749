import ProbattnImaging
import ProbattnSegmentation

/// A click in force in a session, with who made it and its id in the store's log.
struct ActiveClick: Sendable, Equatable {
    var id: Int64
    var annotator: String
    var click: Click
}

/// One open image and its collaborative state. The immutable part describes the image; the mutable part (clicks,
/// mask, version) is changed only by jobs of this image — which the scheduler runs one at a time — and read under the
/// engine's lock.
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
    /// The pipeline this session was opened with (a reload that changes stages affects images opened later).
    let pipeline: SegmentationPipeline

    var clicks: [ActiveClick]
    var version: Int
    var mask: LabelMask
    var maskAnnotator: String?

    init(storeID: Int64, imageID: String, width: Int, height: Int, classes: [String], contentHash: String,
         publishPNG: Bool, imageBytes: [UInt8]?, sourcePath: String?, pipeline: SegmentationPipeline,
         clicks: [ActiveClick], version: Int, mask: LabelMask, maskAnnotator: String?) {
        self.storeID = storeID
        self.imageID = imageID
        self.width = width
        self.height = height
        self.classes = classes
        self.contentHash = contentHash
        self.publishPNG = publishPNG
        self.imageBytes = imageBytes
        self.sourcePath = sourcePath
        self.pipeline = pipeline
        self.clicks = clicks
        self.version = version
        self.mask = mask
        self.maskAnnotator = maskAnnotator
    }

    /// The topic frame of this image's updates: `"mask/" + id + NUL` (ids cannot contain NUL, so no id's topic is a
    /// prefix of another's).
    static func topic(_ imageID: String) -> [UInt8] { Array("mask/\(imageID)".utf8) + [0] }
}

/// Which clicks the propagator sees when several fall on one token with different classes.
enum ConflictResolution {
    /// Keeps, for every token, only the clicks of the winning class: the class of the latest click on that token
    /// (`latestWins`) or of the earliest (`!latestWins`). Order is preserved.
    static func resolve(_ clicks: [Click], tokenOfPixel: [Int32], width: Int, latestWins: Bool) -> [Click] {
        var winner: [Int32: Int] = [:]
        for click in clicks {
            let index = click.y * width + click.x
            guard index >= 0, index < tokenOfPixel.count else { continue }
            let token = tokenOfPixel[index]
            if latestWins || winner[token] == nil { winner[token] = click.classIndex }
        }
        return clicks.filter { click in
            let index = click.y * width + click.x
            guard index >= 0, index < tokenOfPixel.count else { return true }
            return winner[tokenOfPixel[index]] == click.classIndex
        }
    }
}
