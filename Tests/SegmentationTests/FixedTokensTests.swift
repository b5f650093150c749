import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation

/// The propagator's fixed tokens (a prompt box's outside as background).
@Suite struct FixedTokensTests {
    let scene = DiscScene(width: 96, height: 72)

    @Test func tokensOutsideABoxAreTheOnesWithNoPixelInIt() throws {
        let encoded = try GridFeatureEncoder(stride: 8, superpixelIterations: 0).encode(scene.image)
        // x 20...43, y 12...27 touches the cells with columns 2...5 and rows 1...3 (8 px cells).
        let fixed = FixedTokens.outside(x0: 20, y0: 12, x1: 43, y1: 27, of: encoded, classIndex: 1)
        let cols = 12
        let inside = Set((1...3).flatMap { r in (2...5).map { c in Int32(r * cols + c) } })
        #expect(Set(fixed.classOf.keys) == Set((0..<Int32(encoded.tokenCount)).filter { !inside.contains($0) }))
        #expect(fixed.classOf.values.allSatisfy { $0 == 1 })
    }

    @Test func fixedTokensActLikeClicksButClicksWin() throws {
        let attention = ReferenceAttention(keyIterations: 0)
        let p = SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8), adapter: VariantAttentionAdapter(attention: attention),
                                     propagator: BeliefPropagator(attention: attention) { $0.refinement = .none })
        let prepared = try p.prepare(scene.image)
        let click = Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0)
        // Every token fixed to background, the clicked one included: the click still keeps its token and pixel.
        let all = FixedTokens(classOf: Dictionary(uniqueKeysWithValues: (0..<Int32(prepared.encoded.tokenCount)).map { ($0, 1) }))
        let mask = try p.segment(prepared, clicks: [click], fixed: all, classCount: 2).mask
        #expect(mask.labels[click.y * scene.image.width + click.x] == 0)
        let token = prepared.encoded.tokenOfPixel[click.y * scene.image.width + click.x]
        let tokenPixels = prepared.encoded.tokenOfPixel.indices.filter { prepared.encoded.tokenOfPixel[$0] == token }
        #expect(tokenPixels.filter { mask.labels[$0] == 0 }.count * 2 > tokenPixels.count)
        // No fixed tokens: the same as the plain call.
        let plain = try p.segment(prepared, clicks: [click], classCount: 2).mask
        #expect(try p.segment(prepared, clicks: [click], fixed: FixedTokens(), classCount: 2).mask == plain)
        // Fixed tokens without clicks propagate too (a background-only prompt).
        let some = FixedTokens(classOf: [0: 1])
        #expect(try p.segment(prepared, clicks: [], fixed: some, classCount: 2).mask.labels.allSatisfy { $0 == 1 })
        #expect(throws: SegmentationError.self) {
            _ = try p.segment(prepared, clicks: [click], fixed: FixedTokens(classOf: [0: 5]), classCount: 2)
        }
    }
}
