import Foundation
import ProbattnEvaluation
import ProbattnImaging
import ProbattnSegmentation
import Testing

/// `--dataset folder` and `--dataset davis` on small generated folders whose answers are known.
@Suite struct FolderDatasetTests {
    let root = NSTemporaryDirectory() + "probattn-folder-\(UUID().uuidString)"

    /// A 40×30 RGB image with a bright left half, and a grey mask drawn by `value(x, y)`.
    private func write(stem: String, imageExt: String = "png", maskExt: String = "png", images: String, masks: String,
                       value: (Int, Int) -> UInt8) throws {
        let w = 40, h = 30
        var pixels = [UInt8](repeating: 20, count: w * h * 3)
        var grey = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                if x < w / 2 { pixels[(y * w + x) * 3] = 230 }
                let v = value(x, y)
                grey[(y * w + x) * 3] = v; grey[(y * w + x) * 3 + 1] = v; grey[(y * w + x) * 3 + 2] = v
            }
        }
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: masks, withIntermediateDirectories: true)
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let imageBytes = imageExt == "jpg" ? try ImageEncoding.jpeg(image) : try ImageEncoding.png(image)
        try ImageEncoding.write(imageBytes, toPath: images + "/\(stem).\(imageExt)")
        try ImageEncoding.write(try ImageEncoding.png(RGBImage(width: w, height: h, pixels: grey)),
                                toPath: masks + "/\(stem).\(maskExt)")
    }

    @Test func masksWithAnIgnoreBandPairByStem() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let images = root + "/images", masks = root + "/masks"
        // Object: x < 18; an unknown band of value 128 over x in 18..<22; background beyond.
        for stem in ["a", "b"] {
            try write(stem: stem, images: images, masks: masks) { x, _ in x < 18 ? 255 : (x < 22 ? 128 : 0) }
        }
        let list = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks, ignoreValue: 128))
        #expect(list.map(\.name) == ["a", "b"])
        let (_, truth) = try list[0].load()
        let counts = truth.counts
        #expect(counts.object == 18 * 30 && counts.ignored == 4 * 30 && counts.background == 18 * 30)
        // Without --ignore-value, 128 is an object value like any other non-zero value.
        let plain = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks))
        #expect(try plain[0].load().truth.counts.object == 22 * 30)
        // The evaluation runs on it: a propagator that answers with the truth needs one click.
        let exact = truth.values.map { $0 == 1 ? UInt8(0) : UInt8(1) }
        let runner = try EvaluationRunner(pipeline: pipeline(ConstantPropagator(labels: exact)), maxClicks: 3)
        let (result, _) = try runner.evaluate(list[0])
        #expect(result.noc90 == 1 && result.ious == [1, 1, 1])
        for click in result.clicks { #expect(truth.values[click.y * 40 + click.x] != -1, "never in the band") }
    }

    @Test func severalInstancesGiveOneInstanceEach() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let images = root + "/images", masks = root + "/masks"
        // Values 1 (x < 10), 2 (10 <= x < 25), 255 = ignore (a 2 px border row), 0 elsewhere.
        try write(stem: "scene", images: images, masks: masks) { x, y in
            y == 0 ? 255 : (x < 10 ? 1 : (x < 25 ? 2 : 0))
        }
        let list = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks, ignoreValue: 255,
                                                            instances: true))
        #expect(list.map(\.name) == ["scene_1", "scene_2"])
        let first = try list[0].load().truth.counts, second = try list[1].load().truth.counts
        #expect(first.object == 10 * 29 && first.ignored == 40)
        #expect(second.object == 15 * 29 && second.ignored == 40)
        let only2 = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks, objectValue: 2))
        #expect(try only2[0].load().truth.counts.object == 15 * 29)
    }

    @Test func unmatchedStemsAreOneErrorListingThem() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let images = root + "/images", masks = root + "/masks"
        try write(stem: "both", images: images, masks: masks) { _, _ in 255 }
        try write(stem: "lonely", images: images, masks: root + "/elsewhere") { _, _ in 255 }
        try write(stem: "orphan", images: root + "/elsewhere", masks: masks) { _, _ in 255 }
        do {
            _ = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks))
            Issue.record("unmatched stems were accepted")
        } catch let error as BenchmarkError {
            #expect(error.message.contains("lonely (image without mask)"), "\(error)")
            #expect(error.message.contains("orphan (mask without image)"), "\(error)")
        }
    }

    @Test func davisLayoutReadsAnyNonZeroLabelAsTheObject() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        // img/*.jpg, gt/*.png; labels 1 and 3 are both the object.
        try write(stem: "bear", imageExt: "jpg", images: root + "/img", masks: root + "/gt") { x, _ in
            x < 5 ? 1 : (x < 12 ? 3 : 0)
        }
        let list = try BenchmarkDataset.instances(.davis, root: root)
        #expect(list.map(\.name) == ["bear"])
        #expect(try list[0].load().truth.counts.object == 12 * 30)
        #expect(throws: BenchmarkError.self) { try BenchmarkDataset.instances(.davis, root: root, split: .train) }
    }
}
