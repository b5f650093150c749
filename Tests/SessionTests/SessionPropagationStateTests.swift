import Foundation
import ProbattnCore
import ProbattnImaging
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import ProbattnTesting
import Testing

/// The session core keeps the propagator's state of every session's newest mask with its prepared image, so each
/// feedback recomputes only where the mask can change, and drops it on close.
@Suite("Session propagation state")
struct SessionPropagationStateTests {
    /// The default pipeline without the graph-cut refinement, whose incremental masks equal the from-scratch ones
    /// exactly (the refinement's bounded differences are IncrementalPropagationTests' subject): any difference here
    /// is the session core handing the propagator a wrong state.
    static let exactPipeline: SegmentationPipeline = {
        var stages = PipelineFactory.defaultStages
        if let i = stages.firstIndex(where: { $0.role == .propagator }) {
            stages[i].options["refinement"] = .string("none")
        }
        return try! PipelineFactory.make(stages: stages, plugins: PluginRegistry.load(
            directory: PluginRegistry.defaultDirectory()))
    }()

    @Test(arguments: [UInt64(1), 2, 3])
    func feedbackAndUndoGiveTheMasksOfAFromScratchPropagation(seed: UInt64) throws {
        let pipeline = Self.exactPipeline
        let h = SessionHarness(pipeline: pipeline)
        let png = try Scene.png()
        try h.open("img", png: png)
        let prepared = try pipeline.prepare(try ImageDecoder.decode(png))
        var rng = SplitMix64(seed: seed)
        var clicks: [Click] = []
        for step in 0..<16 {
            let change: MaskChange
            if step % 5 == 4 {
                change = try h.undo("img", annotator: "alice")
                clicks.removeLast()
            } else {
                let x = Int.random(in: 0..<Scene.width, using: &rng), y = Int.random(in: 0..<Scene.height, using: &rng)
                let c = Int.random(in: 0...1, using: &rng)
                change = try h.click("img", x: x, y: y, class: c == 0 ? "object" : "background", annotator: "alice")
                clicks.removeAll { $0.x == x && $0.y == y }
                clicks.append(Click(x: x, y: y, classIndex: c))
            }
            let scratch = try pipeline.segment(prepared, clicks: clicks, fixed: FixedTokens(), classCount: 2)
            let differing = zip(change.mask.mask.labels, scratch.mask.labels).filter { $0 != $1 }.count
            #expect(differing == 0, "seed \(seed), step \(step)")
        }
    }

    @Test func theStateCountsAgainstTheCacheAndGoesWithClose() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try h.open("img", png: try Scene.png())
        try h.click("img", x: 80, y: 60, class: "object", annotator: "alice")
        let sessionKey = try #require(try h.store.openSessions().first?.session.storeID)
        let state = try #require(h.core.cache.state(sessionKey) as? PropagationState)
        #expect(state.clicks == [Click(x: 80, y: 60, classIndex: 0)])
        // One byte per pixel (the label mask) at least, and the cache counts it with the prepared image.
        #expect(state.memoryBytes >= Scene.width * Scene.height)
        let prepared = try #require(h.core.cache.get(sessionKey))
        #expect(h.core.cache.stats.bytes == prepared.memoryBytes + state.memoryBytes)
        try h.close("img")
        #expect(h.core.cache.state(sessionKey) == nil)
        #expect(h.core.cache.stats.entries == 0)
    }
}
