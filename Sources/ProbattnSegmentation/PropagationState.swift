import Foundation
import ProbattnImaging
import ProbattnStages

/// What one propagation of an image leaves for the next one of the same image, so that the next click recomputes the
/// mask only where it can change (`BeliefPropagator`'s incremental path). Returned in `SegmentationResult.state`;
/// the caller (the session core) keeps the newest one per session and passes it back as `previous`. It describes
/// itself (the clicks and fixed tokens it was computed for), so any state of the same prepared image is a valid
/// `previous`: the propagator diffs the clicks and the token posteriors against it. A state that does not fit
/// (another image size, class count, token count, fixed tokens or propagator setting) is ignored and the mask
/// computed from scratch.
public struct PropagationState: PropagatorState {
    /// The clicks in force it was computed for, in the propagator's order.
    public let clicks: [Click]
    let fixed: FixedTokens
    let width: Int, height: Int, tokenCount: Int, classCount: Int
    /// The propagator settings the pixel work depends on.
    let settings: BeliefPropagator.PixelSettings
    /// `tokens × K`: every token's class distribution after the clicked tokens took their values (step 2's output).
    public let probabilities: [Float]
    /// The full-resolution label mask it produced.
    public let labels: [UInt8]
    /// Step 1's clicked tokens and, per token, the positions in `clicks` of the clicks reaching it.
    let clicked: BeliefPropagator.ClickedTokens
    let reaching: [Int32: [Int]]
    /// The clicks by the cells their discs touch.
    let clickIndex: ClickIndex
    /// Per-image facts computed once (token bounding boxes, contrast sums).
    let geometry: TokenGeometry
    /// With the previous-posterior prior on: the step-2 settings under which `probabilities` are that prior's
    /// recursion over `clicks` (so the next click may start from them); nil with the prior off.
    let chain: BeliefPropagator.ValueSettings?
    /// With the prior on: the recursion's token posteriors for the most recent prefixes of `clicks` (by prefix
    /// length, below `clicks.count`; at most `BeliefPropagator.keptPrefixes` of them), so that an undo of the newest
    /// clicks starts from them instead of replaying the list.
    let prefixPosteriors: [Int: [Float]]

    /// Bytes held (the label mask dominates: one byte per pixel), for the cache's memory budget.
    public var memoryBytes: Int {
        labels.count + probabilities.count * 4 + clicks.count * 24 + clicked.classOf.count * 4
            + prefixPosteriors.values.reduce(0) { $0 + $1.count * 4 + 16 }
            + reaching.count * 48 + clicked.shares.count * (16 + 4 * classCount) + clickIndex.memoryBytes
            + geometry.memoryBytes
    }
}

/// The clicks of a list by the square cells of `cellSize` pixels their discs (bounding boxes) touch, so the clicks
/// near a rectangle are found without walking the list. Built from scratch in O(clicks) and extended by appended
/// clicks in O(new clicks).
struct ClickIndex: Sendable {
    static let cellSize = 32
    let radius: Int
    let columns: Int
    /// cell → positions in the click list, ascending.
    private(set) var cells: [Int: [Int]] = [:]

    init(radius: Int, width: Int) {
        self.radius = max(0, radius)
        columns = (width + Self.cellSize - 1) / Self.cellSize
    }

    mutating func insert(_ click: Click, at position: Int) {
        let s = Self.cellSize
        for cy in max(0, click.y - radius) / s...(click.y + radius) / s {
            for cx in max(0, click.x - radius) / s...min(columns * s - 1, click.x + radius) / s {
                cells[cy * columns + cx, default: []].append(position)
            }
        }
    }

    /// The positions of the clicks whose disc bounding box may touch `rect`, ascending.
    func positions(touching rect: PixelRect) -> [Int] {
        guard !rect.isEmpty else { return [] }
        let s = Self.cellSize
        let r = rect.expanded(by: radius, clippedTo: columns * s, Int.max / 2)
        var found = Set<Int>()
        for cy in r.y / s...(r.maxY - 1) / s {
            for cx in r.x / s...(r.maxX - 1) / s {
                if let list = cells[cy * columns + cx] { found.formUnion(list) }
            }
        }
        return found.sorted()
    }

    var memoryBytes: Int { cells.reduce(0) { $0 + 48 + $1.value.count * 8 } }
}

/// Facts about an encoded image that no click changes, computed once per session by the first propagation.
struct TokenGeometry: Sendable {
    /// `tokens × 4`: x0, y0, x1, y1 (exclusive) of every token's footprint.
    let boxes: [Int32]
    /// Per token: the sum of |c_p − c_q|² over its pixels' right and down neighbour pairs, and how many pairs
    /// (`BoundaryRefinement`'s contrast normaliser is their mean over the band, which is a union of footprints).
    let contrastSums: [Double]
    let contrastCounts: [Int32]

    var memoryBytes: Int { boxes.count * 4 + contrastSums.count * 8 + contrastCounts.count * 4 }

    init(encoded: EncodedImage) {
        let image = encoded.image, w = image.width, h = image.height, tokens = encoded.tokenCount
        var boxes = [Int32](repeating: 0, count: tokens * 4)
        for t in 0..<tokens {
            boxes[4 * t] = Int32(w); boxes[4 * t + 1] = Int32(h)
        }
        var sums = [Double](repeating: 0, count: tokens)
        var counts = [Int32](repeating: 0, count: tokens)
        let table = QuantisedLab.table
        table.withUnsafeBufferPointer { lab in
        image.pixels.withUnsafeBufferPointer { px in
        encoded.tokenOfPixel.withUnsafeBufferPointer { tokenOf in
            @inline(__always) func colour(_ i: Int) -> Int { QuantisedLab.index(px[3 * i], px[3 * i + 1], px[3 * i + 2]) }
            for y in 0..<h {
                for x in 0..<w {
                    let i = y * w + x, t = Int(tokenOf[i])
                    boxes[4 * t] = min(boxes[4 * t], Int32(x)); boxes[4 * t + 1] = min(boxes[4 * t + 1], Int32(y))
                    boxes[4 * t + 2] = max(boxes[4 * t + 2], Int32(x + 1))
                    boxes[4 * t + 3] = max(boxes[4 * t + 3], Int32(y + 1))
                    let q = colour(i)
                    if x + 1 < w {
                        let r = colour(i + 1)
                        let dl = lab[q] - lab[r], da = lab[q + 1] - lab[r + 1], db = lab[q + 2] - lab[r + 2]
                        sums[t] += Double(dl * dl + da * da + db * db)
                        counts[t] += 1
                    }
                    if y + 1 < h {
                        let r = colour(i + w)
                        let dl = lab[q] - lab[r], da = lab[q + 1] - lab[r + 1], db = lab[q + 2] - lab[r + 2]
                        sums[t] += Double(dl * dl + da * da + db * db)
                        counts[t] += 1
                    }
                }
            }
        }
        }
        }
        self.boxes = boxes
        contrastSums = sums
        contrastCounts = counts
    }

    /// The footprint bounding box of token `t`.
    func box(_ t: Int) -> PixelRect {
        let x0 = Int(boxes[4 * t]), y0 = Int(boxes[4 * t + 1])
        return PixelRect(x: x0, y: y0, width: Int(boxes[4 * t + 2]) - x0, height: Int(boxes[4 * t + 3]) - y0)
    }

    /// 1 / (2 ⟨|c_p − c_q|²⟩) over the footprints of the tokens `inBand` marks (ascending token order, so every
    /// caller gets the same bits): the refinement's contrast normaliser; 0 without contrast.
    func contrastScale(inBand: [Bool]) -> Float {
        var sum: Double = 0, count = 0
        for t in inBand.indices where inBand[t] {
            sum += contrastSums[t]
            count += Int(contrastCounts[t])
        }
        let mean = count > 0 ? Float(sum / Double(count)) : 0
        return mean > 0 ? 1 / (2 * mean) : 0
    }
}
