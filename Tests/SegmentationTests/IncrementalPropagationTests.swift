import Foundation
import ProbattnImaging
import Testing
import ProbattnStages
@testable import ProbattnSegmentation
import ProbattnEvaluation

/// The propagator's incremental path (`BeliefPropagator.propagate(…previous:)`): after every click of random click
/// sequences (with undos) on real images, the mask computed from the previous click's state must equal the mask
/// computed from scratch, except at no more than 0.01 % of the pixels, each of them a pixel whose class probability
/// lies within 1e-3 of the decision threshold (0.5 of two classes) when the pixels are not refined; with the graph-cut
/// refinement the share of differing pixels is bounded (the cut is not local) and the figures are printed.
@Suite struct IncrementalPropagationTests {
    static let datasets = BenchmarkDatasetTests.datasets

    /// Real images with their ground truth: three GrabCut images when `../shared/datasets` is present, and always
    /// the synthetic disc scene.
    static func images() throws -> [(name: String, image: RGBImage, object: [Bool])] {
        var out: [(String, RGBImage, [Bool])] = []
        if BenchmarkDatasetTests.present {
            let all = try BenchmarkDataset.instances(.grabcut, root: datasets + "/GrabCut")
            for name in ["person6", "flower"] {
                guard let instance = all.first(where: { $0.name == name }) else { continue }
                let (image, truth) = try instance.load()
                out.append((name, image, truth.values.map { $0 == 1 }))
            }
        }
        let scene = DiscScene(width: 200, height: 150, seed: 5)
        out.append(("disc", scene.image, scene.inside))
        return out
    }

    struct Comparison {
        var differing = 0
        var offThreshold = 0
        var pixels = 0
        var changedArea = 0
        /// Steps whose token posteriors differ between the two paths (in any bit).
        var posteriorMismatches = 0
    }

    /// Runs `clicks` random clicks (every 7th step an undo) on `image` through both paths and compares them.
    func compare(_ propagator: BeliefPropagator, pipeline: SegmentationPipeline, image: RGBImage, object: [Bool],
                 seed: UInt64, steps: Int, classCount k: Int = 2) throws -> Comparison {
        let prepared = try pipeline.prepare(image)
        let w = image.width, h = image.height
        var random = SplitMix64(state: seed)
        var clicks: [Click] = []
        var state: PropagationState?
        var result = Comparison()
        for step in 0..<steps {
            if step % 7 == 6, !clicks.isEmpty {
                clicks.removeLast()
            } else {
                let x = Int(random.next() % UInt64(w)), y = Int(random.next() % UInt64(h))
                // Mostly the ground truth's class, sometimes a wrong one (annotators err, random clicks conflict).
                let truthClass = object[y * w + x] ? 0 : k - 1
                let classIndex = random.next() % 8 == 0 ? Int(random.next() % UInt64(k)) : truthClass
                clicks.append(Click(x: x, y: y, classIndex: classIndex))
            }
            let incremental = try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted,
                                                       clicks: clicks, fixed: FixedTokens(), classCount: k,
                                                       previous: state)
            let scratch = try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted,
                                                   clicks: clicks, fixed: FixedTokens(), classCount: k, previous: nil)
            #expect(scratch.changed == nil)
            if state != nil { #expect(incremental.changed != nil) }
            let scratchState = try #require(scratch.state as? PropagationState)
            let incrementalState = try #require(incremental.state as? PropagationState)
            if incrementalState.probabilities != scratchState.probabilities { result.posteriorMismatches += 1 }
            let a = incremental.mask.labels, b = scratch.mask.labels
            // Outside the changed rectangle the mask is the previous one.
            if let previous = state, let rect = incremental.changed {
                result.changedArea += rect.area
                for y in 0..<h {
                    for x in 0..<w where !(x >= rect.x && x < rect.maxX && y >= rect.y && y < rect.maxY) {
                        if a[y * w + x] != previous.labels[y * w + x] {
                            Issue.record("pixel (\(x), \(y)) outside the changed rectangle \(rect) changed")
                            return result
                        }
                    }
                }
            }
            for i in 0..<(w * h) where a[i] != b[i] {
                result.differing += 1
                let p = propagator.pixelProbability(encoded: prepared.encoded, state: scratchState, x: i % w, y: i / w,
                                                    classIndex: Int(b[i]))
                if abs(p - 1 / Float(k)) > 1e-3 { result.offThreshold += 1 }
            }
            result.pixels += w * h
            state = incremental.state as? PropagationState
        }
        return result
    }

    func pipeline(refinement: String, options: [String: ConfigValue] = [:]) throws
        -> (SegmentationPipeline, BeliefPropagator) {
        var stages = PipelineFactory.defaultStages
        if let i = stages.firstIndex(where: { $0.role == .propagator }) {
            stages[i].options["refinement"] = .string(refinement)
            stages[i].options.merge(options) { $1 }
        }
        let pipeline = try PipelineFactory.make(stages: stages, plugins: builtPlugins)
        return (pipeline, try #require(pipeline.propagator as? BeliefPropagator))
    }

    @Test func incrementalMasksEqualFromScratchWithoutRefinement() throws {
        let (pipeline, propagator) = try pipeline(refinement: "none")
        for (index, entry) in try Self.images().enumerated() {
            let c = try compare(propagator, pipeline: pipeline, image: entry.image, object: entry.object,
                                seed: UInt64(31 + index), steps: 24)
            print("incremental vs from scratch, refinement none, \(entry.name): \(c.differing) of \(c.pixels) pixels "
                  + "differ (\(c.offThreshold) off the threshold), changed rectangles "
                  + String(format: "%.1f", 100 * Double(c.changedArea) / Double(c.pixels)) + " % of the pixels")
            #expect(Double(c.differing) <= 1e-4 * Double(c.pixels))
            #expect(c.offThreshold == 0)
        }
    }

    @Test func incrementalMasksEqualFromScratchWithGraphCut() throws {
        let (pipeline, propagator) = try pipeline(refinement: "graph_cut")
        for (index, entry) in try Self.images().enumerated() {
            let c = try compare(propagator, pipeline: pipeline, image: entry.image, object: entry.object,
                                seed: UInt64(7 + index), steps: 24)
            print("incremental vs from scratch, graph_cut, \(entry.name): \(c.differing) of \(c.pixels) pixels differ "
                  + "(\(c.offThreshold) off the threshold), changed rectangles "
                  + String(format: "%.1f", 100 * Double(c.changedArea) / Double(c.pixels)) + " % of the pixels")
            // The minimum cut is not local: a pixel the incremental cut labels differently need not lie near the
            // threshold, so only the share of differing pixels is bounded here.
            #expect(Double(c.differing) <= 1e-4 * Double(c.pixels))
        }
    }

    /// The previous-posterior prior makes each click's posteriors depend on the previous click list's: the
    /// incremental path takes them from the state, the from-scratch path replays the list's prefixes (and so does
    /// the incremental path after an undo). Both must give the same token posteriors, bit for bit, and the same
    /// masks up to the refinement's bound.
    @Test(arguments: ["none", "graph_cut"])
    func incrementalMasksEqualFromScratchWithThePreviousPosteriorPrior(refinement: String) throws {
        let (pipeline, propagator) = try pipeline(refinement: refinement, options: [
            "previous_posterior_weight": .double(0.075), "previous_posterior_radius": .double(0.1),
            "geodesic_click_weight": .double(0.0075)])
        #expect(propagator.previousPosteriorWeight == 0.075)
        for (index, entry) in try Self.images().enumerated() {
            let c = try compare(propagator, pipeline: pipeline, image: entry.image, object: entry.object,
                                seed: UInt64(53 + index), steps: 24)
            print("incremental vs from scratch, previous-posterior prior, \(refinement), \(entry.name): "
                  + "\(c.differing) of \(c.pixels) pixels differ (\(c.offThreshold) off the threshold), "
                  + "\(c.posteriorMismatches) steps with other posteriors")
            #expect(c.posteriorMismatches == 0)
            #expect(Double(c.differing) <= 1e-4 * Double(c.pixels))
            if refinement == "none" { #expect(c.offThreshold == 0) }
        }
    }

    @Test func threeClassesAndConflictingClicksOnTheDiscScene() throws {
        let (pipeline, propagator) = try pipeline(refinement: "graph_cut")
        let scene = DiscScene(width: 160, height: 120, seed: 9)
        let c = try compare(propagator, pipeline: pipeline, image: scene.image, object: scene.inside, seed: 3,
                            steps: 20, classCount: 3)
        print("incremental vs from scratch, three classes: \(c.differing) of \(c.pixels) pixels differ")
        #expect(Double(c.differing) <= 1e-4 * Double(c.pixels))
    }

    @Test func aStateOfAnotherImageSizeOrClassCountIsIgnored() throws {
        let (pipeline, propagator) = try pipeline(refinement: "graph_cut")
        let small = try pipeline.prepare(DiscScene(width: 96, height: 72, seed: 1).image)
        let large = try pipeline.prepare(DiscScene(width: 120, height: 90, seed: 1).image)
        let clicks = [Click(x: 50, y: 30, classIndex: 0)]
        let first = try propagator.propagate(encoded: small.encoded, adapted: small.adapted, clicks: clicks,
                                             fixed: FixedTokens(), classCount: 2, previous: nil)
        let other = try propagator.propagate(encoded: large.encoded, adapted: large.adapted, clicks: clicks,
                                             fixed: FixedTokens(), classCount: 2, previous: first.state)
        #expect(other.changed == nil)
        let threeClasses = try propagator.propagate(encoded: small.encoded, adapted: small.adapted, clicks: clicks,
                                                    fixed: FixedTokens(), classCount: 3, previous: first.state)
        #expect(threeClasses.changed == nil)
        // The same clicks again: nothing to recompute.
        let again = try propagator.propagate(encoded: small.encoded, adapted: small.adapted, clicks: clicks,
                                             fixed: FixedTokens(), classCount: 2, previous: first.state)
        #expect(again.changed?.isEmpty == true)
        #expect(again.mask == first.mask)
    }
}
