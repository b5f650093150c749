import Foundation
import ProbattnImaging
import ProbattnSegmentation
import ProbattnSession
import ProbattnTesting
import Testing

/// `predict`: stateless prompts on a preparation shared by content.
@Suite("Session core: predict")
struct PredictTests {
    func predict(_ h: SessionHarness, _ prompt: PromptRequest) throws -> PredictResult {
        guard case .predicted(let result) = try h.execute(.predict(prompt)) else {
            throw ProtocolError(.internal, "not a predict result")
        }
        return result
    }

    @Test func exactlyTheCallsPointsOnASharedPreparation() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        let png = try Scene.png(seed: 4)
        let classes = ["object", "background"]
        let one = [WireClick(x: 80, y: 60, className: "object")]
        let first = try predict(h, PromptRequest(bytes: png, classes: classes, points: one, box: nil, annotator: "a"))
        #expect(!first.cached && first.timings["encode"]! > 0)
        #expect(first.mask.mask.labels[60 * 160 + 80] == 0 && first.mask.mask.labels[5 * 160 + 5] == 1)
        let two = one + [WireClick(x: 100, y: 50, className: "background")]
        let second = try predict(h, PromptRequest(bytes: png, classes: classes, points: two, box: nil, annotator: "b"))
        #expect(second.cached && second.timings["encode"] == 0)
        // Back to the first prompt: the first mask again (nothing accumulated between calls).
        let again = try predict(h, PromptRequest(contentHash: first.contentHash, classes: classes, points: one, box: nil,
                                                 annotator: "c"))
        #expect(again.cached && again.mask.mask == first.mask.mask)
        // No session, no store record.
        #expect(h.core.sessionCount == 0)
        #expect(try h.store.openSessions().isEmpty)
        #expect(errorCode { try predict(h, PromptRequest(contentHash: "sha256:00", classes: classes, points: one, box: nil,
                                                         annotator: nil)) } == .unknownImage)
        #expect(errorCode { try predict(h, PromptRequest(bytes: png, classes: classes,
                                                         points: [WireClick(x: 160, y: 0, className: "object")], box: nil,
                                                         annotator: nil)) } == .outOfBounds)
        #expect(errorCode { try predict(h, PromptRequest(bytes: png, classes: classes,
                                                         points: [WireClick(x: 1, y: 0, className: "cat")], box: nil,
                                                         annotator: nil)) } == .unknownClass)
    }

    @Test func aBoxClipsTheMaskAndAloneAddsItsCentre() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        let png = try Scene.png(seed: 5)
        let classes = ["object", "background"]
        // A box over the left half of the rectangle: nothing outside it is object.
        let box = PixelBox(x0: 30, y0: 20, x1: 79, y1: 99)
        let result = try predict(h, PromptRequest(bytes: png, classes: classes, points: [], box: box, annotator: nil))
        #expect(result.points == [WireClick(x: 54, y: 59, className: "object")])
        for y in 0..<120 {
            for x in 0..<160 where result.mask.mask.labels[y * 160 + x] == 0 {
                #expect(x >= 30 && x <= 79 && y >= 20 && y <= 99)
            }
        }
        #expect(result.mask.mask.labels[60 * 160 + 60] == 0, "inside the box and the rectangle")
        // Clipped to the image; entirely outside is an error.
        let wide = try predict(h, PromptRequest(bytes: png, classes: classes, points: [], box: PixelBox(x0: -5, y0: -5, x1: 500, y1: 500),
                                                annotator: nil))
        #expect(wide.box == PixelBox(x0: 0, y0: 0, x1: 159, y1: 119))
        #expect(errorCode { try predict(h, PromptRequest(bytes: png, classes: classes, points: [],
                                                         box: PixelBox(x0: 200, y0: 0, x1: 300, y1: 10), annotator: nil)) } == .outOfBounds)
    }
}
