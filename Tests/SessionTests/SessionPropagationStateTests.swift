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
        let own = WorkingResolution(width: Scene.width, height: Scene.height, factor: 1)
        for step in 0..<16 {
            let change = try randomStep(h, step: step, clicks: &clicks, rng: &rng, resolution: own)
            let scratch = try pipeline.segment(prepared, clicks: clicks, fixed: FixedTokens(), classCount: 2)
            let differing = zip(change.mask.mask.labels, scratch.mask.labels).filter { $0 != $1 }.count
            #expect(differing == 0, "seed \(seed), step \(step)")
        }
    }

    /// One step of a random session by one annotator: every fifth step an undo, else a click of a random class at a
    /// random pixel. `clicks` follows the clicks in force, in image coordinates (a click replaces an earlier one in
    /// the same pixel of `resolution`).
    func randomStep(_ h: SessionHarness, step: Int, clicks: inout [Click], rng: inout SplitMix64,
                    resolution: WorkingResolution) throws -> MaskChange {
        if step % 5 == 4 {
            clicks.removeLast()
            return try h.undo("img", annotator: "alice")
        }
        let x = Int.random(in: 0..<Scene.width, using: &rng), y = Int.random(in: 0..<Scene.height, using: &rng)
        let c = Int.random(in: 0...1, using: &rng)
        let change = try h.click("img", x: x, y: y, class: c == 0 ? "object" : "background", annotator: "alice")
        clicks.removeAll {
            resolution.working($0.x) == resolution.working(x) && resolution.working($0.y) == resolution.working(y)
        }
        clicks.append(Click(x: x, y: y, classIndex: c))
        return change
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

    /// An image above `limits.working_pixels` is segmented at a reduced resolution: every version the session gives
    /// (incremental, with undos) is the from-scratch mask of the working copy with the clicks mapped into it, each
    /// working pixel filling its block, at the image's own size; every clicked pixel has its click's class.
    @Test(arguments: [UInt64(4), 5])
    func aReducedImageGivesTheExpandedWorkingMask(seed: UInt64) throws {
        let pipeline = Self.exactPipeline
        // 160 × 120 within 2200 working pixels: factor 3, a 54 × 40 working copy.
        let h = SessionHarness(pipeline: pipeline, workingPixels: 2200)
        let png = try Scene.png()
        let opened = try h.open("img", png: png)
        #expect(opened.width == Scene.width && opened.height == Scene.height)
        let resolution = WorkingResolution(width: Scene.width, height: Scene.height, maxPixels: 2200)
        #expect(resolution.factor == 3 && resolution.workingWidth == 54 && resolution.workingHeight == 40)
        let prepared = try pipeline.prepare(try ImageDecoder.decode(png), resolution: resolution)
        #expect(prepared.encoded.image.width == 54)
        var rng = SplitMix64(seed: seed)
        var clicks: [Click] = []
        var previous = h.updates.last?.mask.mask
        for step in 0..<12 {
            let change = try randomStep(h, step: step, clicks: &clicks, rng: &rng, resolution: resolution)
            let mask = change.mask.mask
            #expect(mask.width == Scene.width && mask.height == Scene.height)
            let working = clicks.map { Click(x: resolution.working($0.x), y: resolution.working($0.y), classIndex: $0.classIndex) }
            let scratch = try pipeline.segment(prepared, clicks: working, fixed: FixedTokens(), classCount: 2)
            let expected = resolution.expand(scratch.mask)
            let differing = zip(mask.labels, expected.labels).filter { $0 != $1 }.count
            #expect(differing == 0, "seed \(seed), step \(step)")
            #expect(change.mask.rle == COCORLE(mask: mask, objectClass: 0), "seed \(seed), step \(step): the RLE")
            for click in clicks {
                #expect(Int(mask.labels[click.y * Scene.width + click.x]) == click.classIndex,
                        "the clicked pixel (\(click.x), \(click.y)) keeps its class")
            }
            // The update's delta rebuilds this version from the previous one.
            if let before = previous, let delta = change.mask.delta {
                var rebuilt = before
                let r = delta.rect
                if !r.isEmpty {
                    let inside = try COCORLE(size: [r.height, r.width], counts: delta.rle.counts).decodeBinary()
                    for y in 0..<r.height {
                        for x in 0..<r.width {
                            rebuilt.labels[(r.y + y) * Scene.width + r.x + x] = inside[y * r.width + x] ? 0 : 1
                        }
                    }
                }
                #expect(rebuilt == mask, "seed \(seed), step \(step): the delta")
            }
            previous = mask
        }
    }

    /// Under `first_wins` the clicks reach the propagator in log order too, so the policy decides only where clicks
    /// conflict: clicks that share no pixel, disc or token give, version by version, the masks of `latest_wins`
    /// (the click priors read the last click as the newest under both), and the state after each click holds the
    /// clicks in log order, so the next click is appended to it and not a reordered list replayed from the first.
    @Test func firstWinsGivesTheMasksOfLatestWinsWhereNoClicksConflict() throws {
        let latest = SessionHarness(pipeline: defaultPipeline, conflictPolicy: .latestWins)
        let first = SessionHarness(pipeline: defaultPipeline, conflictPolicy: .firstWins)
        let png = try Scene.png(seed: 3)
        try latest.open("img", png: png)
        try first.open("img", png: png)
        var rng = SplitMix64(seed: 11)
        var clicks: [Click] = []
        while clicks.count < 8 {
            let x = Int.random(in: 0..<Scene.width, using: &rng), y = Int.random(in: 0..<Scene.height, using: &rng)
            // No shared disc pixel and no token two clicks split between them (their tie is the policy's too):
            // a click reaches the 8 px tokens within 3 px of it, so clicks more than 14 px apart in x or in y
            // reach no token in common.
            guard clicks.allSatisfy({ abs($0.x - x) > 14 || abs($0.y - y) > 14 }) else { continue }
            let c = Int.random(in: 0...1, using: &rng), name = c == 0 ? "object" : "background"
            clicks.append(Click(x: x, y: y, classIndex: c))
            let a = try latest.click("img", x: x, y: y, class: name, annotator: "alice")
            let b = try first.click("img", x: x, y: y, class: name, annotator: "alice")
            let differing = zip(a.mask.mask.labels, b.mask.mask.labels).filter { $0 != $1 }.count
            #expect(differing == 0, "click \(clicks.count)")
            let key = try #require(try first.store.openSessions().first?.session.storeID)
            let state = try #require(first.core.cache.state(key) as? PropagationState)
            #expect(state.clicks == clicks, "click \(clicks.count): the state's clicks in log order")
        }
    }

    /// Where two clicks of different classes are equally near a pixel of both their discs, the policy decides:
    /// the later click under `latest_wins`, the earlier under `first_wins`.
    @Test func aPixelEquallyNearTwoClicksTakesTheClassThePolicyPicks() throws {
        for (policy, expected) in [(ConflictPolicy.latestWins, UInt8(1)), (.firstWins, UInt8(0))] {
            let h = SessionHarness(pipeline: defaultPipeline, conflictPolicy: policy)
            try h.open("img", png: try Scene.png())
            try h.click("img", x: 78, y: 60, class: "object", annotator: "alice")
            let change = try h.click("img", x: 82, y: 60, class: "background", annotator: "bob")
            let labels = change.mask.mask.labels
            #expect(labels[60 * Scene.width + 80] == expected, "\(policy): (80, 60), 2 px from both clicks")
            #expect(labels[60 * Scene.width + 78] == 0 && labels[60 * Scene.width + 82] == 1,
                    "\(policy): every clicked pixel keeps its class")
        }
    }
}
