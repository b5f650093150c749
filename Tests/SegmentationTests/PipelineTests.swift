import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The default pipeline (real plugins from the build) driven by the standard click simulator.
@Suite struct PipelineTests {
    @Test func syntheticTwoRegionImageWithinThreeClicks() throws {
        let scene = DiscScene(width: 160, height: 120, seed: 11)
        let pipeline = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        let prepared = try pipeline.prepare(scene.image)
        #expect(prepared.adapted.keysAdapted)
        let truth = try GroundTruthMask(width: 160, height: 120, values: scene.inside.map { $0 ? 1 : 0 })
        var simulator = ClickSimulator(truth: truth)
        var prediction = [Bool](repeating: false, count: 160 * 120)
        var best = 0.0
        for _ in 0..<3 {
            let click = simulator.nextClick(prediction: prediction)
            let mask = try pipeline.segment(prepared, clicks: simulator.clicks.map(\.click), classCount: 2).mask
            prediction = mask.labels.map { $0 == 0 }
            #expect(prediction[click.y * 160 + click.x] == click.isPositive)
            best = max(best, ClickMetrics.iou(truth: truth, prediction: prediction))
            if best >= 0.95 { break }
        }
        #expect(best >= 0.95)
    }

    /// The dot-product variants compare tokens through the adapter's distance embedding, so they segment too (with
    /// the raw features every token attends to the largest features and a click never reaches its region).
    @Test(arguments: ["softmax", "sigmoid", "neighborhood", "context_pool"])
    func dotProductVariantsSegmentTheTwoRegionImage(variant: String) throws {
        let scene = DiscScene(width: 160, height: 120, seed: 11)
        let stages = try PipelineFactory.stages(PipelineFactory.defaultStages, attention: variant, plugins: builtPlugins)
        let pipeline = try PipelineFactory.make(stages: stages, plugins: builtPlugins)
        let prepared = try pipeline.prepare(scene.image)
        let truth = try GroundTruthMask(width: 160, height: 120, values: scene.inside.map { $0 ? 1 : 0 })
        var simulator = ClickSimulator(truth: truth)
        var prediction = [Bool](repeating: false, count: 160 * 120)
        var best = 0.0
        for _ in 0..<3 {
            _ = simulator.nextClick(prediction: prediction)
            let mask = try pipeline.segment(prepared, clicks: simulator.clicks.map(\.click), classCount: 2).mask
            prediction = mask.labels.map { $0 == 0 }
            best = max(best, ClickMetrics.iou(truth: truth, prediction: prediction))
        }
        #expect(best >= 0.8, "\(variant): best IoU \(best) within 3 clicks")
    }

    @Test func everyVariantRunsThroughThePipeline() throws {
        let scene = DiscScene(width: 64, height: 48, seed: 3)
        for name in builtPlugins.variantNames {
            let stages = try PipelineFactory.stages(PipelineFactory.defaultStages, attention: name, plugins: builtPlugins)
            let pipeline = try PipelineFactory.make(stages: stages, plugins: builtPlugins)
            let prepared = try pipeline.prepare(scene.image)
            let click = Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)
            let mask = try pipeline.segment(prepared, clicks: [click], classCount: 2).mask
            #expect(mask.labels[click.y * 64 + click.x] == 0, "\(name)")
        }
    }
}
