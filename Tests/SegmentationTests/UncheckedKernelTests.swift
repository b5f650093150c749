import Foundation
import ProbattnImaging
import Testing
import ProbattnStages
@testable import ProbattnSegmentation
import ProbattnEvaluation

/// The per-click hot loops that run over raw buffers (the max-flow's node-by-node arc layout, the upsampling's
/// `BilateralMix.Unchecked`, the refinement's neighbour weights) against plain computations of the same quantities:
/// the same cut, the same bits.
@Suite struct UncheckedKernelTests {
    /// Minimum cuts of random 8-connected grids: the solver's flow equals a plain Edmonds–Karp's, and its source side
    /// is exactly the set of nodes the source reaches in Edmonds–Karp's residual graph (the source side of every
    /// maximum flow: the one minimum cut the refinement reads). The same for the flow found in two parts (the rows above
    /// a random row and the rest, as `BoundaryRefinement.splitMove` cuts a large band) and merged, on one thread and on
    /// two.
    @Test func maxFlowSidesAreTheResidualReachableSetOfAPlainSolver() {
        var rng = SplitMix64(state: 77)
        for trial in 0..<60 {
            let rows = 3 + Int(rng.next() % 10), cols = 3 + Int(rng.next() % 10), n = rows * cols
            // Integer capacities, a quarter of them zero, so many cuts tie and the source side is not trivial.
            func capacity() -> Int64 { rng.next() % 4 == 0 ? 0 : Int64(rng.next() % 9) }
            var graph = MaxFlowGraph(expectedNodes: n, expectedEdges: 4 * n)
            graph.addNodes(n)
            let s = n, t = n + 1
            var cap = [[Int64]](repeating: [Int64](repeating: 0, count: n + 2), count: n + 2)
            for i in 0..<n {
                let a = rng.next() % 3 == 0 ? capacity() : 0, b = rng.next() % 3 == 0 ? capacity() : 0
                graph.addTerminalWeights(i, source: Float(a), sink: Float(b))
                cap[s][i] += a * 4096; cap[i][t] += b * 4096
            }
            for r in 0..<rows {
                for c in 0..<cols {
                    for (dr, dc) in [(0, 1), (1, -1), (1, 0), (1, 1)] {
                        let rr = r + dr, cc = c + dc
                        guard rr < rows, cc >= 0, cc < cols else { continue }
                        let i = r * cols + c, j = rr * cols + cc
                        let f = capacity(), b = capacity()
                        graph.addEdge(i, j, forward: Float(f), backward: Float(b))
                        cap[i][j] += f * 4096; cap[j][i] += b * 4096
                    }
                }
            }
            let splitRow = 1 + Int(rng.next() % UInt64(rows - 1))
            var inParts = [graph, graph]
            let flow = graph.maximumFlow()
            let partFlows = [1, 2].enumerated().map { index, threads in
                inParts[index].maximumFlow(parts: splitRow * cols, budget: ComputeBudget(threads: threads))
            }
            // Edmonds–Karp on the same capacities (in the graph's units of 1/4096).
            var total: Int64 = 0
            var reached: [Bool]
            while true {
                var parent = [Int](repeating: -1, count: n + 2)
                parent[s] = s
                var queue = [s], head = 0
                while head < queue.count, parent[t] < 0 {
                    let u = queue[head]; head += 1
                    for v in 0..<(n + 2) where parent[v] < 0 && cap[u][v] > 0 { parent[v] = u; queue.append(v) }
                }
                reached = parent.map { $0 >= 0 }
                guard parent[t] >= 0 else { break }
                var bottleneck = Int64.max, v = t
                while v != s { bottleneck = min(bottleneck, cap[parent[v]][v]); v = parent[v] }
                v = t
                while v != s { cap[parent[v]][v] -= bottleneck; cap[v][parent[v]] += bottleneck; v = parent[v] }
                total += bottleneck
            }
            #expect(flow == Float(total) / 4096, "trial \(trial)")
            for i in 0..<n { #expect(graph.isOnSourceSide(i) == reached[i], "trial \(trial), node \(i)") }
            for (index, split) in inParts.enumerated() {
                #expect(partFlows[index] == Float(total) / 4096, "trial \(trial), in parts at row \(splitRow)")
                let differing = (0..<n).filter { split.isOnSourceSide($0) != reached[$0] }
                #expect(differing.isEmpty, "trial \(trial), in parts at row \(splitRow): nodes \(differing)")
            }
        }
    }

    /// The fused EM rounds (gather and next scatter in one pass over W) give the round-by-round loop's token
    /// posteriors and masks bit for bit, with the default click priors (the previous-posterior chain replays every
    /// prefix), on a scene below and one above `MixturePropagation.parallelTokens` (one and two chunks), with budgets
    /// of one and two threads.
    @Test func fusedRoundsEqualTheRoundByRoundLoop() throws {
        let pipeline = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        let fused = try #require(pipeline.propagator as? BeliefPropagator)
        #expect(fused.fusesRounds && fused.previousPosteriorWeight > 0 && fused.geodesicClickWeight > 0)
        var plain = fused
        plain.fusesRounds = false
        for (width, height) in [(160, 120), (480, 360)] {
            let scene = DiscScene(width: width, height: height, seed: 11)
            let prepared = try pipeline.prepare(scene.image)
            #expect(prepared.adapted.weights != nil)
            if width == 480 { #expect(prepared.encoded.tokenCount >= MixturePropagation.parallelTokens) }
            var rng = SplitMix64(state: 5)
            var clicks: [Click] = []
            for step in 0..<6 {
                let x = Int(rng.next() % UInt64(width)), y = Int(rng.next() % UInt64(height))
                clicks.append(Click(x: x, y: y, classIndex: scene.inside[y * width + x] ? 0 : 1))
                let context = StageContext.standalone.with(budget: ComputeBudget(threads: 1 + step % 2))
                let a = try fused.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                            fixed: FixedTokens(), classCount: 2, context: context, previous: nil)
                let b = try plain.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                            fixed: FixedTokens(), classCount: 2, context: context, previous: nil)
                let pa = try #require(a.state as? PropagationState).probabilities
                let pb = try #require(b.state as? PropagationState).probabilities
                #expect(pa.map(\.bitPattern) == pb.map(\.bitPattern), "\(width)×\(height), click \(step + 1)")
                #expect(a.mask.labels == b.mask.labels, "\(width)×\(height), click \(step + 1)")
            }
        }
    }

    /// A prepared image and the token posteriors of a few clicks on it.
    func posteriors(classCount k: Int) throws -> (BeliefPropagator, EncodedImage, [Float]) {
        let scene = DiscScene(width: 160, height: 120, seed: 4)
        let pipeline = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        let propagator = try #require(pipeline.propagator as? BeliefPropagator)
        let prepared = try pipeline.prepare(scene.image)
        let clicks = [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0), Click(x: 8, y: 8, classIndex: k - 1),
                      Click(x: 150, y: 100, classIndex: k == 3 ? 1 : 0)]
        let result = try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                              fixed: FixedTokens(), classCount: k, previous: nil)
        let state = try #require(result.state as? PropagationState)
        return (propagator, prepared.encoded, state.probabilities)
    }

    /// Every band pixel's class distribution from the upsampling loop equals `BilateralMix.mix`'s (normalised as
    /// the loop does), bit for bit, for two and three classes.
    @Test(arguments: [2, 3]) func upsamplingEqualsThePlainBilateralMix(classCount k: Int) throws {
        let (propagator, encoded, p) = try posteriors(classCount: k)
        let grid = try #require(encoded.grid)
        let upsampled = propagator.pixelLabels(encoded: encoded, probabilities: p, classCount: k, collectingBand: true)
        #expect(!upsampled.band.isEmpty)
        let plain = BilateralMix(propagator, encoded: encoded, grid: grid)
        let w = encoded.image.width, px = encoded.image.pixels, lab = QuantisedLab.table
        var mix = [Float](repeating: 0, count: k)
        var differing = 0
        for (n, pixel) in upsampled.band.enumerated() {
            let i = Int(pixel), t = Int(encoded.tokenOfPixel[i])
            let q = QuantisedLab.index(px[3 * i], px[3 * i + 1], px[3 * i + 2])
            plain.mix(x: i % w, y: i / w, token: t, l: lab[q], a: lab[q + 1], b: lab[q + 2], probabilities: p,
                      classCount: k, into: &mix)
            var total: Float = 0
            for j in 0..<k { total += mix[j] }
            for j in 0..<k where (total > 0 ? mix[j] / total : p[t * k + j]).bitPattern
                != upsampled.bandProbabilities[n * k + j].bitPattern { differing += 1 }
        }
        #expect(differing == 0)
    }

    /// The refinement's neighbour weights equal λ · exp-table(contrast · |Δc|²) / dist computed plainly per pair,
    /// bit for bit, with neighbours inside and outside the band; on a band of one chunk and on one of several, with
    /// one thread and two.
    @Test(arguments: [(120, 90, 6.0, 1), (640, 480, 40.0, 1), (640, 480, 40.0, 2)])
    func neighbourWeightsEqualThePlainFormula(width: Int, height: Int, halfWidth: Double, threads: Int) throws {
        let scene = DiscScene(width: width, height: height, seed: 2)
        let image = scene.image, w = image.width, h = image.height
        // A band of every pixel within `halfWidth` of the disc's rim, in row order.
        var band: [Int32] = []
        for y in 0..<h {
            for x in 0..<w {
                let dx = Double(x - scene.centre.x), dy = Double(y - scene.centre.y)
                if abs((dx * dx + dy * dy).squareRoot() - scene.radius) <= halfWidth { band.append(Int32(y * w + x)) }
            }
        }
        var bandIndex = [Int32](repeating: -1, count: w * h)
        for (i, p) in band.enumerated() { bandIndex[Int(p)] = Int32(i) }
        let lab = BoundaryRefinement.colours(of: band, in: image)
        let refinement = BoundaryRefinement(smoothness: 6)
        let contrast: Float = 0.013
        let weights = refinement.neighbourWeights(image: image, band: band, bandIndex: bandIndex, lab: lab,
                                                  contrast: contrast, budget: ComputeBudget(threads: threads))
        if width > 120 { #expect(band.count > 2 * refinement.chunkPixels, "several chunks") }
        let table = QuantisedLab.table
        func colour(_ p: Int) -> (Float, Float, Float) {
            let q = QuantisedLab.index(image.pixels[3 * p], image.pixels[3 * p + 1], image.pixels[3 * p + 2])
            return (table[q], table[q + 1], table[q + 2])
        }
        var differing = 0
        for (i, p) in band.enumerated() {
            let pi = Int(p), x = pi % w, y = pi / w
            let (l1, a1, b1) = (lab[3 * i], lab[3 * i + 1], lab[3 * i + 2])
            for (slot, n) in BoundaryRefinement.neighbours.enumerated() {
                let xx = x + n.dx, yy = y + n.dy
                var expected: Float = 0
                if xx >= 0, xx < w, yy >= 0, yy < h {
                    let (l2, a2, b2) = colour(yy * w + xx)
                    let dl = l1 - l2, da = a1 - a2, db = b1 - b2
                    expected = 6 * n.inverseDistance * NegativeExponential.value(contrast * (dl * dl + da * da + db * db))
                }
                if weights[i * 8 + slot].bitPattern != expected.bitPattern { differing += 1 }
            }
        }
        #expect(differing == 0)
    }
}
