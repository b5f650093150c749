import Foundation
import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation

/// The propagator's optional background prior on tokens without evidence (`background_prior_weight`, off by default).
@Suite struct BackgroundPriorTests: TokenLineFixture {
    @Test func everyUnclickedTokenGetsTheWeightWithoutAFallOff() {
        let e = encoded()
        let w = BackgroundPrior(weight: 0.01, radius: 0, distance: .euclidean)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0, 4: 1]), backgroundClass: 1)
        #expect(w == [0, 0.01, 0.01, 0.01, 0])
    }

    @Test func onlyBackgroundClicksLeaveTheFullWeight() {
        let e = encoded()
        let w = BackgroundPrior(weight: 0.01, radius: 0.1, distance: .geodesic)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([4: 1]), backgroundClass: 1)
        #expect(w == [0.01, 0.01, 0.01, 0.01, 0])
    }

    @Test func theGeodesicFallOffFollowsTheFeatures() {
        // From a positive click on token 0 the path to tokens 1 and 2 costs nothing (same features), to 3 and 4
        // the feature step of 10: the prior vanishes on the look-alike tokens and stays on the others.
        let e = encoded()
        let w = BackgroundPrior(weight: 0.01, radius: 1, distance: .geodesic)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0]), backgroundClass: 1)
        #expect(w[0] == 0 && w[1] == 0 && w[2] == 0)
        #expect(abs(w[3] - 0.01) < 1e-6 && abs(w[4] - 0.01) < 1e-6)
        #expect(BackgroundPrior.geodesic(grid: TokenGrid(rows: 1, cols: 5), features: e.features, channels: 1,
                                         sources: [0]) == [0, 0, 0, 10, 10])
    }

    @Test func theEuclideanFallOffGrowsWithDistance() {
        // Centres 0…4 px on a 5 × 1 image (diagonal √26): the weight grows monotonically from the click.
        let e = encoded()
        let rho = 2 / 26.0.squareRoot()
        let w = BackgroundPrior(weight: 0.01, radius: rho, distance: .euclidean)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0]), backgroundClass: 1)
        #expect(w[0] == 0)
        for t in 1..<4 { #expect(w[t] < w[t + 1]) }
        #expect(abs(w[2] - 0.01 * Float(1 - exp(-0.5))) < 1e-6)
    }

    @Test func thePriorHoldsAnUndecidedTokenForBackground() throws {
        // The disc scene with one positive click: with the prior, a token far from the disc leans further to
        // background than without it, and past ½.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        let pipeline = SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                            adapter: VariantAttentionAdapter(attention: attention),
                                            propagator: BeliefPropagator(attention: attention) { $0.refinement = .none })
        let prepared = try pipeline.prepare(scene.image)
        var with = BeliefPropagator(attention: attention) { $0.refinement = .none }
        with.backgroundPriorWeight = 0.01
        let clicks = [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)]
        let plain = BeliefPropagator(attention: attention) { $0.refinement = .none }
        let clickedTokens = plain.clickedTokens(encoded: prepared.encoded, clicks: clicks, classCount: 2)
        let p0 = try plain.propagateValues(encoded: prepared.encoded, adapted: prepared.adapted,
                                           clicked: clickedTokens, classCount: 2)
        let p1 = try with.propagateValues(encoded: prepared.encoded, adapted: prepared.adapted,
                                          clicked: clickedTokens, classCount: 2)
        let corner = Int(prepared.encoded.tokenOfPixel[0])
        #expect(p1[2 * corner + 1] > p0[2 * corner + 1])
        #expect(p1[2 * corner + 1] > 0.5)
        // The clicked pixel keeps its class.
        let mask = try SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                            adapter: VariantAttentionAdapter(attention: attention), propagator: with)
            .segment(prepared, clicks: clicks, classCount: 2).mask
        #expect(mask.labels[scene.centre.y * scene.image.width + scene.centre.x] == 0)
    }

    @Test func theGeodesicClickPriorGivesTheNearestConnectedClicksClass() {
        // Positive click on token 0, negative on token 4: tokens 1–2 (no feature step from 0) observe the object
        // at the full weight; token 3 is as near to 4 (step 0) and observes background.
        let e = encoded()
        let (classOf, weight) = GeodesicClickPrior(weight: 0.01, radius: 1)
            .observations(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0, 4: 1]))
        #expect(classOf == [-1, 0, 0, 1, -1])
        #expect(weight == [0, 0.01, 0.01, 0.01, 0])
        // Only the positive click: token 3 is 10 feature units away, so it observes almost nothing.
        let far = GeodesicClickPrior(weight: 0.01, radius: 1)
            .observations(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0]))
        #expect(far.classOf[3] == 0 && far.weight[3] < 1e-12)
    }

    @Test func theOptionsAreReadWithTheirDefaults() throws {
        let attention = ReferenceAttention(keyIterations: 0)
        let d = try BeliefPropagator(attention: attention, options: [:])
        #expect(d.backgroundPriorWeight == 0 && d.backgroundPriorRadius == 0 && d.backgroundPriorDistance == .euclidean)
        let p = try BeliefPropagator(attention: attention, options: [
            "background_prior_weight": .double(0.002), "background_prior_radius": .double(4),
            "background_prior_distance": .string("geodesic")])
        #expect(p.backgroundPriorWeight == 0.002 && p.backgroundPriorRadius == 4 && p.backgroundPriorDistance == .geodesic)
        #expect(throws: (any Error).self) {
            try BeliefPropagator(attention: attention, options: ["background_prior_weight": .double(-1)])
        }
        #expect(throws: (any Error).self) {
            try BeliefPropagator(attention: attention, options: ["background_prior_distance": .string("manhattan")])
        }
        #expect(d.geodesicClickWeight == 0.0075, "on by default, with the previous-posterior prior")
        let g = try BeliefPropagator(attention: attention, options: [
            "geodesic_click_weight": .double(0.01), "geodesic_click_radius": .double(8)])
        #expect(g.geodesicClickWeight == 0.01 && g.geodesicClickRadius == 8)
        #expect(throws: (any Error).self) {
            try BeliefPropagator(attention: attention, options: ["geodesic_click_radius": .double(0)])
        }
    }
}
