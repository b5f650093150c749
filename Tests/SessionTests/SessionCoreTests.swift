import Foundation
import ProbattnImaging
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import ProbattnTesting
import Testing

/// A dark 160×120 image with a bright rectangle (the "object") over x in [40, 120), y in [30, 90).
enum Scene {
    static let width = 160, height = 120

    static func png(width: Int = width, height: Int = height, seed: UInt8 = 0) throws -> [UInt8] {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3
                let bright = (width / 4..<width * 3 / 4).contains(x) && (height / 4..<height * 3 / 4).contains(y)
                let noise = UInt8(truncatingIfNeeded: (x * 7 + y * 13 + Int(seed)) % 9)
                pixels[o] = bright ? 220 &+ noise : 25 &+ noise
                pixels[o + 1] = bright ? 190 &+ noise : 35 &+ noise
                pixels[o + 2] = bright ? 40 &+ noise : 95 &+ noise
            }
        }
        return try ImageEncoding.png(RGBImage(width: width, height: height, pixels: pixels))
    }
}

/// The pipeline of the default config, loaded once for the suite.
let defaultPipeline: SegmentationPipeline = try! SessionHarness.defaultPipeline()

/// What a code an error thrown by `body` has.
func errorCode<T>(_ body: () throws -> T) -> ErrorCode? {
    do { _ = try body(); return nil } catch let error as ProtocolError { return error.code } catch { return nil }
}

@Suite("Session core")
struct SessionCoreTests {
    @Test func openFeedbackUndoGetMaskClose() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        let opened = try h.open("img", png: try Scene.png(), annotator: "alice")
        #expect(opened.width == 160 && opened.height == 120 && opened.version == 0 && !opened.reopened)
        #expect(opened.contentHash.hasPrefix("sha256:"))
        let first = try h.click("img", x: 80, y: 60, class: "object", annotator: "alice")
        #expect(first.version == 1 && first.clickCount == 1 && first.added.count == 1)
        let inside = first.mask.mask.labels[60 * 160 + 80], outside = first.mask.mask.labels[5 * 160 + 5]
        #expect(inside == 0 && outside == 1, "one click inside segments the rectangle")
        let second = try h.click("img", x: 10, y: 10, class: "background", annotator: "bob")
        #expect(second.version == 2 && second.clickCount == 2)
        #expect(second.added[0].id > first.added[0].id, "click ids increase")
        // Undo takes back only the annotator's own last click.
        let undone = try h.undo("img", annotator: "alice")
        #expect(undone.version == 3 && undone.clickCount == 1 && undone.undone?.id == first.added[0].id)
        #expect(errorCode { try h.undo("img", annotator: "alice") } == .nothingToUndo)
        let snapshot = try h.mask("img")
        #expect(snapshot.version == 3 && snapshot.annotator == "alice" && snapshot.clickCount == 1)
        #expect(h.updates.map(\.version) == [0, 1, 2, 3])
        #expect(h.updates.map(\.cause) == [.open, .feedback, .feedback, .undo])
        #expect(h.updates[1].added.first?.annotator == "alice" && h.updates[2].added.first?.className == "background")
        #expect(try h.close("img").version == 3)
        #expect(errorCode { try h.mask("img") } == .unknownImage)
    }

    @Test func aSecondOpenJoinsAndDifferentContentIsRefused() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try h.open("img", png: try Scene.png(), annotator: "alice")
        let joined = try h.open("img", png: try Scene.png(), annotator: "bob")
        #expect(joined.reopened && joined.version == 0)
        #expect(errorCode { try h.open("img", png: try Scene.png(seed: 3)) } == .imageExists)
        #expect(errorCode { try h.open("img", png: try Scene.png(), classes: ["a", "b", "c"]) } == .imageExists)
        #expect(h.core.summaries().first?.participants == ["alice", "bob"])
    }

    @Test func badCommandsChangeNothing() throws {
        let h = SessionHarness(pipeline: defaultPipeline, maxImagePixels: 20_000)
        try h.open("img", png: try Scene.png())
        for (x, y) in [(160, 10), (10, 120), (-1, 5), (5, -1)] {
            #expect(errorCode { try h.click("img", x: x, y: y, class: "object", annotator: "a") } == .outOfBounds)
        }
        #expect(errorCode { try h.click("img", x: 5, y: 5, class: "cat", annotator: "a") } == .unknownClass)
        #expect(errorCode { try h.click("nope", x: 5, y: 5, class: "object", annotator: "a") } == .unknownImage)
        #expect(errorCode { try h.undo("nope", annotator: "a") } == .unknownImage)
        #expect(errorCode { try h.close("nope") } == .unknownImage)
        #expect(try h.mask("img").version == 0, "a refused request changes nothing")
        #expect(errorCode { try h.open("junk", png: Array("not an image".utf8)) } == .badImage)
        let png = try Scene.png()
        #expect(errorCode { try h.open("cut", png: Array(png.prefix(png.count / 2))) } == .badImage)
        let jpeg = try ImageEncoding.jpeg(try ImageDecoder.decode(png, maxPixels: Int.max))
        #expect(errorCode { try h.open("cutjpeg", png: Array(jpeg.prefix(200))) } == .badImage)
        #expect(errorCode { try h.open("big", png: try Scene.png(width: 200, height: 120)) } == .imageTooLarge)
        #expect(errorCode { try h.mask("cut") } == .unknownImage, "a refused open leaves no session")
        #expect(h.updates.count == 1, "only the open published")
    }

    @Test func clicksOfTwoClassesOnOneTokenBothKeepTheirPixel() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try h.open("img", png: try Scene.png())
        // Two annotators, two classes, 2 px apart: on one 8 px token.
        try h.click("img", x: 41, y: 31, class: "object", annotator: "alice")
        let change = try h.click("img", x: 43, y: 31, class: "background", annotator: "bob")
        #expect(change.overridden.isEmpty, "different pixels: no click is overridden")
        #expect(change.mask.mask.labels[31 * 160 + 41] == 0 && change.mask.mask.labels[31 * 160 + 43] == 1)
    }

    @Test func clicksOnTheSamePixelFollowThePolicyAndListTheLoser() throws {
        for policy in ConflictPolicy.allCases {
            let h = SessionHarness(pipeline: defaultPipeline, conflictPolicy: policy)
            try h.open("img", png: try Scene.png())
            let a = try h.click("img", x: 50, y: 40, class: "object", annotator: "alice")
            let b = try h.click("img", x: 50, y: 40, class: "background", annotator: "bob")
            let winner = policy == .latestWins ? b : a, loser = policy == .latestWins ? a : b
            #expect(b.overridden == [loser.added[0].id], "\(policy): the losing click is listed")
            #expect(h.updates.last?.overridden == b.overridden, "and so does the update")
            let expected: UInt8 = winner.added[0].className == "object" ? 0 : 1
            #expect(b.mask.mask.labels[40 * 160 + 50] == expected, "\(policy)")
            // Undoing the winner brings the loser back into force.
            let undone = try h.undo("img", annotator: winner.added[0].annotator)
            #expect(undone.overridden.isEmpty)
            let back: UInt8 = loser.added[0].className == "object" ? 0 : 1
            #expect(undone.mask.mask.labels[40 * 160 + 50] == back)
        }
    }

    @Test func everyActiveClickKeepsItsClassOverManyRandomClicks() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try h.open("img", png: try Scene.png())
        var rng = SystemRandomNumberGenerator()
        var clicks: [(Int, Int, UInt8)] = []
        for step in 0..<40 {
            let x = Int.random(in: 0..<160, using: &rng), y = Int.random(in: 0..<120, using: &rng)
            let c = Int.random(in: 0...1, using: &rng)
            let change = try h.click("img", x: x, y: y, class: c == 0 ? "object" : "background",
                                     annotator: step % 2 == 0 ? "alice" : "bob")
            clicks.removeAll { $0.0 == x && $0.1 == y }   // latest wins on the same pixel
            clicks.append((x, y, UInt8(c)))
            for (cx, cy, cc) in clicks {
                #expect(change.mask.mask.labels[cy * 160 + cx] == cc, "step \(step): click at (\(cx), \(cy))")
            }
        }
    }

    @Test func aRestartResumesFromTheStoreAndKeepsWorking() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try h.open("img", png: try Scene.png())
        try h.click("img", x: 80, y: 60, class: "object", annotator: "alice")
        let before = try h.click("img", x: 10, y: 10, class: "background", annotator: "bob")
        let again = try h.restarted()
        let resumed = try again.mask("img")
        #expect(resumed.version == 2 && resumed.clickCount == 2)
        #expect(resumed.mask == before.mask.mask, "the stored latest mask")
        // The image is prepared again from the stored bytes; undo still knows whose clicks are whose.
        let undone = try again.undo("img", annotator: "alice")
        #expect(undone.version == 3 && undone.clickCount == 1)
        #expect(h.store.clickLog(session: 1).map(\.undone) == [true, false])
    }
}

/// A propagator that blocks until released: makes a queue fill deterministically.
final class GatedPropagator: Propagator, Sendable {
    let gate = DispatchSemaphore(value: 0)
    let entered = DispatchSemaphore(value: 0)
    let inner: any Propagator
    init(_ inner: any Propagator) { self.inner = inner }
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                   context: StageContext) throws -> SegmentationResult {
        if !clicks.isEmpty {
            entered.signal()
            gate.wait()
        }
        return try inner.propagate(encoded: encoded, adapted: adapted, clicks: clicks, classCount: classCount,
                                   context: context)
    }
}

@Suite("Session dispatcher")
struct SessionDispatcherTests {
    @Test func aFullImageQueueAnswersBusyAndAcceptedWorkRunsInOrder() throws {
        let gated = GatedPropagator(defaultPipeline.propagator)
        let pipeline = SegmentationPipeline(encoder: defaultPipeline.encoder, adapter: defaultPipeline.adapter,
                                            propagator: gated)
        let core = SessionCore(settings: SessionSettings(maxImagePixels: 1 << 24, conflictPolicy: .latestWins,
                                                         storesImagePaths: false, pipeline: pipeline),
                               persistence: InMemorySessionStore(), cache: PreparedCache(budgetBytes: 1 << 30))
        let dispatcher = SessionDispatcher(core: core, scheduler: WorkScheduler(workers: 2, perKeyLimit: 2,
                                                                                 totalLimit: 100))
        let results = Locked<[String: Result<CommandResult, ProtocolError>]>([:])
        let updates = Locked<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        dispatcher.addListener { update in updates.withLock { $0.append(update.version) } }
        func submit(_ id: String, _ body: RequestBody) {
            dispatcher.submit(Request(requestID: id, body)) { result in
                results.withLock { $0[id] = result }
                done.signal()
            }
        }
        submit("open", .openImage(imageID: "img", classes: ["object", "background"], annotator: nil, sourcePath: nil,
                                  publishPNG: false, bytes: try Scene.png()))
        #expect(done.wait(timeout: .now() + 60) == .success)
        func click(_ i: Int) -> RequestBody {
            .feedback(imageID: "img", annotator: "a", clicks: [WireClick(x: 40 + i, y: 60, className: "object")])
        }
        submit("c0", click(0))
        #expect(gated.entered.wait(timeout: .now() + 60) == .success, "the first click is running")
        submit("c1", click(1))
        submit("c2", click(2))
        submit("c3", click(3))   // two are waiting: refused at once
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(results.withLock { $0["c3"] }.map { if case .failure(let e) = $0 { return e.code == .busy }; return false } == true)
        #expect(dispatcher.health().queueDepths["img"] == 3)
        for _ in 0..<3 { gated.gate.signal() }
        for _ in 0..<3 { #expect(done.wait(timeout: .now() + 60) == .success) }
        dispatcher.scheduler.shutdown()   // waits for the jobs, whose listeners run after their completion
        #expect(updates.withLock { $0 } == [0, 1, 2, 3], "updates in version order")
        let versions = ["c0", "c1", "c2"].compactMap { id -> Int? in
            guard case .success(.changed(let c))? = results.withLock({ $0[id] }) else { return nil }
            return c.version
        }
        #expect(versions == [1, 2, 3], "accepted clicks applied in arrival order")
    }
}
