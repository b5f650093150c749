import Foundation
import ProbattnImaging

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
/// the cut follows colour edges and does not cross flat regions. Two classes: one exact minimum cut. More classes:
/// one cycle of α-expansion moves (each an exact minimum cut over "keep or take α").
///
/// Called by `BeliefPropagator.propagate` once per click, after the click discs are painted; stateless.
struct BoundaryRefinement {
    /// λ, the weight of the contrast-sensitive smoothness term against the class log-probabilities.
    var smoothness: Float
    /// Lower bound on a pixel's class probability inside the log (bounds the unary cost at −log floor).
    var probabilityFloor: Float = 1e-3
    /// Only band pixels within this many pixels (8-connected steps) of a label change are relabelled; the rest of
    /// the band keeps its labels. Bounds the cut's size and so its cost.
    var reach: Int = 6
    /// Whether the cut is found in two passes: first over 2 × 2 blocks in the whole reach, then over single pixels
    /// within `fineReach` of the blocks' boundary (a banded cut, about half the cost of one pass over every pixel).
    var coarseToFine = false
    /// The fine pass's reach around the coarse pass's boundary.
    var fineReach = 2

    /// Relabels the pixels of `band` (indices into the image) in `labels`.
    /// - Parameters:
    ///   - probabilities: `band.count × classCount`, the class distribution of every band pixel (row i for band[i]).
    ///   - fixedInBand: true for band pixels that must keep their label (click discs), indexed like `band`.
    func refine(labels: inout [UInt8], image: RGBImage, band wideBand: [Int32], probabilities wideProbabilities: [Float],
                fixedInBand wideFixed: [Bool], classCount k: Int) {
        guard k >= 2, smoothness > 0, !wideBand.isEmpty else { return }
        let w = image.width, h = image.height
        // For every pixel, its position in the band (-1 outside it).
        var bandIndex = [Int32](repeating: -1, count: w * h)
        for (i, p) in wideBand.enumerated() { bandIndex[Int(p)] = Int32(i) }
        let near = withinReach(reach, ofLabelChangeIn: labels, width: w, height: h, band: wideBand,
                               bandIndex: bandIndex)
        var band: [Int32] = [], probabilities: [Float] = [], fixedInBand: [Bool] = []
        band.reserveCapacity(near.count); probabilities.reserveCapacity(near.count * k)
        for i in near {
            band.append(wideBand[i])
            fixedInBand.append(wideFixed[i])
            probabilities.append(contentsOf: wideProbabilities[(i * k)..<(i * k + k)])
        }
        for p in wideBand { bandIndex[Int(p)] = -1 }
        for (i, p) in band.enumerated() { bandIndex[Int(p)] = Int32(i) }
        let weights = neighbourWeights(image: image, band: band, contrastBand: wideBand)
        var unary = [Float](repeating: 0, count: band.count * k)
        let floor = max(probabilityFloor, Float.leastNormalMagnitude)
        for i in 0..<(band.count * k) { unary[i] = -logf(max(probabilities[i], floor)) }

        let context = MoveContext(width: w, height: h, band: band, bandIndex: bandIndex, weights: weights,
                                  unary: unary, classCount: k)
        var free = fixedInBand.map { !$0 }
        if coarseToFine {
            // Coarse pass: 2 × 2 blocks move together, which places the boundary to within a block at a fraction of
            // the cost; the fine pass then only needs the pixels near where the coarse pass put it.
            runMoves(context, labels: &labels) { sourceOf, alpha in
                context.blockNodes(isFree: { free[$0] }, sameSource: { members in
                    k == 2 || members.allSatisfy { sourceOf(band[$0]) == sourceOf(band[members[0]]) }
                })
            }
            var nearCut = [Bool](repeating: false, count: band.count)
            for i in withinReach(fineReach, ofLabelChangeIn: labels, width: w, height: h, band: band,
                                 bandIndex: bandIndex) { nearCut[i] = true }
            for i in 0..<band.count where !nearCut[i] { free[i] = false }
        }
        runMoves(context, labels: &labels) { _, _ in context.pixelNodes(isFree: { free[$0] }) }
    }

    /// Two classes: one move in which each node chooses between class 0 (source side) and class 1 (sink side), an
    /// exact minimum cut. More classes: one cycle of α-expansion moves. `nodes` gives the graph nodes of a move
    /// from its source labels and α.
    private func runMoves(_ context: MoveContext, labels: inout [UInt8],
                          nodes: (_ sourceLabel: (Int32) -> UInt8, _ alpha: UInt8) -> (node: [Int32], count: Int)) {
        if context.classCount == 2 {
            let sourceLabel: (Int32) -> UInt8 = { _ in 0 }
            let (node, count) = nodes(sourceLabel, 1)
            context.move(labels: &labels, node: node, nodeCount: count, sourceLabel: sourceLabel, sinkLabel: 1)
        } else {
            for alpha in 0..<UInt8(context.classCount) {
                let current = labels
                let sourceLabel: (Int32) -> UInt8 = { current[Int($0)] }
                // A pixel already labelled α keeps it in this move.
                var (node, count) = nodes(sourceLabel, alpha)
                _ = count
                for (i, p) in context.band.enumerated() where node[i] >= 0 && current[Int(p)] == alpha { node[i] = -1 }
                let renumbered = Self.renumber(&node)
                context.move(labels: &labels, node: node, nodeCount: renumbered, sourceLabel: sourceLabel,
                             sinkLabel: alpha)
            }
        }
    }

    /// Renumbers the non-negative entries of `node` densely (0, 1, …, in order of first appearance); returns how
    /// many distinct nodes are left.
    private static func renumber(_ node: inout [Int32]) -> Int {
        var map: [Int32: Int32] = [:]
        for i in node.indices where node[i] >= 0 {
            if let n = map[node[i]] { node[i] = n } else { let n = Int32(map.count); map[node[i]] = n; node[i] = n }
        }
        return map.count
    }

    /// The positions in `band` of its pixels within `reach` 8-connected steps of a label change (a pixel with a
    /// 4-neighbour of another label), by breadth-first search inside the band, in increasing order. `bandIndex`
    /// gives every pixel's position in `band` (-1 outside it).
    private func withinReach(_ reach: Int, ofLabelChangeIn labels: [UInt8], width w: Int, height h: Int,
                             band: [Int32], bandIndex: [Int32]) -> [Int] {
        var frontier: [Int] = []
        var selected: [Int] = []
        var visited = [Bool](repeating: false, count: band.count)
        for (i, p) in band.enumerated() {
            let pi = Int(p), x = pi % w, y = pi / w
            let change = (x + 1 < w && labels[pi + 1] != labels[pi]) || (y + 1 < h && labels[pi + w] != labels[pi])
                || (x > 0 && labels[pi - 1] != labels[pi]) || (y > 0 && labels[pi - w] != labels[pi])
            if change { visited[i] = true; frontier.append(i) }
        }
        var step = 0
        while !frontier.isEmpty {
            selected.append(contentsOf: frontier)
            guard step < reach else { break }
            step += 1
            var next: [Int] = []
            for i in frontier {
                let pi = Int(band[i]), x = pi % w, y = pi / w
                for n in Self.neighbours {
                    let xx = x + n.dx, yy = y + n.dy
                    guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                    let j = Int(bandIndex[yy * w + xx])
                    if j >= 0, !visited[j] { visited[j] = true; next.append(j) }
                }
            }
            frontier = next
        }
        return selected.sorted()
    }

    /// The 8-neighbourhood as (dx, dy, 1/distance), in the order of `neighbourWeights`' rows.
    static let neighbours: [(dx: Int, dy: Int, inverseDistance: Float)] = [
        (-1, -1, Float(0.5).squareRoot()), (0, -1, 1), (1, -1, Float(0.5).squareRoot()), (-1, 0, 1),
        (1, 0, 1), (-1, 1, Float(0.5).squareRoot()), (0, 1, 1), (1, 1, Float(0.5).squareRoot()),
    ]

    /// `band.count × 8`: λ · exp(−|c_p − c_q|² / (2 ⟨|c_p − c_q|²⟩)) / dist(p, q) from every band pixel to each of
    /// its 8 neighbours (0 off the image), with ⟨·⟩ the mean over `contrastBand`'s right and down neighbour pairs.
    private func neighbourWeights(image: RGBImage, band: [Int32], contrastBand: [Int32]) -> [Float] {
        let w = image.width, h = image.height
        var weights = [Float](repeating: 0, count: band.count * 8)
        QuantisedLab.table.withUnsafeBufferPointer { lab in
        image.pixels.withUnsafeBufferPointer { px in
            @inline(__always) func squaredDifference(_ p: Int, _ q: Int) -> Float {
                let i = QuantisedLab.index(px[3 * p], px[3 * p + 1], px[3 * p + 2])
                let j = QuantisedLab.index(px[3 * q], px[3 * q + 1], px[3 * q + 2])
                let dl = lab[i] - lab[j], da = lab[i + 1] - lab[j + 1], db = lab[i + 2] - lab[j + 2]
                return dl * dl + da * da + db * db
            }
            var sum: Double = 0
            var count = 0
            for p in contrastBand {
                let pi = Int(p), x = pi % w, y = pi / w
                if x + 1 < w { sum += Double(squaredDifference(pi, pi + 1)); count += 1 }
                if y + 1 < h { sum += Double(squaredDifference(pi, pi + w)); count += 1 }
            }
            let mean = count > 0 ? Float(sum / Double(count)) : 0
            let contrast: Float = mean > 0 ? 1 / (2 * mean) : 0
            for (i, p) in band.enumerated() {
                let pi = Int(p), x = pi % w, y = pi / w
                for (n, neighbour) in Self.neighbours.enumerated() {
                    let xx = x + neighbour.dx, yy = y + neighbour.dy
                    guard xx >= 0, xx < w, yy >= 0, yy < h else { continue }
                    weights[i * 8 + n] = smoothness * neighbour.inverseDistance
                        * NegativeExponential.value(contrast * squaredDifference(pi, yy * w + xx))
                }
            }
        }
        }
        return weights
    }
}

/// One binary move of the refinement: every free band pixel takes either its `sourceLabel` or `sinkLabel`.
/// A graph node is either one free pixel or, in the coarse pass, a 2 × 2 block of free pixels that move together.
private struct MoveContext {
    let width: Int, height: Int
    let band: [Int32]
    let bandIndex: [Int32]
    /// `band.count × 8`, see `BoundaryRefinement.neighbourWeights`.
    let weights: [Float]
    let unary: [Float]
    let classCount: Int

    /// The graph node of every band pixel in a move where each free pixel is its own node (-1: fixed in this move).
    func pixelNodes(isFree: (Int) -> Bool) -> (node: [Int32], count: Int) {
        var node = [Int32](repeating: -1, count: band.count)
        var count = 0
        for i in 0..<band.count where isFree(i) { node[i] = Int32(count); count += 1 }
        return (node, count)
    }

    /// The graph node of every band pixel when 2 × 2 blocks move together: a block becomes a node when its four
    /// pixels are all free band pixels (`isFree`) and `sameSource` accepts their source labels; the other pixels are
    /// fixed in this move (-1).
    func blockNodes(isFree: (Int) -> Bool, sameSource: ([Int]) -> Bool) -> (node: [Int32], count: Int) {
        let w = width, h = height
        var node = [Int32](repeating: -1, count: band.count)
        var count = 0
        for p in band {
            let pi = Int(p), x = pi % w, y = pi / w
            // Visit each block once, from its top-left pixel.
            guard x % 2 == 0, y % 2 == 0, x + 1 < w, y + 1 < h else { continue }
            let members = [pi, pi + 1, pi + w, pi + w + 1].map { Int(bandIndex[$0]) }
            guard members.allSatisfy({ $0 >= 0 && isFree($0) }), sameSource(members) else { continue }
            for i in members { node[i] = Int32(count) }
            count += 1
        }
        return (node, count)
    }

    /// Builds the graph of the move over `node` (a node per band pixel, -1 for a pixel that keeps its label), cuts
    /// it, and writes the chosen labels.
    func move(labels: inout [UInt8], node: [Int32], nodeCount: Int, sourceLabel: (Int32) -> UInt8,
              sinkLabel alpha: UInt8) {
        guard nodeCount > 0 else { return }
        let w = width, h = height, k = classCount
        var source = [UInt8](repeating: 0, count: band.count)
        for (i, p) in band.enumerated() where node[i] >= 0 { source[i] = sourceLabel(p) }
        var graph = MaxFlowGraph(expectedNodes: nodeCount, expectedEdges: 4 * nodeCount)
        for _ in 0..<nodeCount { graph.addNode() }
        var sourceCapacity = [Float](repeating: 0, count: nodeCount)
        var sinkCapacity = [Float](repeating: 0, count: nodeCount)
        // Symmetric pair terms between two nodes are summed per node pair before they become an edge (a block
        // touches each neighbouring block through up to four pixel pairs): up to 8 (neighbour, weight) slots per node.
        var pairNeighbour = [Int32](repeating: -1, count: nodeCount * 8)
        var pairWeight = [Float](repeating: 0, count: nodeCount * 8)
        for (i, p) in band.enumerated() where node[i] >= 0 {
            let n = Int(node[i])
            // On the source side the pixel takes source[i] and pays its unary cost through the sink edge.
            sinkCapacity[n] += unary[i * k + Int(source[i])]
            sourceCapacity[n] += unary[i * k + Int(alpha)]
            let pi = Int(p), x = pi % w, y = pi / w
            for (slot, neighbour) in BoundaryRefinement.neighbours.enumerated() {
                let xx = x + neighbour.dx, yy = y + neighbour.dy
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
                        var s = low * 8
                        while pairNeighbour[s] != high && pairNeighbour[s] != -1 { s += 1 }
                        pairNeighbour[s] = high
                        pairWeight[s] += b
                    } else {
                        // E = a + (c − a)·x_p − c·x_q + (b + c − a)·(1 − x_p)·x_q, with x = 1 on the sink side.
                        if c - a >= 0 { sourceCapacity[n] += c - a } else { sinkCapacity[n] += a - c }
                        sinkCapacity[m] += c
                        graph.addEdge(n, m, forward: b + c - a, backward: 0)
                    }
                } else {
                    // The neighbour keeps its label in this move: a unary term for p.
                    // (A fixed pixel, a band pixel already labelled α in an expansion move, or a pixel off the band.)
                    let fixedLabel = labels[q]
                    if source[i] != fixedLabel { sinkCapacity[n] += weight }
                    if alpha != fixedLabel { sourceCapacity[n] += weight }
                }
            }
        }
        for s in 0..<(nodeCount * 8) where pairNeighbour[s] >= 0 && pairWeight[s] > 0 {
            graph.addEdge(s / 8, Int(pairNeighbour[s]), forward: pairWeight[s], backward: pairWeight[s])
        }
        for n in 0..<nodeCount {
            graph.addTerminalWeights(n, source: sourceCapacity[n], sink: sinkCapacity[n])
        }
        graph.maximumFlow()
        for (i, p) in band.enumerated() where node[i] >= 0 {
            labels[Int(p)] = graph.isOnSourceSide(Int(node[i])) ? source[i] : alpha
        }
    }
}
