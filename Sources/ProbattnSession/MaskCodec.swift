import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// How masks are written on the wire and in the store (docs/PROTOCOL.md §3), without the wire's framing.
public enum MaskCodec {
    /// COCO RLE of the first class.
    public static func rle(_ mask: LabelMask) -> COCORLE { COCORLE(mask: mask, objectClass: 0) }

    /// `{class: RLE}` for sessions with more than two classes, nil otherwise.
    public static func classMasks(_ mask: LabelMask, classes: [String]) -> [String: COCORLE]? {
        guard classes.count > 2 else { return nil }
        var out: [String: COCORLE] = [:]
        for (index, name) in classes.enumerated() { out[name] = COCORLE(mask: mask, objectClass: UInt8(index)) }
        return out
    }

    /// The PNG of the protocol: first class = 255 for two classes, class index as grey value otherwise.
    public static func png(_ mask: LabelMask, classCount: Int) throws -> [UInt8] {
        classCount > 2 ? try ImageEncoding.png(labels: mask) : try ImageEncoding.png(mask: mask, objectClass: 0)
    }

    /// Rebuilds a class map from a stored mask version.
    public static func labels(from stored: StoredMask, width: Int, height: Int, classes: [String]) throws -> LabelMask {
        if let perClass = stored.classMasks, classes.count > 2 {
            var labels = [UInt8](repeating: 0, count: width * height)
            for (index, name) in classes.enumerated() {
                guard let counts = perClass[name] else { continue }
                let bits = try COCORLE(size: [height, width], counts: counts).decodeBinary()
                for i in 0..<min(bits.count, labels.count) where bits[i] { labels[i] = UInt8(index) }
            }
            return LabelMask(width: width, height: height, labels: labels)
        }
        return try COCORLE(size: [height, width], counts: stored.rleCounts).labelMask(objectClass: 0,
                                                                                    backgroundClass: 1)
    }

    /// Writes a stored delta into the class map of the version before it (what a store does to rebuild a version it
    /// keeps as a delta). Throws when the rectangle lies outside the mask or an RLE does not decode to it.
    public static func apply(_ delta: StoredMaskDelta, to labels: inout LabelMask, classes: [String]) throws {
        guard delta.width > 0, delta.height > 0 else { return }
        guard delta.x >= 0, delta.y >= 0, delta.x + delta.width <= labels.width,
              delta.y + delta.height <= labels.height else {
            throw ImageError.corrupt("mask delta \(delta.width)x\(delta.height) at (\(delta.x), \(delta.y)) lies outside the \(labels.width)x\(labels.height) mask")
        }
        let rect = try self.labels(from: StoredMask(version: 0, annotator: nil, cause: "", requestID: nil,
                                                    rleCounts: delta.rleCounts, classMasks: delta.classMasks,
                                                    propagateMilliseconds: 0, totalMilliseconds: 0),
                                   width: delta.width, height: delta.height, classes: classes)
        let w = labels.width
        for row in 0..<delta.height {
            let source = row * delta.width, target = (delta.y + row) * w + delta.x
            labels.labels.replaceSubrange(target..<(target + delta.width),
                                          with: rect.labels[source..<(source + delta.width)])
        }
    }

    /// The stored form of a version's delta.
    public static func stored(_ delta: MaskDelta) -> StoredMaskDelta {
        StoredMaskDelta(x: delta.rect.x, y: delta.rect.y, width: delta.rect.width, height: delta.rect.height,
                        rleCounts: delta.rle.counts, classMasks: delta.classMasks?.mapValues(\.counts))
    }
}

/// A mask with its encodings, computed once per version and shared by the store, the reply and the update.
///
/// The RLEs are built from per-column runs (`ColumnRuns`, one per encoded class); a version built from the previous
/// one (`init(_:classes:previous:)`) recomputes only the columns of the rectangle where the two masks differ and
/// carries that rectangle's RLE as `delta`.
public struct EncodedMask: Sendable {
    public let mask: LabelMask
    public let rle: COCORLE
    public let classMasks: [String: COCORLE]?
    /// The change from the previous version: nil for a mask encoded on its own (version 0, `predict`).
    public let delta: MaskDelta?
    /// The column runs of class 0 (two classes) or of every class (more than two), kept for the next version.
    let runs: [ColumnRuns]

    /// Encodes every column of `mask`.
    public init(_ mask: LabelMask, classes: [String]) {
        let encoded = classes.count > 2 ? classes.indices.map { UInt8($0) } : [0]
        self.init(mask, classes: classes,
                  runs: encoded.map { ColumnRuns(mask: mask, objectClass: $0) }, delta: nil)
    }

    /// Encodes `mask` from `previous` (the same image's previous version, same classes): only the columns inside
    /// the rectangle where the two masks differ are recomputed, and `delta` holds that rectangle.
    public init(_ mask: LabelMask, classes: [String], previous: EncodedMask) {
        guard previous.mask.width == mask.width, previous.mask.height == mask.height,
              previous.runs.count == (classes.count > 2 ? classes.count : 1) else {
            self.init(mask, classes: classes)
            return
        }
        let rect = MaskDifference.changedRectangle(previous: previous.mask, current: mask)
        let runs = previous.runs.map { $0.updated(with: mask, columnsOf: rect) }
        self.init(mask, classes: classes, runs: runs, delta: MaskDelta(mask, classes: classes, rect: rect, runs: runs))
    }

    /// Encodes `mask`, which is `working` expanded by `resolution` (`WorkingResolution.expand`), from `previous`,
    /// whose mask is `previousWorking` expanded: the changed rectangle, the changed columns' runs and the delta are
    /// all computed from the working masks, so the cost is that of the working image.
    public init(_ mask: LabelMask, classes: [String], previous: EncodedMask, working: LabelMask,
                previousWorking: LabelMask, resolution: WorkingResolution) {
        guard previous.mask.width == mask.width, previous.mask.height == mask.height,
              mask.width == resolution.width, mask.height == resolution.height,
              previousWorking.width == working.width, previousWorking.height == working.height,
              previous.runs.count == (classes.count > 2 ? classes.count : 1) else {
            self.init(mask, classes: classes, previous: previous)
            return
        }
        let changed = MaskDifference.changedRectangle(previous: previousWorking, current: working)
        let runs = previous.runs.map { $0.updated(withExpanded: working, resolution: resolution, columnsOf: changed) }
        let delta = MaskDelta(rect: resolution.imageRect(changed), classes: classes, imageHeight: mask.height,
                              runs: runs) {
            ColumnRuns.rle(ofExpanded: working, resolution: resolution, objectClass: $0, workingRect: changed)
        }
        self.init(mask, classes: classes, runs: runs, delta: delta)
    }

    private init(_ mask: LabelMask, classes: [String], runs: [ColumnRuns], delta: MaskDelta?) {
        self.mask = mask
        self.runs = runs
        self.delta = delta
        let rles = runs.map(\.rle)
        rle = rles[0]
        if classes.count > 2 {
            var out: [String: COCORLE] = [:]
            for (index, name) in classes.enumerated() { out[name] = rles[index] }
            classMasks = out
        } else {
            classMasks = nil
        }
    }
}

/// The pixels of a mask version that differ from the previous version: the smallest rectangle holding them and
/// that rectangle's content as COCO RLE (size `[height, width]`), of the first class and, for sessions with more
/// than two classes, of every class. An empty rectangle (`width` and `height` 0, RLE size `[0, 0]` with empty
/// counts) says nothing changed.
public struct MaskDelta: Sendable, Equatable {
    public let rect: PixelRect
    public let rle: COCORLE
    public let classMasks: [String: COCORLE]?

    public init(rect: PixelRect, rle: COCORLE, classMasks: [String: COCORLE]?) {
        self.rect = rect
        self.rle = rle
        self.classMasks = classMasks
    }

    /// The delta of `mask` inside `rect`. A rectangle of whole columns takes its RLE from the columns' runs
    /// (`runs`: the mask's, one per encoded class) instead of reading its pixels again.
    init(_ mask: LabelMask, classes: [String], rect: PixelRect, runs: [ColumnRuns]) {
        self.init(rect: rect, classes: classes, imageHeight: mask.height, runs: runs) {
            ColumnRuns.rle(of: mask, objectClass: $0, rect: rect)
        }
    }

    /// The delta inside `rect` of a mask `imageHeight` rows high whose column runs are `runs` (one per encoded
    /// class): a rectangle of whole columns takes its RLE from the runs, any other from `partial(class)`.
    init(rect: PixelRect, classes: [String], imageHeight: Int, runs: [ColumnRuns],
         partial: (UInt8) -> COCORLE) {
        self.rect = rect
        guard !rect.isEmpty else {
            let empty = COCORLE(size: [0, 0], counts: "")
            rle = empty
            classMasks = classes.count > 2 ? Dictionary(uniqueKeysWithValues: classes.map { ($0, empty) }) : nil
            return
        }
        func encode(_ index: Int) -> COCORLE {
            rect.y == 0 && rect.height == imageHeight
                ? runs[index].rle(columns: rect.x..<rect.maxX)
                : partial(UInt8(index))
        }
        rle = encode(0)
        if classes.count > 2 {
            var out: [String: COCORLE] = [:]
            for (index, name) in classes.enumerated() { out[name] = index == 0 ? rle : encode(index) }
            classMasks = out
        } else {
            classMasks = nil
        }
    }
}
