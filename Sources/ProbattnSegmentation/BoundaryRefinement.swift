import Foundation
import ProbattnCore
import ProbattnImaging
import ProbattnStages

/// Pixel-level refinement of a mask in the band where the token classes change (the propagator's
/// `refinement: graph_cut`), in the manner of Lazy Snapping's boundary editing: tokens are coarse, so near a class
/// boundary every pixel of the band gets its own label by minimising
///
///     E(l) = Σ_p −log max(P_p(l_p), floor)  +  λ Σ_{p~q} [l_p ≠ l_q] · exp(−|c_p − c_q|² / (2 ⟨|c_p − c_q|²⟩)) / dist(p, q)
///
/// over the band's pixels within `reach` pixels of a label change, with every other pixel (and every pixel of a
/// click disc) fixed at its label.
/// `P_p` is the pixel's class distribution from the joint-bilateral mix of its neighbouring tokens, `c` the CIELAB
/// colour, `p ~ q` the 8-neighbourhood, and the contrast normaliser ⟨·⟩ the mean over the band (GrabCut's choice), so
/// the cut follows colour edges and does not cross flat regions. Two classes: one minimum cut. More classes: one
/// cycle of α-expansion moves (each a minimum cut over "keep or take α"). One approximation makes it affordable per
/// click, measured not to cost clicks (docs/RESULTS.md): flat blocks of pixels move as one node. A large two-class cut
/// is found in two halves side by side (within the call's budget) and merged into the exact cut (`splitMove`).
///
/// Called by `BeliefPropagator.propagate` once per click, after the click discs are painted, on the whole image or on
/// a crop around the rectangle the click can change (with the whole band's contrast normaliser); stateless.
struct BoundaryRefinement {
    /// λ, the weight of the contrast-sensitive smoothness term against the class log-probabilities.
    var smoothness: Float
    /// Lower bound on a pixel's class probability inside the log (bounds the unary cost at −log floor).
    var probabilityFloor: Float = 1e-3
    /// Only band pixels within this many pixels (8-connected steps) of a label change are relabelled; the rest of
    /// the band keeps its labels. Bounds the cut's size and so its cost.
    var reach: Int = 6
    /// Square blocks of this many pixels a side, largest first, move as one graph node when they are flat (see
    /// `flatBlockThreshold`); the cut then runs between blocks in flat regions, where no colour edge pins it down
    /// anyway, and between single pixels across edges. Fewer, less tightly coupled nodes make the cut about twice
    /// as fast (docs/RESULTS.md).
    var flatBlockSizes = [4, 2]
    /// A block is flat when every pair of 8-neighbours inside it has a contrast factor exp(−|Δc|²/(2⟨|Δc|²⟩)) of at
    /// least this; nil: every pixel is its own node (the exact minimum of the energy).
    var flatBlockThreshold: Float? = 0.5
    /// Two-class moves with at least this many graph nodes cut their graph in two halves whose flows are found side
    /// by side and then merged (`splitMove`), whatever the budget (which decides only whether the halves run on one
    /// thread or two); the labels are those of one cut either way.
    var splitNodes = 4000
    /// Band pixels per chunk of the searches that run within the call's budget (the pixels within reach, the
    /// neighbour weights): the chunk count depends on the band alone, and the result on neither.
    var chunkPixels = 16_384

    /// Relabels the pixels of `band` (indices into the image) in `labels`.
    /// - Parameters:
    ///   - probabilities: `band.count × classCount`, the class distribution of every band pixel (row i for band[i]).
    ///   - fixedInBand: true for band pixels that must keep their label (click discs), indexed like `band`.
    ///   - colours: `band.count × 3`, the CIELAB colour of every band pixel (as `QuantisedLab` gives it), when the
    ///     caller has it at hand; computed here otherwise.
    ///   - contrast: the contrast normaliser 1 / (2 ⟨|c_p − c_q|²⟩) when the caller computed it over a wider band
    ///     (the propagator, which refines a crop of the image, passes the whole band's); computed over `band` otherwise.
    func refine(labels: inout [UInt8], image: RGBImage, band wideBand: [Int32], probabilities wideProbabilities: [Float],
                fixedInBand wideFixed: [Bool], colours wideColours: [Float]? = nil, classCount k: Int,
                budget: ComputeBudget = .single, contrast givenContrast: Float? = nil) {
        guard k >= 2, smoothness > 0, !wideBand.isEmpty else { return }
        let w = image.width, h = image.height
        let wideLab = wideColours?.count == wideBand.count * 3 ? wideColours! : Self.colours(of: wideBand, in: image)
        // For every pixel, its position in the band (-1 outside it).
        var bandIndex = [Int32](repeating: -1, count: w * h)
        for (i, p) in wideBand.enumerated() { bandIndex[Int(p)] = Int32(i) }
        let near = withinReach(reach, ofLabelChangeIn: labels, width: w, height: h, band: wideBand,
                               bandIndex: bandIndex, budget: budget)
        let contrast = givenContrast ?? contrastScale(image: image, band: wideBand, bandIndex: bandIndex, lab: wideLab)
        // The band from here on: the pixels within reach, with their fixedness, colours and unary costs.
        let band = near.map { wideBand[$0] }
        let free = near.map { !wideFixed[$0] }
        let floor = max(probabilityFloor, Float.leastNormalMagnitude)
        var lab = [Float](repeating: 0, count: near.count * 3)
        var unary = [Float](repeating: 0, count: near.count * k)
        lab.withUnsafeMutableBufferPointer { lab in
        unary.withUnsafeMutableBufferPointer { unary in
        wideLab.withUnsafeBufferPointer { wideLab in
        wideProbabilities.withUnsafeBufferPointer { wideProbabilities in
        near.withUnsafeBufferPointer { near in
            let chunks = max(1, near.count / chunkPixels)
            budget.forEachChunk(count: chunks) { chunk in
                for j in ComputeBudget.range(ofChunk: chunk, count: chunks, total: near.count) {
                    let i = near[j]
                    for c in 0..<3 { lab[j * 3 + c] = wideLab[i * 3 + c] }
                    for c in 0..<k { unary[j * k + c] = -logf(max(wideProbabilities[i * k + c], floor)) }
                }
            }
        }
        }
        }
        }
        }
        for p in wideBand { bandIndex[Int(p)] = -1 }
        for (i, p) in band.enumerated() { bandIndex[Int(p)] = Int32(i) }
        let weights = neighbourWeights(image: image, band: band, bandIndex: bandIndex, lab: lab, contrast: contrast,
                                       budget: budget)

        let context = MoveContext(width: w, height: h, band: band, bandIndex: bandIndex, weights: weights,
                                  unary: unary, classCount: k)
        let sizes = flatBlockThreshold == nil ? [] : flatBlockSizes
        let threshold = flatBlockThreshold ?? 0, lambda = smoothness
        runMoves(context, labels: &labels, budget: budget) { sourceOf, _ in
            context.blockNodes(sizes: sizes, isFree: { free[$0] }, mergeable: { members, size in
                // In an expansion move a node's pixels must share their source label.
                (k == 2 || members.allSatisfy { sourceOf(band[$0]) == sourceOf(band[members[0]]) })
                    && context.isFlat(members, size: size, threshold: threshold, smoothness: lambda)
            })
        }
    }

    /// Two classes: one move in which each node chooses between class 0 (source side) and class 1 (sink side), an
    /// exact minimum cut. More classes: one cycle of α-expansion moves. `nodes` gives the graph nodes of a move
    /// from its source labels and α. A move of at least `splitNodes` nodes is cut in two parts (`splitMove`).
    private func runMoves(_ context: MoveContext, labels: inout [UInt8], budget: ComputeBudget,
                          nodes: (_ sourceLabel: (Int32) -> UInt8, _ alpha: UInt8) -> (node: [Int32], count: Int)) {
        // One move: cut in two parts when it is large.
        func cut(_ node: [Int32], _ count: Int, _ sourceLabel: (Int32) -> UInt8, _ sinkLabel: UInt8) {
            if count >= splitNodes {
                splitMove(context, labels: &labels, node: node, nodeCount: count, sourceLabel: sourceLabel,
                          sinkLabel: sinkLabel, budget: budget)
            } else {
                context.move(labels: &labels, node: node, nodeCount: count, sourceLabel: sourceLabel,
                             sinkLabel: sinkLabel)
            }
        }
        if context.classCount == 2 {
            let sourceLabel: (Int32) -> UInt8 = { _ in 0 }
            let (node, count) = nodes(sourceLabel, 1)
            cut(node, count, sourceLabel, 1)
        } else {
            for alpha in 0..<UInt8(context.classCount) {
                let current = labels
                let sourceLabel: (Int32) -> UInt8 = { current[Int($0)] }
                // A pixel already labelled α keeps it in this move.
                let (all, count) = nodes(sourceLabel, alpha)
                let (node, left) = Self.restrict(all, count: count) { current[Int(context.band[$0])] != alpha }
                cut(node, left, sourceLabel, alpha)
            }
        }
    }

    /// A move of a large band (the two-class move, or one α-expansion move), its graph cut in two parts: the nodes
    /// above a row that is a multiple of 4 (so no block straddles it) near the middle of the move's own band pixels
    /// (an α-expansion move leaves out the pixels already labelled α) and those below, numbered in that order, whose
    /// flows are found side by side within `budget` and then merged into the maximum flow of the whole graph
    /// (`MaxFlowGraph.maximumFlow(parts:budget:)`): the exact minimum cut, the same labels as one cut of the whole
    /// band, with most of the search on two cores when the budget gives two.
    private func splitMove(_ context: MoveContext, labels: inout [UInt8], node: [Int32], nodeCount: Int,
                           sourceLabel: (Int32) -> UInt8, sinkLabel: UInt8, budget: ComputeBudget) {
        let w = context.width, band = context.band
        // The row of the move's middle band pixel (band positions in the graph, counted in band order).
        var half = node.reduce(0) { $1 >= 0 ? $0 + 1 : $0 } / 2
        var middlePixel = band[band.count / 2]
        for i in band.indices where node[i] >= 0 {
            if half == 0 { middlePixel = band[i]; break }
            half -= 1
        }
        let middle = (Int(middlePixel) / w) / 4 * 4
        let row = { (i: Int) -> Int in Int(band[i]) / w }
        var renumbered = [Int32](repeating: -1, count: nodeCount)
        var next: Int32 = 0
        var upperCount = 0
        for upper in [true, false] {
            for i in band.indices where node[i] >= 0 && (row(i) < middle) == upper && renumbered[Int(node[i])] < 0 {
                renumbered[Int(node[i])] = next; next += 1
            }
            if upper { upperCount = Int(next) }
        }
        let parts = node.map { $0 >= 0 ? renumbered[Int($0)] : -1 }
        context.move(labels: &labels, node: parts, nodeCount: nodeCount, sourceLabel: sourceLabel,
                     sinkLabel: sinkLabel, parts: upperCount, budget: budget)
    }

    /// `node` with only the band pixels accepted by `keep` left in the graph (the others -1), renumbered densely.
    private static func restrict(_ node: [Int32], count: Int, keep: (Int) -> Bool) -> (node: [Int32], count: Int) {
        var map = [Int32](repeating: -1, count: count)
        var restricted = [Int32](repeating: -1, count: node.count)
        var next: Int32 = 0
        for i in node.indices where node[i] >= 0 && keep(i) {
            let n = Int(node[i])
            if map[n] < 0 { map[n] = next; next += 1 }
            restricted[i] = map[n]
        }
        return (restricted, Int(next))
    }

    /// The positions in `band` of its pixels within `reach` 8-connected steps of a label change (a pixel with a
    /// 4-neighbour of another label), by breadth-first search inside the band, in increasing order. `bandIndex`
    /// gives every pixel's position in `band` (-1 outside it).
    ///
    /// A band in raster order is searched in chunks within `budget`: each chunk of band positions searches the
    /// window of band pixels within `reach` rows of its own (a path of at most `reach` steps never leaves it, so its
    /// own pixels get the distances of a search of the whole band) and keeps its own pixels; the chunks are joined in
    /// order, so the result is the same for every budget.
    private func withinReach(_ reach: Int, ofLabelChangeIn labels: [UInt8], width w: Int, height h: Int,
                             band: [Int32], bandIndex: [Int32], budget: ComputeBudget) -> [Int] {
        let ascending = zip(band, band.dropFirst()).allSatisfy { $0 < $1 }
        let chunks = ascending ? max(1, band.count / chunkPixels) : 1
        let offsets = Self.neighbours
        let parts = budget.mapChunks(count: chunks) { chunk -> [Int] in
            let own = ComputeBudget.range(ofChunk: chunk, count: chunks, total: band.count)
            guard !own.isEmpty else { return [] }
            var lo = own.lowerBound, hi = own.upperBound
            if chunks > 1 {
                let firstRow = Int(band[own.lowerBound]) / w - reach, lastRow = Int(band[own.upperBound - 1]) / w + reach
                while lo > 0 && Int(band[lo - 1]) / w >= firstRow { lo -= 1 }
                while hi < band.count && Int(band[hi]) / w <= lastRow { hi += 1 }
            } else {
                lo = 0; hi = band.count
            }
            var frontier: [Int] = []
            var visited = [Bool](repeating: false, count: hi - lo)
            labels.withUnsafeBufferPointer { labels in
            band.withUnsafeBufferPointer { band in
            bandIndex.withUnsafeBufferPointer { bandIndex in
            visited.withUnsafeMutableBufferPointer { visited in
            offsets.withUnsafeBufferPointer { offsets in
                for i in lo..<hi {
                    let pi = Int(band[i]), x = pi % w, y = pi / w, label = labels[pi]
                    let change = (x + 1 < w && labels[pi + 1] != label) || (y + 1 < h && labels[pi + w] != label)
                        || (x > 0 && labels[pi - 1] != label) || (y > 0 && labels[pi - w] != label)
                    if change { visited[i - lo] = true; frontier.append(i) }
                }
                var step = 0
                var next: [Int] = []
                while !frontier.isEmpty {
                    guard step < reach else { break }
                    step += 1
                    next.removeAll(keepingCapacity: true)
                    for i in frontier {
                        let pi = Int(band[i]), x = pi % w, y = pi / w
                        for n in offsets {
                            let xx = x + n.dx, yy = y + n.dy
                            guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                            let j = Int(bandIndex[yy * w + xx])
                            if j >= lo, j < hi, !visited[j - lo] { visited[j - lo] = true; next.append(j) }
                        }
                    }
                    swap(&frontier, &next)
                }
            }
            }
            }
            }
            }
            // Every visited pixel of the chunk's own is within reach; the band's order is kept.
            var out: [Int] = []
            out.reserveCapacity(own.count)
            for i in own where visited[i - lo] { out.append(i) }
            return out
        }
        return parts.count == 1 ? parts[0] : Array(parts.joined())
    }

    /// The 8-neighbourhood as (dx, dy, 1/distance), in the order of `neighbourWeights`' rows.
    static let neighbours: [(dx: Int, dy: Int, inverseDistance: Float)] = [
        (-1, -1, Float(0.5).squareRoot()), (0, -1, 1), (1, -1, Float(0.5).squareRoot()), (-1, 0, 1),
        (1, 0, 1), (-1, 1, Float(0.5).squareRoot()), (0, 1, 1), (1, 1, Float(0.5).squareRoot()),
    ]

    /// The CIELAB colour (`QuantisedLab`) of every pixel of `band`, `band.count × 3`.
    static func colours(of band: [Int32], in image: RGBImage) -> [Float] {
        var lab = [Float](repeating: 0, count: band.count * 3)
        let table = QuantisedLab.table
        for (i, p) in band.enumerated() {
            let pi = Int(p)
            let q = QuantisedLab.index(image.pixels[3 * pi], image.pixels[3 * pi + 1], image.pixels[3 * pi + 2])
            lab[3 * i] = table[q]; lab[3 * i + 1] = table[q + 1]; lab[3 * i + 2] = table[q + 2]
        }
        return lab
    }

    /// |c_p − c_q|² in CIELAB between band pixel `i` (colours in `lab`) and pixel `q`, whose colour comes from `lab`
    /// when `bandIndex` puts it in the band and from the quantised table otherwise.
    @inline(__always)
    private static func squaredDistance(_ i: Int, _ q: Int, image: RGBImage, bandIndex: [Int32], lab: [Float],
                                        table: [Float]) -> Float {
        let j = Int(bandIndex[q])
        let l2, a2, b2: Float
        if j >= 0 {
            (l2, a2, b2) = (lab[3 * j], lab[3 * j + 1], lab[3 * j + 2])
        } else {
            let t = QuantisedLab.index(image.pixels[3 * q], image.pixels[3 * q + 1], image.pixels[3 * q + 2])
            (l2, a2, b2) = (table[t], table[t + 1], table[t + 2])
        }
        let dl = lab[3 * i] - l2, da = lab[3 * i + 1] - a2, db = lab[3 * i + 2] - b2
        return dl * dl + da * da + db * db
    }

    /// 1 / (2 ⟨|c_p − c_q|²⟩), the mean over `band`'s right and down neighbour pairs (GrabCut's contrast
    /// normaliser); 0 for a band without contrast. `bandIndex` maps pixels to positions in `band`, whose colours
    /// `lab` holds; a neighbour off the band is looked up.
    private func contrastScale(image: RGBImage, band: [Int32], bandIndex: [Int32], lab: [Float]) -> Float {
        let w = image.width, h = image.height
        let table = QuantisedLab.table
        var sum: Double = 0
        var count = 0
        for (i, p) in band.enumerated() {
            let pi = Int(p), x = pi % w, y = pi / w
            if x + 1 < w {
                sum += Double(Self.squaredDistance(i, pi + 1, image: image, bandIndex: bandIndex, lab: lab, table: table))
                count += 1
            }
            if y + 1 < h {
                sum += Double(Self.squaredDistance(i, pi + w, image: image, bandIndex: bandIndex, lab: lab, table: table))
                count += 1
            }
        }
        let mean = count > 0 ? Float(sum / Double(count)) : 0
        return mean > 0 ? 1 / (2 * mean) : 0
    }

    /// `band.count × 8`: λ · exp(−contrast · |c_p − c_q|²) / dist(p, q) from every band pixel to each of its 8
    /// neighbours (0 off the image). `bandIndex` gives every pixel's position in `band` (-1 outside it), whose
    /// colours `lab` holds: a pair inside the band is computed once, a neighbour off the band is looked up.
    /// Chunks of the band run within `budget`: a pair inside the band is written by its earlier pixel only (into
    /// both pixels' slots), so no two chunks write the same slot, and every weight has the same bits for every budget.
    func neighbourWeights(image: RGBImage, band: [Int32], bandIndex: [Int32], lab: [Float], contrast: Float,
                          budget: ComputeBudget = .single) -> [Float] {
        let w = image.width, h = image.height
        var weights = [Float](repeating: 0, count: band.count * 8)
        let exponential = NegativeExponential.table
        let table = QuantisedLab.table
        let offsets = Self.neighbours
        // Raw buffers throughout; each colour distance is computed as `squaredDistance` does, term by term.
        weights.withUnsafeMutableBufferPointer { weights in
        exponential.withUnsafeBufferPointer { exponential in
        table.withUnsafeBufferPointer { table in
        lab.withUnsafeBufferPointer { lab in
        bandIndex.withUnsafeBufferPointer { bandIndex in
        band.withUnsafeBufferPointer { band in
        image.pixels.withUnsafeBufferPointer { px in
        offsets.withUnsafeBufferPointer { offsets in
            let chunks = max(1, band.count / chunkPixels)
            budget.forEachChunk(count: chunks) { chunk in
            for i in ComputeBudget.range(ofChunk: chunk, count: chunks, total: band.count) {
                let pi = Int(band[i]), x = pi % w, y = pi / w
                let l1 = lab[3 * i], a1 = lab[3 * i + 1], b1 = lab[3 * i + 2]
                for slot in 0..<8 {
                    let neighbour = offsets[slot]
                    let xx = x + neighbour.dx, yy = y + neighbour.dy
                    guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                    let q = yy * w + xx
                    let j = Int(bandIndex[q])
                    // Slot 7 − s is the opposite direction of slot s: a pair inside the band is computed from its
                    // earlier pixel (forward slots 4–7) and mirrored.
                    if j >= 0, slot < 4 { continue }
                    let l2, a2, b2: Float
                    if j >= 0 {
                        (l2, a2, b2) = (lab[3 * j], lab[3 * j + 1], lab[3 * j + 2])
                    } else {
                        let t = QuantisedLab.index(px[3 * q], px[3 * q + 1], px[3 * q + 2])
                        (l2, a2, b2) = (table[t], table[t + 1], table[t + 2])
                    }
                    let dl = l1 - l2, da = a1 - a2, db = b1 - b2
                    let squared = dl * dl + da * da + db * db
                    let weight = smoothness * neighbour.inverseDistance
                        * NegativeExponential.value(contrast * squared, table: exponential)
                    weights[i * 8 + slot] = weight
                    if j >= 0 { weights[j * 8 + 7 - slot] = weight }
                }
            }
            }
        }
        }
        }
        }
        }
        }
        }
        }
        return weights
    }
}

/// One binary move of the refinement: every free band pixel takes either its `sourceLabel` or `sinkLabel`.
/// A graph node is either one free pixel or a flat square block of free pixels that move together.
private struct MoveContext {
    let width: Int, height: Int
    let band: [Int32]
    let bandIndex: [Int32]
    /// `band.count × 8`, see `BoundaryRefinement.neighbourWeights`.
    let weights: [Float]
    let unary: [Float]
    let classCount: Int

    /// The graph node of every band pixel when square blocks of pixels move together. For each size in `sizes`
    /// (largest first), every aligned block none of whose pixels has a node yet becomes one node when all its pixels
    /// are free band pixels (`isFree`) and `mergeable` accepts them (their positions in `band`, row by row, and the
    /// block's side). Every other free pixel is a node of its own; pixels that are not free get -1 (they keep their
    /// labels in this move).
    func blockNodes(sizes: [Int], isFree: (Int) -> Bool, mergeable: ([Int], Int) -> Bool)
        -> (node: [Int32], count: Int) {
        let w = width, h = height
        var node = [Int32](repeating: -1, count: band.count)
        var count = 0
        var members: [Int] = []
        for size in sizes {
            for p in band {
                let pi = Int(p), x = pi % w, y = pi / w
                // Visit each block once, from its top-left pixel.
                guard x % size == 0, y % size == 0, x + size <= w, y + size <= h else { continue }
                members.removeAll(keepingCapacity: true)
                var complete = true
                for dy in 0..<size {
                    for dx in 0..<size {
                        let i = Int(bandIndex[pi + dy * w + dx])
                        guard i >= 0, node[i] < 0, isFree(i) else { complete = false; break }
                        members.append(i)
                    }
                    if !complete { break }
                }
                guard complete, mergeable(members, size) else { continue }
                for i in members { node[i] = Int32(count) }
                count += 1
            }
        }
        for i in 0..<band.count where node[i] < 0 && isFree(i) { node[i] = Int32(count); count += 1 }
        return (node, count)
    }

    /// Whether a block of pixels (positions in `band`, row by row, `size` × `size`) is flat: every pair of
    /// 8-neighbours inside it has a contrast factor exp(−|Δc|²/(2⟨|Δc|²⟩)) of at least `threshold`, so no colour
    /// edge the cut could follow runs through the block.
    func isFlat(_ members: [Int], size: Int, threshold: Float, smoothness: Float) -> Bool {
        // From each pixel, its pairs toward → ↙ ↓ ↘ (slots 4–7 of `BoundaryRefinement.neighbours`) that stay inside.
        for r in 0..<size {
            for c in 0..<size {
                let i = members[r * size + c]
                for slot in 4...7 {
                    let n = BoundaryRefinement.neighbours[slot]
                    guard c + n.dx >= 0, c + n.dx < size, r + n.dy < size else { continue }
                    if weights[i * 8 + slot] < threshold * smoothness * n.inverseDistance { return false }
                }
            }
        }
        return true
    }

    /// Builds the graph of the move over `node` (a node per band pixel, -1 for a pixel that keeps its label), cuts
    /// it, and writes the chosen labels.
    /// `parts`: the nodes `0 ..< parts` and the rest are cut side by side within `budget` and then merged (see
    /// `MaxFlowGraph.maximumFlow(parts:budget:)`; the same labels as one cut), and their graph terms are gathered
    /// side by side too when the first part's pixels come first in the band; nil: one cut. Only for a two-class move
    /// (every node's source label the same, so every pair term is symmetric and touches only the slots of the pair's
    /// lower-numbered node).
    func move(labels: inout [UInt8], node: [Int32], nodeCount: Int, sourceLabel: (Int32) -> UInt8,
              sinkLabel alpha: UInt8, parts: Int? = nil, budget: ComputeBudget = .single) {
        guard nodeCount > 0 else { return }
        let w = width, h = height, k = classCount
        var source = [UInt8](repeating: 0, count: band.count)
        for (i, p) in band.enumerated() where node[i] >= 0 { source[i] = sourceLabel(p) }
        var graph = MaxFlowGraph(expectedNodes: nodeCount, expectedEdges: 4 * nodeCount)
        graph.addNodes(nodeCount)
        var sourceCapacity = [Float](repeating: 0, count: nodeCount)
        var sinkCapacity = [Float](repeating: 0, count: nodeCount)
        // Symmetric pair terms between two nodes are summed per node pair before they become an edge (a block
        // touches each neighbouring block through up to four pixel pairs), in 12 (neighbour, weight) slots per node:
        // enough for a pixel or a 2 × 2 block (at most 12 neighbouring nodes); a 4 × 4 block ringed by single pixels
        // (up to 20) puts the pairs beyond them straight into the graph as separate edges.
        let slots = 12
        var pairNeighbour = [Int32](repeating: -1, count: nodeCount * slots)
        var pairWeight = [Float](repeating: 0, count: nodeCount * slots)
        let neighbours = BoundaryRefinement.neighbours
        var asymmetric: [(n: Int, m: Int, capacity: Float)] = []
        band.withUnsafeBufferPointer { band in
        bandIndex.withUnsafeBufferPointer { bandIndex in
        weights.withUnsafeBufferPointer { weights in
        unary.withUnsafeBufferPointer { unary in
        node.withUnsafeBufferPointer { node in
        source.withUnsafeBufferPointer { source in
        labels.withUnsafeBufferPointer { labels in
        sourceCapacity.withUnsafeMutableBufferPointer { sourceCapacity in
        sinkCapacity.withUnsafeMutableBufferPointer { sinkCapacity in
        pairNeighbour.withUnsafeMutableBufferPointer { pairNeighbour in
        pairWeight.withUnsafeMutableBufferPointer { pairWeight in
          // The terms of the band pixels `range`: into their nodes' capacities and pair slots; the pairs that do not
          // fit the slots (and asymmetric pairs) are returned in band order.
          func pass(_ range: Range<Int>) -> [(n: Int, m: Int, capacity: Float)] {
            var asymmetric: [(n: Int, m: Int, capacity: Float)] = []
            for i in range where node[i] >= 0 {
                let n = Int(node[i])
                // On the source side the pixel takes source[i] and pays its unary cost through the sink edge.
                sinkCapacity[n] += unary[i * k + Int(source[i])]
                sourceCapacity[n] += unary[i * k + Int(alpha)]
                let pi = Int(band[i]), x = pi % w, y = pi / w
                for slot in 0..<8 {
                    let xx = x + neighbours[slot].dx, yy = y + neighbours[slot].dy
                    guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                    let q = yy * w + xx
                    let weight = weights[i * 8 + slot]
                    let j = Int(bandIndex[q])
                    if j >= 0, node[j] >= 0 {
                        let m = Int(node[j])
                        // Both move: count the pair once, from the lower pixel index; inside one node it never pays.
                        guard q > pi, m != n else { continue }
                        let a = source[i] != source[j] ? weight : 0      // both keep their source labels
                        let b = source[i] != alpha ? weight : 0          // p keeps, q takes α
                        let c = alpha != source[j] ? weight : 0          // p takes α, q keeps
                        // d = 0: both take α.
                        if a == 0, b == c {
                            let (low, high) = n < m ? (n, Int32(m)) : (m, Int32(n))
                            var s = low * slots
                            let end = s + slots
                            while s < end && pairNeighbour[s] != high && pairNeighbour[s] != -1 { s += 1 }
                            if s < end {
                                pairNeighbour[s] = high
                                pairWeight[s] += b
                            } else {
                                asymmetric.append((n, m, b)); asymmetric.append((m, n, b))   // slots full
                            }
                        } else {
                            // E = a + (c − a)·x_p − c·x_q + (b + c − a)·(1 − x_p)·x_q, with x = 1 on the sink side.
                            if c - a >= 0 { sourceCapacity[n] += c - a } else { sinkCapacity[n] += a - c }
                            sinkCapacity[m] += c
                            asymmetric.append((n, m, b + c - a))
                        }
                    } else {
                        // The neighbour keeps its label in this move: a unary term for p. (A fixed pixel, a band
                        // pixel already labelled α in an expansion move, or a pixel off the band.)
                        let fixedLabel = labels[q]
                        if source[i] != fixedLabel { sinkCapacity[n] += weight }
                        if alpha != fixedLabel { sourceCapacity[n] += weight }
                    }
                }
            }
            return asymmetric
          }
          // In parts (the upper part's nodes numbered first, its pixels first in the band): a pair is written by its
          // earlier pixel into the slots of its lower-numbered node, both of that pixel's part, so the parts write
          // disjoint nodes, and their lists joined in order are the one pass's list: the same graph.
          let split = parts.flatMap { parts in node.firstIndex { $0 >= Int32(parts) } } ?? band.count
          if let parts, split < band.count, node[..<split].allSatisfy({ $0 < Int32(parts) }),
             node[split...].allSatisfy({ $0 < 0 || $0 >= Int32(parts) }) {
              let lists = budget.mapChunks(count: 2) { part in pass(part == 0 ? 0..<split : split..<band.count) }
              asymmetric = lists[0] + lists[1]
          } else {
              asymmetric = pass(0..<band.count)
          }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        for edge in asymmetric { graph.addEdge(edge.n, edge.m, forward: edge.capacity, backward: 0) }
        for s in 0..<(nodeCount * slots) where pairNeighbour[s] >= 0 && pairWeight[s] > 0 {
            graph.addEdge(s / slots, Int(pairNeighbour[s]), forward: pairWeight[s], backward: pairWeight[s])
        }
        for n in 0..<nodeCount {
            graph.addTerminalWeights(n, source: sourceCapacity[n], sink: sinkCapacity[n])
        }
        graph.maximumFlow(parts: parts, budget: budget)
        for (i, p) in band.enumerated() where node[i] >= 0 {
            labels[Int(p)] = graph.isOnSourceSide(Int(node[i])) ? source[i] : alpha
        }
    }
}
