import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The propagator with the test's own reference attention (no plugin needed).
@Suite struct PropagatorTests {
    let scene = DiscScene(width: 96, height: 72)

    func pipeline(keyIterations: Int = 2, refinement: BeliefPropagator.Refinement = .none) -> SegmentationPipeline {
        let attention = ReferenceAttention(keyIterations: keyIterations)
        return SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                    adapter: VariantAttentionAdapter(attention: attention),
                                    propagator: BeliefPropagator(attention: attention) { $0.refinement = refinement })
    }

    @Test func oneClickInTheDiscSegmentsIt() throws {
        let p = pipeline()
        let prepared = try p.prepare(scene.image)
        #expect(prepared.adapted.keysAdapted)
        let result = try p.segment(prepared, clicks: [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)],
                                   classCount: 2)
        #expect(scene.iou(result.mask) >= 0.95)
    }

    @Test func boundaryRefinementKeepsClicksAndDoesNotLoseTheDisc() throws {
        // The same clicks with and without the pixel-level refinement: clicked pixels keep their classes, and the
        // refined mask is at least as good on the noisy, striped disc scene.
        let plain = pipeline(), refined = pipeline(refinement: .graphCut)
        let prepared = try plain.prepare(scene.image)
        let clicks = [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0), Click(x: 3, y: 3, classIndex: 1),
                      Click(x: scene.centre.x + Int(scene.radius) + 4, y: scene.centre.y, classIndex: 1)]
        let plainMask = try plain.segment(prepared, clicks: clicks, classCount: 2).mask
        let refinedMask = try refined.segment(prepared, clicks: clicks, classCount: 2).mask
        for c in clicks { #expect(refinedMask.labels[c.y * scene.image.width + c.x] == UInt8(c.classIndex)) }
        #expect(scene.iou(refinedMask) >= 0.95)
        #expect(scene.iou(refinedMask) >= scene.iou(plainMask) - 0.005)
    }

    @Test func noClicksGiveBackground() throws {
        let p = pipeline()
        let result = try p.segment(try p.prepare(scene.image), clicks: [], classCount: 2)
        #expect(result.mask.labels.allSatisfy { $0 == 1 })
    }

    @Test func everyClickedPixelHasItsClass() throws {
        let p = pipeline(keyIterations: 0)
        let prepared = try p.prepare(scene.image)
        var rng = SplitMix64(state: 99)
        var clicks: [Click] = []
        for _ in 0..<25 {
            let x = Int(rng.next() % 96), y = Int(rng.next() % 72), c = Int(rng.next() % 3)
            clicks.append(Click(x: x, y: y, classIndex: c))
            let mask = try p.segment(prepared, clicks: clicks, classCount: 3).mask
            // Where clicks coincide, the later one wins (the session core resolves such clicks before; the
            // propagator's rule is "of equals, the later").
            var expected: [Int: Int] = [:]
            for click in clicks { expected[click.y * 96 + click.x] = click.classIndex }
            for (pixel, cls) in expected { #expect(Int(mask.labels[pixel]) == cls) }
        }
    }

    @Test func clicksMarkTheTokensWithinTheRadius() throws {
        let encoded = try GridFeatureEncoder(stride: 8, superpixelIterations: 0).encode(scene.image)
        let propagator = BeliefPropagator(attention: ReferenceAttention()) { $0.clickRadius = 5 }
        // The 5 px disc around (12, 12) spans x, y in 7...17: it reaches the cell (1, 1) holding the click and its
        // four edge neighbours, but no diagonal cell (the nearest diagonal pixels, e.g. (16, 16), are 5.66 px away).
        let fixed = propagator.clickedTokens(encoded: encoded, clicks: [Click(x: 12, y: 12, classIndex: 1)],
                                             classCount: 2).classOf
        let cols = 12
        let marked = Set(fixed.indices.filter { fixed[$0] == 1 })
        #expect(marked == [1 * cols + 1, 1 * cols + 0, 0 * cols + 1, 1 * cols + 2, 2 * cols + 1])
        #expect(fixed.filter { $0 >= 0 }.count == 5)
        // A later click of another class on the same token does not overwrite the first: the token is split between
        // them by which of its pixels lie nearer to which click. (10, 10) and (12, 12) share the cell x, y in 8..<16;
        // the perpendicular bisector x + y = 22 gives (10, 10) the pixels with x + y < 22 (ties: the later click).
        let both = propagator.clickedTokens(encoded: encoded, clicks: [Click(x: 12, y: 12, classIndex: 1),
                                                                     Click(x: 10, y: 10, classIndex: 0)],
                                            classCount: 2)
        let cell = 1 * cols + 1
        #expect(both.classOf[cell] == BeliefPropagator.ClickedTokens.mixed)
        #expect(!both.isFixed(cell), "a token whose clicks disagree is left to the propagation")
        #expect(both.isFixed(1 * cols + 2) && both.classOf[1 * cols + 2] == 1,
                "a neighbour reached only by the class-1 click stays fixed")
        var nearer = 0
        for y in 8..<16 { for x in 8..<16 where x + y <= 22 { nearer += 1 } }
        #expect(abs(both.value(cell, 0, classCount: 2) - Float(nearer) / 64) < 1e-6)
        #expect(abs(both.value(cell, 0, classCount: 2) + both.value(cell, 1, classCount: 2) - 1) < 1e-6)
    }

    @Test func clicksOfTwoClassesInOneTokenBothKeepTheirPixels() throws {
        let p = pipeline(keyIterations: 0)
        let prepared = try p.prepare(scene.image)
        // Two clicks 3 px apart in one 8 px cell, of different classes, in both orders.
        for clicks in [[Click(x: 12, y: 12, classIndex: 0), Click(x: 14, y: 13, classIndex: 1)],
                       [Click(x: 14, y: 13, classIndex: 1), Click(x: 12, y: 12, classIndex: 0)]] {
            let mask = try p.segment(prepared, clicks: clicks, classCount: 2).mask
            for click in clicks { #expect(Int(mask.labels[click.y * 96 + click.x]) == click.classIndex) }
            // Disc pixels go to the nearer click: (11, 12) is nearer to (12, 12), (15, 13) to (14, 13).
            #expect(mask.labels[12 * 96 + 11] == 0 && mask.labels[13 * 96 + 15] == 1)
        }
    }

    @Test func badClicksAreErrors() throws {
        let p = pipeline(keyIterations: 0)
        let prepared = try p.prepare(scene.image)
        #expect(throws: SegmentationError.self) {
            _ = try p.segment(prepared, clicks: [Click(x: 96, y: 0, classIndex: 0)], classCount: 2)
        }
        #expect(throws: SegmentationError.self) {
            _ = try p.segment(prepared, clicks: [Click(x: 1, y: 1, classIndex: 2)], classCount: 2)
        }
        do {
            _ = try p.segment(prepared, clicks: [Click(x: -1, y: 0, classIndex: 0)], classCount: 2)
            Issue.record("expected an error")
        } catch let error as SegmentationError {
            #expect(error.code == .invalidInput)
        }
    }

    @Test func withoutPropagationOnlyTheClickedTokensChange() throws {
        let attention = ReferenceAttention()
        let p = SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                     adapter: VariantAttentionAdapter(attention: attention),
                                     propagator: BeliefPropagator(attention: attention) { $0.emIterations = 0 })
        let prepared = try p.prepare(scene.image)
        let mask = try p.segment(prepared, clicks: [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)],
                                 classCount: 2).mask
        // Only the clicked token and, through edge-aware upsampling, pixels of its grid neighbours can change:
        // a neighbour's superpixel keeps within one cell of its own, so every object pixel lies within 3 cells (24 px)
        // of the clicked cell, i.e. within 32 px of the click.
        let object = mask.labels.indices.filter { mask.labels[$0] == 0 }
        #expect(!object.isEmpty)
        for i in object {
            #expect(abs(i % 96 - scene.centre.x) <= 32 && abs(i / 96 - scene.centre.y) <= 32)
        }
    }
}

@Suite struct UnitBankTests {
    @Test func unitStrideTakesACentredSubGrid() throws {
        let scene = DiscScene(width: 96, height: 72)
        let encoded = try GridFeatureEncoder(stride: 8, superpixelIterations: 0).encode(scene.image)  // 9 × 12
        let adapter = VariantAttentionAdapter(attention: ReferenceAttention(), unitStride: 2)
        // Rows 1, 3, 5, 7 and columns 1, 3, ..., 11.
        let seeds = adapter.unitTokens(of: encoded)
        #expect(seeds.count == 4 * 6)
        #expect(seeds.first == 1 * 12 + 1 && seeds.last == 7 * 12 + 11)
        let adapted = try adapter.adapt(encoded)
        #expect(adapted.unitCount == 24)
        #expect(adapted.keys.count == 24 * encoded.featureDimension)
        // Without key adaptation the keys are the seed tokens' features.
        let plain = try VariantAttentionAdapter(attention: ReferenceAttention(keyIterations: 0), unitStride: 2)
            .adapt(encoded)
        #expect(!plain.keysAdapted)
        let c = encoded.featureDimension
        #expect(Array(plain.keys[0..<c]) == Array(encoded.features[(13 * c)..<(14 * c)]))
    }
}
