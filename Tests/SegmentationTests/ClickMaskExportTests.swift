import Foundation
import ProbattnImaging
@testable import ProbattnSegmentation
import ProbattnStages
import Testing
@testable import ProbattnEvaluation
import Synchronization

/// `probattn eval --save-click-masks`: the runner hands every click's mask to its sink, and the exported files
/// decode back to the masks and token footprint.
@Suite struct ClickMaskExportTests {
    /// Collects what the sink receives (the sink is @Sendable).
    final class Received: Sendable {
        private let items = Mutex<[(String, Int, LabelMask)]>([])
        func add(_ item: (String, Int, LabelMask)) { items.withLock { $0.append(item) } }
        var all: [(String, Int, LabelMask)] { items.withLock { $0 } }
    }

    @Test func theSinkGetsTheMaskOfEveryClickInOrder() throws {
        let (image, truth) = discInstance()
        let received = Received()
        let runner = try EvaluationRunner(pipeline: pipeline(DiscPainter(radius: 3)), maxClicks: 4,
                                          clickMaskSink: { name, click, mask in received.add((name, click, mask)) })
        let (result, finalMask) = try runner.evaluate(name: "disc", image: image, truth: truth)
        let items = received.all
        #expect(items.map(\.1) == [1, 2, 3, 4] && items.allSatisfy { $0.0 == "disc" })
        #expect(items.last?.2 == finalMask)
        for (k, item) in items.enumerated() {
            let iou = ClickMetrics.iou(truth: truth, prediction: item.2.labels.map { $0 == 0 })
            #expect(iou == result.ious[k])
        }
    }

    @Test func filesDecodeBackToTheMaskAndTheTokens() throws {
        let folder = NSTemporaryDirectory() + "probattn-clickmasks-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let w = 5, h = 3
        var mask = LabelMask(width: w, height: h, filledWith: 1)
        mask.labels[7] = 0
        let maskPath = try ClickMaskExport.writeMask(mask, click: 3, name: "img", folder: folder)
        #expect(maskPath.hasSuffix("img/click-03.png"))
        let decoded = try ImageDecoder.decodeFile(atPath: maskPath)
        for i in 0..<(w * h) { #expect((decoded.pixels[3 * i] == 255) == (i == 7)) }

        let tokens: [Int32] = (0..<(w * h)).map { Int32($0 * 300) }   // indices above 255 need both bytes
        let encoded = EncodedImage(image: RGBImage(width: w, height: h, pixels: [UInt8](repeating: 0, count: w * h * 3)),
                                   tokenCount: 4201, featureDimension: 1, features: [Float](repeating: 0, count: 4201),
                                   grid: nil, tokenOfPixel: tokens)
        let tokenPath = try ClickMaskExport.writeTokens(encoded, resolution: WorkingResolution(width: w, height: h,
                                                                                             factor: 1),
                                                        name: "img", folder: folder)
        let back = try ImageDecoder.decodeFile(atPath: tokenPath)
        for i in 0..<(w * h) {
            #expect(Int32(back.pixels[3 * i]) * 256 + Int32(back.pixels[3 * i + 1]) == tokens[i])
        }
        #expect(throws: (any Error).self) { try ClickMaskExport.writeMask(mask, click: 1, name: "a/b", folder: folder) }
    }

    /// An image above the working budget: its click masks are at its own size, so the footprint written beside them
    /// is too, every pixel with the token of its working pixel.
    @Test func theFootprintOfAReducedImageIsWrittenAtTheImageSize() throws {
        let folder = NSTemporaryDirectory() + "probattn-clickmasks-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let resolution = WorkingResolution(width: 7, height: 5, factor: 3)   // working copy 3 × 2
        let tokens: [Int32] = [0, 1, 2, 300, 301, 302]
        let encoded = EncodedImage(image: RGBImage(width: 3, height: 2, pixels: [UInt8](repeating: 0, count: 18)),
                                   tokenCount: 303, featureDimension: 1, features: [Float](repeating: 0, count: 303),
                                   grid: nil, tokenOfPixel: tokens)
        let path = try ClickMaskExport.writeTokens(encoded, resolution: resolution, name: "big", folder: folder)
        let back = try ImageDecoder.decodeFile(atPath: path)
        #expect(back.width == 7 && back.height == 5)
        for y in 0..<5 {
            for x in 0..<7 {
                let i = y * 7 + x
                #expect(Int32(back.pixels[3 * i]) * 256 + Int32(back.pixels[3 * i + 1]) == tokens[(y / 3) * 3 + x / 3],
                        "pixel \(x), \(y)")
            }
        }
        // An encoding of another size is not this image's working copy.
        #expect(throws: (any Error).self) {
            try ClickMaskExport.writeTokens(encoded, resolution: WorkingResolution(width: 7, height: 5, factor: 1),
                                            name: "big", folder: folder)
        }
    }
}
