import Foundation
import ProbattnImaging
import Testing

/// `ColumnRuns` and `MaskDifference` against the whole-mask encoder `COCORLE(mask:objectClass:)` and a pixel-by-pixel
/// comparison, on random class maps and random rectangular edits.
@Suite struct ColumnRunsTests {
    /// A deterministic generator (SplitMix64), so a failure replays.
    struct Random {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
    }

    /// Blobs of `classes` classes on a background of the last class: a map with long runs, like a segmentation.
    static func blobs(width: Int, height: Int, classes: Int, count: Int, random: inout Random) -> LabelMask {
        var mask = LabelMask(width: width, height: height, filledWith: UInt8(classes - 1))
        for _ in 0..<count { paint(&mask, classes: classes, random: &random) }
        return mask
    }

    /// Paints one random ellipse of a random class.
    static func paint(_ mask: inout LabelMask, classes: Int, random: inout Random) {
        let cx = random.next(mask.width), cy = random.next(mask.height)
        let rx = 1 + random.next(max(1, mask.width / 3)), ry = 1 + random.next(max(1, mask.height / 3))
        let label = UInt8(random.next(classes))
        for y in max(0, cy - ry)..<min(mask.height, cy + ry + 1) {
            for x in max(0, cx - rx)..<min(mask.width, cx + rx + 1) {
                let dx = Double(x - cx) / Double(rx), dy = Double(y - cy) / Double(ry)
                if dx * dx + dy * dy <= 1 { mask.labels[y * mask.width + x] = label }
            }
        }
    }

    static func bruteRectangle(_ a: LabelMask, _ b: LabelMask) -> PixelRect {
        var x0 = Int.max, y0 = Int.max, x1 = -1, y1 = -1
        for y in 0..<a.height {
            for x in 0..<a.width where a.labels[y * a.width + x] != b.labels[y * a.width + x] {
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
            }
        }
        return x1 < 0 ? .empty : PixelRect(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    }

    static func crop(_ mask: LabelMask, _ rect: PixelRect) -> LabelMask {
        var labels: [UInt8] = []
        for y in rect.y..<(rect.y + rect.height) {
            labels += mask.labels[(y * mask.width + rect.x)..<(y * mask.width + rect.x + rect.width)]
        }
        return LabelMask(width: rect.width, height: rect.height, labels: labels)
    }

    @Test(arguments: [(1, 1), (7, 1), (1, 9), (13, 11), (64, 48), (203, 97)])
    func wholeMaskRLEEqualsTheDirectEncoder(size: (Int, Int)) throws {
        var random = Random(state: UInt64(size.0 * 1000 + size.1))
        for classes in [2, 4] {
            let mask = Self.blobs(width: size.0, height: size.1, classes: classes, count: 6, random: &random)
            for objectClass in 0..<classes {
                let runs = ColumnRuns(mask: mask, objectClass: UInt8(objectClass))
                #expect(runs.rle == COCORLE(mask: mask, objectClass: UInt8(objectClass)))
            }
        }
        // Noise: a run on nearly every pixel, and a map whose every pixel is of the class.
        var noise = LabelMask(width: size.0, height: size.1, filledWith: 0)
        for i in noise.labels.indices { noise.labels[i] = UInt8(random.next(3)) }
        #expect(ColumnRuns(mask: noise, objectClass: 1).rle == COCORLE(mask: noise, objectClass: 1))
        #expect(ColumnRuns(mask: noise, objectClass: 7).rle == COCORLE(mask: noise, objectClass: 7))
        let full = LabelMask(width: size.0, height: size.1, filledWith: 0)
        #expect(ColumnRuns(mask: full, objectClass: 0).rle == COCORLE(mask: full, objectClass: 0))
    }

    @Test func editsReencodeOnlyTheChangedColumnsAndGiveTheSameRLE() throws {
        var random = Random(state: 42)
        let width = 157, height = 83
        for classes in [2, 3] {
            var mask = Self.blobs(width: width, height: height, classes: classes, count: 4, random: &random)
            var runs = (0..<classes).map { ColumnRuns(mask: mask, objectClass: UInt8($0)) }
            for step in 0..<60 {
                let previous = mask
                if step % 10 != 9 { Self.paint(&mask, classes: classes, random: &random) }  // every 10th: no change
                let rect = MaskDifference.changedRectangle(previous: previous, current: mask)
                #expect(rect == Self.bruteRectangle(previous, mask), "step \(step)")
                runs = runs.map { $0.updated(with: mask, columnsOf: rect) }
                for objectClass in 0..<classes {
                    #expect(runs[objectClass].rle == COCORLE(mask: mask, objectClass: UInt8(objectClass)),
                            "step \(step), class \(objectClass)")
                    #expect(runs[objectClass] == ColumnRuns(mask: mask, objectClass: UInt8(objectClass)))
                }
                if !rect.isEmpty {
                    // The whole-height strip of the changed columns, from the runs alone.
                    let strip = PixelRect(x: rect.x, y: 0, width: rect.width, height: height)
                    #expect(runs[0].rle(columns: rect.x..<(rect.x + rect.width))
                            == COCORLE(mask: Self.crop(mask, strip), objectClass: 0))
                    let sub = ColumnRuns.rle(of: mask, objectClass: 0, rect: rect)
                    #expect(sub == COCORLE(mask: Self.crop(mask, rect), objectClass: 0))
                    // Writing the rectangle's content into the previous mask gives the new mask.
                    var rebuilt = previous
                    let bits = try sub.decodeBinary()
                    for y in 0..<rect.height {
                        for x in 0..<rect.width {
                            let new = mask.labels[(rect.y + y) * width + rect.x + x]
                            #expect(bits[y * rect.width + x] == (new == 0))
                            rebuilt.labels[(rect.y + y) * width + rect.x + x] = bits[y * rect.width + x] ? 0 : 1
                        }
                    }
                    if classes == 2 { #expect(rebuilt == mask, "step \(step)") }
                }
            }
        }
    }

    @Test func aSinglePixelChangeIsAOneByOneRectangle() {
        let before = LabelMask(width: 40, height: 30, filledWith: 1)
        var after = before
        after.labels[17 * 40 + 33] = 0
        #expect(MaskDifference.changedRectangle(previous: before, current: after)
                == PixelRect(x: 33, y: 17, width: 1, height: 1))
        #expect(MaskDifference.changedRectangle(previous: before, current: before).isEmpty)
    }

    /// The runs of an expanded mask computed from its working mask equal the runs of the expanded mask itself, for
    /// several factors, sizes the factor does not divide, and random changes of random rectangles.
    @Test(arguments: [(2, 37, 23), (3, 31, 29), (7, 64, 50)])
    func runsOfAnExpandedMaskComeFromItsWorkingMask(factor: Int, width: Int, height: Int) throws {
        let resolution = WorkingResolution(width: width, height: height, factor: factor)
        let ww = resolution.workingWidth, wh = resolution.workingHeight
        var state: UInt64 = UInt64(factor * 1000 + width)
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        var working = LabelMask(width: ww, height: wh, filledWith: 1)
        var runs = ColumnRuns(mask: resolution.expand(working), objectClass: 0)
        for step in 0..<20 {
            let x = next(ww), y = next(wh)
            let rect = PixelRect(x: x, y: y, width: 1 + next(ww - x), height: 1 + next(wh - y))
            for yy in rect.y..<rect.maxY {
                for xx in rect.x..<rect.maxX { working.labels[yy * ww + xx] = UInt8(next(2)) }
            }
            let expanded = resolution.expand(working)
            runs = runs.updated(withExpanded: working, resolution: resolution, columnsOf: rect)
            #expect(runs == ColumnRuns(mask: expanded, objectClass: 0), "factor \(factor), step \(step)")
            let image = resolution.imageRect(rect)
            #expect(ColumnRuns.rle(ofExpanded: working, resolution: resolution, objectClass: 0, workingRect: rect)
                    == ColumnRuns.rle(of: expanded, objectClass: 0, rect: image), "factor \(factor), step \(step)")
        }
    }
}
