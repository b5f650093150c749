import ProbattnImaging
import ProbattnPluginHost
import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The propagator's fast path: the adapter caches the probabilistic variant's weights W once per image, and every EM
/// round of a click is then computed through W in-process (`MixturePropagation`) instead of calling the plugin. It
/// must give what calling the plugin on every round gives, up to the entries of W it drops.
@Suite struct CachedWeightsTests {
    let scene = DiscScene(width: 160, height: 120, seed: 11)

    func defaultPipeline() throws -> SegmentationPipeline {
        try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
    }

    @Test func theDefaultAdapterCachesRowStochasticWeights() throws {
        let prepared = try defaultPipeline().prepare(scene.image)
        let h = prepared.encoded.tokenCount, m = prepared.adapted.unitCount
        let sparse = try #require(prepared.adapted.weights)
        let weights = sparse.dense()
        #expect(weights.count == h * m)
        #expect(m < h)
        // Sparse: a small fraction of the H × M entries, and little mass dropped from any row.
        #expect(sparse.values.count < h * m / 4, "\(sparse.values.count) of \(h * m) entries kept")
        #expect(sparse.droppedMass < 0.02)
        for i in 0..<h {
            let row = weights[(i * m)..<((i + 1) * m)]
            #expect(row.allSatisfy { $0 >= 0 })
            #expect(abs(row.reduce(0, +) - 1) <= sparse.droppedMass + 1e-4)
        }
        // The cache budget counts them.
        #expect(prepared.adapted.memoryBytes >= sparse.memoryBytes)
    }

    @Test func roundsThroughCachedWeightsEqualPluginCalls() throws {
        let pipeline = try defaultPipeline()
        let propagator = try #require(pipeline.propagator as? BeliefPropagator)
        let prepared = try pipeline.prepare(scene.image)
        var uncached = prepared.adapted
        uncached.weights = nil
        let clickSets: [[Click]] = [
            [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)],
            [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0), Click(x: 10, y: 10, classIndex: 1),
             Click(x: scene.centre.x + 20, y: scene.centre.y + 5, classIndex: 1)],
            [Click(x: 30, y: 100, classIndex: 2), Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0),
             Click(x: 150, y: 5, classIndex: 1)],
        ]
        for clicks in clickSets {
            let k = max(2, (clicks.map(\.classIndex).max() ?? 0) + 1)
            let clicked = propagator.clickedTokens(encoded: prepared.encoded, clicks: clicks, classCount: k)
            let fast = try propagator.propagateValues(encoded: prepared.encoded, adapted: prepared.adapted,
                                                      clicked: clicked, classCount: k)
            let slow = try propagator.propagateValues(encoded: prepared.encoded, adapted: uncached,
                                                      clicked: clicked, classCount: k)
            #expect(fast.count == slow.count)
            let largest = zip(fast, slow).map { abs($0 - $1) }.max() ?? 0
            // Entries of W below `weightThreshold` (1e-3) are dropped, up to 2 % of a row's mass: over the 20 EM
            // rounds that moves a posterior by at most about as much.
            #expect(largest < 0.03, "largest posterior difference \(largest) for \(clicks)")
            // And the masks agree pixel for pixel except, at most, at a handful of exact ties.
            let a = try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                             classCount: k).mask.labels
            let b = try propagator.propagate(encoded: prepared.encoded, adapted: uncached, clicks: clicks,
                                             classCount: k).mask.labels
            let differing = zip(a, b).filter { $0 != $1 }.count
            #expect(differing <= a.count / 1000, "\(differing) pixels differ for \(clicks)")
        }
    }

    @Test func oneClickSegmentsTheDiscThroughCachedWeights() throws {
        let pipeline = try defaultPipeline()
        let prepared = try pipeline.prepare(scene.image)
        #expect(prepared.adapted.weights != nil)
        let result = try pipeline.segment(prepared, clicks: [Click(x: scene.centre.x, y: scene.centre.y,
                                                                   classIndex: 0)], classCount: 2)
        #expect(scene.iou(result.mask) >= 0.9)
    }

    @Test func mixturePropagationIsTheTwoHopClosedForm() {
        // Hand-checkable: 3 tokens, 2 units, K = 2.
        let w: [Float] = [1, 0,
                          0.5, 0.5,
                          0, 1]
        let sparse = SparseWeights(dense: w, tokens: 3, units: 2, threshold: 1e-4)!
        #expect(sparse.values == [1, 0.5, 0.5, 1] && sparse.columns == [0, 0, 1, 1] && sparse.rowStart == [0, 1, 3, 4])
        #expect(sparse.dense() == w)
        let propagation = MixturePropagation(weights: sparse, tokens: 3, units: 2)!
        // Token 0 observed as class 0 (weight 1), token 2 as class 1 with weight 0.5, token 1 free.
        let fixed: [Float] = [1, 0, 1,
                              0, 0, 0,
                              0, 1, 0.5]
        let out = propagation.propagate(fixed: fixed, valueChannels: 2, budget: .single)
        // Unit 0 sees only token 0 → (1, 0); unit 1 only token 2 → (0, 1); token 1 mixes them half and half.
        #expect(out == [1, 0, 0.5, 0.5, 0, 1])
        #expect(SparseWeights(dense: [1, 2], tokens: 3, units: 2, threshold: 0) == nil)
        #expect(MixturePropagation(weights: sparse, tokens: 4, units: 2) == nil)
    }
}
