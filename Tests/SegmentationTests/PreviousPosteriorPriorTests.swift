import Foundation
import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation

/// The propagator's previous-posterior prior (`previous_posterior_weight`, 0.075 by default): its weights,
/// its recursive definition over the click list, that it changes nothing when off, and its options.
/// (`IncrementalPropagationTests` checks that the incremental and from-scratch paths agree with it on.)
@Suite struct PreviousPosteriorPriorTests: TokenLineFixture {
    @Test func theEuclideanWeightGrowsWithTheDistanceFromTheNewestClick() {
        // Centres 0…4 px on a 5 × 1 image (diagonal √26); the newest click on token 1, token 0 fixed by a click.
        let e = encoded()
        let rho = 2 / 26.0.squareRoot()
        let w = PreviousPosteriorPrior(weight: 0.05, radius: rho, distance: .euclidean)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 1, 1: 0]),
                     newest: Click(x: 1, y: 0, classIndex: 0))
        #expect(w[0] == 0 && w[1] == 0)
        #expect(w[2] < w[3] && w[3] < w[4])
        #expect(abs(w[3] - 0.05 * Float(1 - exp(-0.5))) < 1e-6)
    }

    @Test func theGeodesicWeightVanishesOverTheClickedRegion() {
        // From the newest click on token 0, tokens 1–2 cost nothing to reach (same features): no prior there, the
        // click corrects them; tokens 3–4 lie past a feature step of 10: the full weight.
        let e = encoded()
        let w = PreviousPosteriorPrior(weight: 0.05, radius: 1, distance: .geodesic)
            .weights(encoded: e, features: e.features, channels: 1, clicked: clicked([0: 0]),
                     newest: Click(x: 0, y: 0, classIndex: 0))
        #expect(w[0] == 0 && w[1] == 0 && w[2] == 0)
        #expect(abs(w[3] - 0.05) < 1e-6 && abs(w[4] - 0.05) < 1e-6)
    }

    func discPipeline(_ propagator: BeliefPropagator) -> (SegmentationPipeline, ReferenceAttention) {
        let attention = ReferenceAttention(keyIterations: 0)
        return (SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                     adapter: VariantAttentionAdapter(attention: attention), propagator: propagator),
                attention)
    }

    /// A positive click on the disc, then a negative one on the background, then a positive one near the edge.
    func clicks(_ scene: DiscScene) -> [Click] {
        [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0), Click(x: 4, y: 4, classIndex: 1),
         Click(x: scene.centre.x + Int(scene.radius) - 3, y: scene.centre.y, classIndex: 0)]
    }

    @Test func thePosteriorIsTheRecursionOverTheClickList() throws {
        // From scratch, the propagation for three clicks equals the recursion written out: the posterior for the
        // first click alone, then each next click's propagation observing the previous posterior at the prior's
        // weights around the newest click.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        var with = BeliefPropagator(attention: attention) { $0.refinement = .none }
        with.previousPosteriorWeight = 0.05
        with.previousPosteriorRadius = 0.2
        let (pipeline, _) = discPipeline(with)
        let prepared = try pipeline.prepare(scene.image)
        let e = prepared.encoded, k = 2
        let clicks = clicks(scene)
        let prior = try #require(with.previousPosteriorPrior)
        var expected: [Float] = []
        for n in 1...clicks.count {
            let tokens = with.clickedTokens(encoded: e, clicks: Array(clicks[..<n]), classCount: k)
            let evidence: (values: [Float], weights: [Float])? = n == 1 ? nil
                : (expected, prior.weights(encoded: e, features: prepared.adapted.queries ?? e.features,
                                           channels: prepared.adapted.channels ?? e.featureDimension,
                                           clicked: tokens, newest: clicks[n - 1]))
            var p = try with.propagateValues(encoded: e, adapted: prepared.adapted, clicked: tokens, classCount: k,
                                             previousPosterior: evidence)
            for t in 0..<e.tokenCount where tokens.classOf[t] != BeliefPropagator.ClickedTokens.none {
                for c in 0..<k { p[t * k + c] = tokens.value(t, c, classCount: k) }
            }
            if n == clicks.count {
                // The prior moves the posteriors: without it the last propagation differs.
                let plain = try with.propagateValues(encoded: e, adapted: prepared.adapted, clicked: tokens,
                                                     classCount: k)
                #expect(plain != p)
            }
            expected = p
        }
        let result = try with.propagate(encoded: e, adapted: prepared.adapted, clicks: clicks, fixed: FixedTokens(),
                                        classCount: k, previous: nil)
        let state = try #require(result.state as? PropagationState)
        #expect(state.probabilities == expected)
        #expect(state.chain == with.valueSettings)
        // The clicked pixels keep their classes.
        for click in clicks {
            #expect(result.mask.labels[click.y * scene.image.width + click.x] == UInt8(click.classIndex))
        }
    }

    @Test func aStateOfOtherSettingsDoesNotStartTheRecursion() throws {
        // A state computed without the prior (or with another weight) holds other posteriors: the propagation with
        // the prior replays the clicks instead, and gives the from-scratch posteriors.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        var with = BeliefPropagator(attention: attention) { $0.refinement = .none }
        with.previousPosteriorWeight = 0.05
        var plain = BeliefPropagator(attention: attention) { $0.refinement = .none }
        plain.previousPosteriorWeight = 0
        let (pipeline, _) = discPipeline(with)
        let prepared = try pipeline.prepare(scene.image)
        let clicks = clicks(scene)
        let first = try plain.propagate(encoded: prepared.encoded, adapted: prepared.adapted,
                                        clicks: Array(clicks.prefix(2)), fixed: FixedTokens(), classCount: 2,
                                        previous: nil)
        #expect((first.state as? PropagationState)?.chain == nil)
        let next = try with.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                      fixed: FixedTokens(), classCount: 2, previous: first.state)
        let scratch = try with.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                         fixed: FixedTokens(), classCount: 2, previous: nil)
        #expect((next.state as? PropagationState)?.probabilities
                    == (scratch.state as? PropagationState)?.probabilities)
    }

    @Test func anUndoStartsFromTheKeptPrefixes() throws {
        // Eight clicks through the states, then undos of the newest clicks one at a time, an undo of a middle click
        // and a click appended after it: every posterior equals the from-scratch recursion's bit for bit, and a state
        // keeps the posteriors of its most recent prefixes, so an undo of the newest click needs no replay.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        var with = BeliefPropagator(attention: attention) { $0.refinement = .none }
        with.previousPosteriorWeight = 0.075
        let (pipeline, _) = discPipeline(with)
        let prepared = try pipeline.prepare(scene.image)
        var all: [Click] = []
        for i in 0..<8 {
            all.append(Click(x: 6 + (i * 37) % 84, y: 5 + (i * 23) % 62, classIndex: i % 2))
        }
        func run(_ clicks: [Click], from state: (any PropagatorState)?) throws -> PropagationState {
            let incremental = try with.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                                 fixed: FixedTokens(), classCount: 2, previous: state)
            let scratch = try with.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                             fixed: FixedTokens(), classCount: 2, previous: nil)
            let a = try #require(incremental.state as? PropagationState)
            let b = try #require(scratch.state as? PropagationState)
            #expect(a.probabilities == b.probabilities, "\(clicks.count) clicks")
            #expect(incremental.mask == scratch.mask, "\(clicks.count) clicks")
            return a
        }
        var state: PropagationState?
        for n in 1...all.count { state = try run(Array(all[..<n]), from: state) }
        #expect(Set(state!.prefixPosteriors.keys) == Set(1..<8), "the prefixes of the eight clicks")
        for n in stride(from: 7, through: 5, by: -1) {
            state = try run(Array(all[..<n]), from: state)
            #expect(Set(state!.prefixPosteriors.keys) == Set(1..<n))
        }
        // Take back the second of five clicks, then click again.
        var list = Array(all[..<5])
        list.remove(at: 1)
        state = try run(list, from: state)
        list.append(all[7])
        state = try run(list, from: state)
        #expect(state!.prefixPosteriors.count == list.count - 1)
    }

    @Test func zeroWeightsLeaveStepTwoUnchanged() throws {
        // The prior's term enters every round's evidence; at weight 0 the posteriors are the same bits as without.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        let plain = BeliefPropagator(attention: attention) { $0.refinement = .none }
        let (pipeline, _) = discPipeline(plain)
        let prepared = try pipeline.prepare(scene.image)
        let e = prepared.encoded
        let tokens = plain.clickedTokens(encoded: e, clicks: clicks(scene), classCount: 2)
        let without = try plain.propagateValues(encoded: e, adapted: prepared.adapted, clicked: tokens, classCount: 2)
        let zero = try plain.propagateValues(
            encoded: e, adapted: prepared.adapted, clicked: tokens, classCount: 2,
            previousPosterior: ([Float](repeating: 0.25, count: 2 * e.tokenCount),
                                [Float](repeating: 0, count: e.tokenCount)))
        #expect(zero == without)
    }

    @Test func offItChangesNothing() throws {
        // With the weight 0 the other two options are ignored: the masks and posteriors of a click sequence, click
        // by click through the states, equal those of the propagator with the prior off and its other options at
        // their defaults, and no state carries the recursion.
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 0)
        let plain = try BeliefPropagator(attention: attention, options: ["previous_posterior_weight": .double(0)])
        let off = try BeliefPropagator(attention: attention, options: [
            "previous_posterior_weight": .double(0), "previous_posterior_radius": .double(0.3),
            "previous_posterior_distance": .string("geodesic")])
        #expect(off.previousPosteriorPrior == nil)
        let (pipeline, _) = discPipeline(plain)
        let prepared = try pipeline.prepare(scene.image)
        var a: (any PropagatorState)?, b: (any PropagatorState)?
        let clicks = clicks(scene)
        for n in 1...clicks.count {
            let ra = try plain.propagate(encoded: prepared.encoded, adapted: prepared.adapted,
                                         clicks: Array(clicks[..<n]), fixed: FixedTokens(), classCount: 2, previous: a)
            let rb = try off.propagate(encoded: prepared.encoded, adapted: prepared.adapted,
                                       clicks: Array(clicks[..<n]), fixed: FixedTokens(), classCount: 2, previous: b)
            #expect(ra.mask == rb.mask)
            let sa = try #require(ra.state as? PropagationState), sb = try #require(rb.state as? PropagationState)
            #expect(sa.probabilities == sb.probabilities)
            #expect(sb.chain == nil)
            a = ra.state
            b = rb.state
        }
    }

    @Test func theOptionsAreReadAndOnByDefault() throws {
        let attention = ReferenceAttention(keyIterations: 0)
        let d = try BeliefPropagator(attention: attention, options: [:])
        #expect(d.previousPosteriorWeight == 0.075 && d.previousPosteriorRadius == 0.1
                    && d.previousPosteriorDistance == .euclidean)
        let p = try BeliefPropagator(attention: attention, options: [
            "previous_posterior_weight": .double(0.075), "previous_posterior_radius": .double(8),
            "previous_posterior_distance": .string("geodesic")])
        #expect(p.previousPosteriorWeight == 0.075 && p.previousPosteriorRadius == 8
                    && p.previousPosteriorDistance == .geodesic)
        #expect(p.previousPosteriorPrior == PreviousPosteriorPrior(weight: 0.075, radius: 8, distance: .geodesic))
        for bad: [String: ConfigValue] in [["previous_posterior_weight": .double(-0.1)],
                                           ["previous_posterior_weight": .double(2)],
                                           ["previous_posterior_radius": .double(0)],
                                           ["previous_posterior_distance": .string("manhattan")]] {
            #expect(throws: (any Error).self) { try BeliefPropagator(attention: attention, options: bad) }
        }
    }
}
