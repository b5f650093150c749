import Foundation

/// A rectangle of pixels (`x..<x+width` × `y..<y+height`).
public struct PixelRect: Sendable, Equatable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }

    /// The empty rectangle (nothing changed).
    public static let empty = PixelRect(x: 0, y: 0, width: 0, height: 0)

    public var isEmpty: Bool { width <= 0 || height <= 0 }
    public var area: Int { isEmpty ? 0 : width * height }
    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var description: String { "\(width)×\(height)+\(x)+\(y)" }

    /// The smallest rectangle holding both (an empty one holds nothing).
    public func union(_ other: PixelRect) -> PixelRect {
        if isEmpty { return other }
        if other.isEmpty { return self }
        let x0 = min(x, other.x), y0 = min(y, other.y)
        return PixelRect(x: x0, y: y0, width: max(maxX, other.maxX) - x0, height: max(maxY, other.maxY) - y0)
    }

    /// Grown by `margin` pixels on every side, clipped to a `width` × `height` image.
    public func expanded(by margin: Int, clippedTo w: Int, _ h: Int) -> PixelRect {
        guard !isEmpty else { return self }
        let x0 = max(0, x - margin), y0 = max(0, y - margin)
        return PixelRect(x: x0, y: y0, width: min(w, maxX + margin) - x0, height: min(h, maxY + margin) - y0)
    }

    public func intersects(_ other: PixelRect) -> Bool {
        !isEmpty && !other.isEmpty && x < other.maxX && other.x < maxX && y < other.maxY && other.y < maxY
    }
}

/// Where two class maps of the same size differ.
public enum MaskDifference {
    /// The smallest rectangle holding every pixel whose label differs between `previous` and `current`, or
    /// `PixelRect.empty` when they are equal. Compares row by row (`memcmp`), and within a differing row eight bytes
    /// at a time, so equal rows cost what copying them would.
    public static func changedRectangle(previous: LabelMask, current: LabelMask) -> PixelRect {
        precondition(previous.width == current.width && previous.height == current.height,
                     "MaskDifference: the masks differ in size")
        let w = current.width, h = current.height
        var x0 = w, x1 = -1, y0 = h, y1 = -1
        previous.labels.withUnsafeBufferPointer { old in
            current.labels.withUnsafeBufferPointer { new in
                let a = old.baseAddress!, b = new.baseAddress!
                for y in 0..<h {
                    let rowA = a + y * w, rowB = b + y * w
                    if memcmp(rowA, rowB, w) == 0 { continue }
                    if y < y0 { y0 = y }
                    y1 = y
                    // The first differing byte from the left, skipping what is already inside [x0, x1].
                    var left = 0
                    while left < min(x0, w) && rowA[left] == rowB[left] { left += 1 }
                    if left < x0 { x0 = left }
                    var right = w - 1
                    while right > x1 && rowA[right] == rowB[right] { right -= 1 }
                    if right > x1 { x1 = right }
                }
            }
        }
        guard y1 >= 0 else { return .empty }
        return PixelRect(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    }
}

/// One class of a class map in COCO's run-length order, kept per image column: COCO RLE reads the mask down each
/// column, so a column's runs are a slice of the whole mask's runs, and a new mask version that changed only the
/// columns of a rectangle is re-encoded by recomputing those columns' runs and merging (`rle`), linear in the number
/// of runs rather than in the number of pixels.
///
/// Used by the session core (`EncodedMask`): version 0 computes every column, each later version only the columns
/// `MaskDifference.changedRectangle` reports.
public struct ColumnRuns: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let objectClass: UInt8
    /// Per column, its run lengths from the top: alternately pixels not of `objectClass` and pixels of it, starting
    /// with the former (a run of 0 when the top pixel is of the class); they add up to `height`.
    public private(set) var columns: [[Int32]]

    /// Every column of `mask`.
    public init(mask: LabelMask, objectClass: UInt8) {
        width = mask.width
        height = mask.height
        self.objectClass = objectClass
        columns = Self.runs(of: mask, objectClass: objectClass,
                            rect: PixelRect(x: 0, y: 0, width: mask.width, height: mask.height))
    }

    /// These runs with the columns `x ..< x + width` of `rect` recomputed from `mask` (whole columns: the rows of
    /// `rect` are ignored). `mask` must have this size; an empty `rect` returns the runs unchanged.
    public func updated(with mask: LabelMask, columnsOf rect: PixelRect) -> ColumnRuns {
        precondition(mask.width == width && mask.height == height, "ColumnRuns: the mask changed size")
        guard !rect.isEmpty else { return self }
        var copy = self
        let fresh = Self.runs(of: mask, objectClass: objectClass,
                              rect: PixelRect(x: rect.x, y: 0, width: rect.width, height: height))
        copy.columns.replaceSubrange(rect.x..<(rect.x + rect.width), with: fresh)
        return copy
    }

    /// These runs with the image columns of `workingRect`'s blocks recomputed, for a mask that is `working`
    /// expanded by `resolution` (every f × f block its working pixel's label; `WorkingResolution.expand`): computed
    /// from the working pixels alone, so the cost is that of the working rectangle, not of its image rectangle.
    public func updated(withExpanded working: LabelMask, resolution: WorkingResolution,
                        columnsOf workingRect: PixelRect) -> ColumnRuns {
        precondition(resolution.width == width && resolution.height == height, "ColumnRuns: the mask changed size")
        guard !workingRect.isEmpty else { return self }
        var copy = self
        let rect = PixelRect(x: workingRect.x, y: 0, width: workingRect.width, height: resolution.workingHeight)
        let fresh = Self.runs(ofExpanded: working, resolution: resolution, objectClass: objectClass, workingRect: rect)
        let image = resolution.imageRect(rect)
        copy.columns.replaceSubrange(image.x..<image.maxX, with: fresh)
        return copy
    }

    /// The COCO RLE of the image rectangle of `workingRect` (size `[height, width]` of that image rectangle) in the
    /// mask that is `working` expanded by `resolution`, for pixels of `objectClass`; `workingRect` must be non-empty
    /// and inside the working mask.
    public static func rle(ofExpanded working: LabelMask, resolution: WorkingResolution, objectClass: UInt8,
                           workingRect: PixelRect) -> COCORLE {
        let image = resolution.imageRect(workingRect)
        return COCORLE(size: [image.height, image.width], counts: COCORLE.compress(merge(
            runs(ofExpanded: working, resolution: resolution, objectClass: objectClass, workingRect: workingRect))))
    }

    /// The runs of the image columns of `workingRect`'s blocks, over the image rows of its blocks, in the expanded
    /// mask: each working column's runs times the factor (the bottom run less the rows the image's edge cuts off),
    /// once for every image column of its block.
    static func runs(ofExpanded working: LabelMask, resolution: WorkingResolution, objectClass: UInt8,
                     workingRect: PixelRect) -> [[Int32]] {
        precondition(working.width == resolution.workingWidth && working.height == resolution.workingHeight,
                     "ColumnRuns: the working mask has another size")
        let small = runs(of: working, objectClass: objectClass, rect: workingRect)
        let f = resolution.factor
        let image = resolution.imageRect(workingRect)
        let clip = Int32(workingRect.maxY * f - image.maxY)
        var out: [[Int32]] = []
        out.reserveCapacity(image.width)
        for (offset, column) in small.enumerated() {
            var scaled = column.map { $0 * Int32(f) }
            scaled[scaled.count - 1] -= clip
            let x0 = (workingRect.x + offset) * f
            for _ in x0..<min(resolution.width, x0 + f) { out.append(scaled) }
        }
        return out
    }

    /// The whole mask's COCO RLE (the same string `COCORLE(mask:objectClass:)` writes).
    public var rle: COCORLE {
        COCORLE(size: [height, width], counts: COCORLE.compress(Self.merge(columns)))
    }

    /// The COCO RLE of the whole-height strip of columns `columns` (size `[height, columns.count]`).
    public func rle(columns: Range<Int>) -> COCORLE {
        COCORLE(size: [height, columns.count], counts: COCORLE.compress(Self.merge(Array(self.columns[columns]))))
    }

    /// The COCO RLE of the sub-mask inside `rect` (size `[rect.height, rect.width]`) for pixels of `objectClass`;
    /// `rect` must be non-empty and inside the mask.
    public static func rle(of mask: LabelMask, objectClass: UInt8, rect: PixelRect) -> COCORLE {
        COCORLE(size: [rect.height, rect.width],
                counts: COCORLE.compress(merge(runs(of: mask, objectClass: objectClass, rect: rect))))
    }

    /// The uncompressed COCO counts of consecutive columns' runs: a column's first run joins the previous column's
    /// last when both are of the same kind.
    static func merge(_ columns: [[Int32]]) -> [Int] {
        var out: [Int] = [0]
        out.reserveCapacity(columns.count * 3)
        for column in columns {
            for (index, run) in column.enumerated() where run > 0 {
                // Index parity gives the run's kind (even: not of the class); so does the output's last run.
                if (index & 1) == ((out.count - 1) & 1) {
                    out[out.count - 1] += Int(run)
                } else {
                    out.append(Int(run))
                }
            }
        }
        return out
    }

    /// The runs of the columns of `rect`, over its rows. Walks the rectangle row by row: a row equal to the one above
    /// (compared eight bytes at a time) adds nothing, a differing byte whose class membership changes ends a run.
    static func runs(of mask: LabelMask, objectClass: UInt8, rect: PixelRect) -> [[Int32]] {
        let w = mask.width, n = rect.width
        precondition(rect.x >= 0 && rect.y >= 0 && rect.x + n <= w && rect.y + rect.height <= mask.height,
                     "ColumnRuns: rectangle outside the mask")
        var columns = [[Int32]](repeating: [], count: n)
        var start = [Int32](repeating: 0, count: n)
        mask.labels.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress!
            let top = base + rect.y * w + rect.x
            for i in 0..<n where top[i] == objectClass { columns[i].append(0) }
            for y in 1..<max(1, rect.height) {
                let row = top + y * w, above = row - w
                var i = 0
                while i < n {
                    if i + 8 <= n {
                        let a = UnsafeRawPointer(row + i).loadUnaligned(as: UInt64.self)
                        let b = UnsafeRawPointer(above + i).loadUnaligned(as: UInt64.self)
                        if a == b {
                            i += 8
                            continue
                        }
                    }
                    let end = min(n, i + 8)
                    while i < end {
                        if row[i] != above[i], (row[i] == objectClass) != (above[i] == objectClass) {
                            columns[i].append(Int32(y) - start[i])
                            start[i] = Int32(y)
                        }
                        i += 1
                    }
                }
            }
        }
        let end = Int32(rect.height)
        for i in 0..<n { columns[i].append(end - start[i]) }
        return columns
    }
}
