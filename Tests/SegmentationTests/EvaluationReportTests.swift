import Foundation
import ProbattnImaging
@testable import ProbattnSegmentation
import ProbattnStages
import Testing
@testable import ProbattnEvaluation
import ProbattnJSON

/// Stages for driving the evaluation loop without the real encoder: the "encoder" keeps the image, the propagator
/// is a rule given by the test.
struct KeepImageEncoder: ImageEncoder {
    func encode(_ image: RGBImage, context: StageContext) throws -> EncodedImage {
        EncodedImage(image: image, tokenCount: 1, featureDimension: 1, features: [0], grid: nil,
                     tokenOfPixel: [Int32](repeating: 0, count: image.width * image.height))
    }
}

struct NoAdapter: AttentionAdapter {
    func adapt(_ encoded: EncodedImage, context: StageContext) throws -> AdaptedImage { AdaptedImage(unitCount: 1, keys: [0], keysAdapted: false) }
}

/// Paints a disc of `radius` around every click with the click's class, in click order, on a background canvas.
struct DiscPainter: Propagator {
    var radius: Int
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                   context: StageContext) throws -> SegmentationResult {
        let w = encoded.image.width, h = encoded.image.height
        var mask = LabelMask(width: w, height: h, filledWith: 1)
        for click in clicks {
            for y in max(0, click.y - radius)...min(h - 1, click.y + radius) {
                for x in max(0, click.x - radius)...min(w - 1, click.x + radius)
                where (x - click.x) * (x - click.x) + (y - click.y) * (y - click.y) <= radius * radius {
                    mask.labels[y * w + x] = UInt8(click.classIndex)
                }
            }
        }
        return SegmentationResult(mask: mask, seconds: 0)
    }
}

/// Always answers with the same mask.
struct ConstantPropagator: Propagator {
    var labels: [UInt8]
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                   context: StageContext) throws -> SegmentationResult {
        SegmentationResult(mask: LabelMask(width: encoded.image.width, height: encoded.image.height, labels: labels),
                           seconds: 0)
    }
}

/// Answers with a 2 × 1 mask whatever the image.
struct WrongSizePropagator: Propagator {
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                   context: StageContext) throws -> SegmentationResult {
        SegmentationResult(mask: LabelMask(width: 2, height: 1, labels: [0, 1]), seconds: 0)
    }
}

/// A 40 × 30 disc of radius 9 with a ground truth whose boundary band is ignored (like GrabCut's).
func discInstance() -> (image: RGBImage, truth: GroundTruthMask) {
    let w = 40, h = 30
    var values = [Int8](repeating: 0, count: w * h)
    var pixels = [UInt8](repeating: 30, count: w * h * 3)
    for y in 0..<h {
        for x in 0..<w {
            let d2 = (x - 18) * (x - 18) + (y - 14) * (y - 14)
            values[y * w + x] = d2 <= 64 ? 1 : (d2 <= 100 ? -1 : 0)
            if d2 <= 81 { pixels[(y * w + x) * 3] = 220 }
        }
    }
    return (RGBImage(width: w, height: h, pixels: pixels), try! GroundTruthMask(width: w, height: h, values: values))
}

func pipeline(_ propagator: any Propagator) -> SegmentationPipeline {
    SegmentationPipeline(encoder: KeepImageEncoder(), adapter: NoAdapter(), propagator: propagator)
}

@Suite struct EvaluationRunnerTests {
    @Test func loopRunsEveryClickAndNeverClicksTheIgnoreBand() throws {
        let (image, truth) = discInstance()
        let runner = try EvaluationRunner(pipeline: pipeline(DiscPainter(radius: 3)), maxClicks: 20)
        let (result, finalMask) = try runner.evaluate(name: "disc", image: image, truth: truth)
        #expect(result.clicks.count == 20 && result.ious.count == 20 && result.secondsPerClick.count == 20)
        #expect(result.clicks[0] == SimulatedClick(x: 18, y: 14, isPositive: true))
        for click in result.clicks { #expect(truth.values[click.y * truth.width + click.x] != -1) }
        #expect(result.ious.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(result.clickedClassKept.allSatisfy { $0 })
        // The IoU sequence is the one of the final mask at the end.
        #expect(result.ious.last == ClickMetrics.iou(truth: truth, prediction: finalMask.labels.map { $0 == 0 }))
        #expect(result.noc90 == ClickMetrics.numberOfClicks(ious: result.ious, threshold: 0.9, maxClicks: 20))
        #expect(result.ious[0] < result.ious[19])
    }

    @Test func exactAnswerNeedsOneClick() throws {
        let (image, truth) = discInstance()
        let exact = truth.values.map { $0 == 1 ? UInt8(0) : UInt8(1) }
        let runner = try EvaluationRunner(pipeline: pipeline(ConstantPropagator(labels: exact)), maxClicks: 5)
        let (result, _) = try runner.evaluate(name: "disc", image: image, truth: truth)
        #expect(result.noc85 == 1 && result.noc90 == 1)
        #expect(result.ious == [1, 1, 1, 1, 1])
        // Every later click is the tie 0 = 0: negative, at the first pixel not yet... (0, 0) each time.
        #expect(result.clicks.dropFirst().allSatisfy { $0 == SimulatedClick(x: 0, y: 0, isPositive: false) })
    }

    @Test func unresponsivePipelineFailsAndIsReported() throws {
        let (image, truth) = discInstance()
        let background = [UInt8](repeating: 1, count: image.width * image.height)
        let runner = try EvaluationRunner(pipeline: pipeline(ConstantPropagator(labels: background)), maxClicks: 20)
        let (result, _) = try runner.evaluate(name: "disc", image: image, truth: truth)
        #expect(result.noc85 == 20 && result.noc90 == 20)
        #expect(result.clickedClassKept.allSatisfy { !$0 })  // every click is positive and ignored
        let summary = EvaluationSummary(dataset: "synthetic", split: "all", results: [result], maxClicks: 20,
                                        config: .null, secondsTotal: 0)
        #expect(summary.fail90 == 1 && summary.fail85 == 1 && summary.clickedClassKept == 0)
    }

    @Test func wrongMaskSizeIsAnError() throws {
        let (image, truth) = discInstance()
        let runner = try EvaluationRunner(pipeline: pipeline(WrongSizePropagator()), maxClicks: 2)
        #expect(throws: EvaluationError.self) { try runner.evaluate(name: "disc", image: image, truth: truth) }
        #expect(throws: EvaluationError.self) { try EvaluationRunner(pipeline: pipeline(DiscPainter(radius: 1)), maxClicks: 0) }
    }
}

@Suite struct EvaluationReportTests {
    private func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "probattn-report-\(UUID().uuidString)"
        return path
    }

    @Test func summaryAggregatesAndResponsivenessIsMeasured() {
        func result(_ name: String, _ ious: [Double], kept: [Bool]) -> InstanceResult {
            InstanceResult(name: name, split: nil, width: 1, height: 1, clicks: [], ious: ious,
                           noc85: ClickMetrics.numberOfClicks(ious: ious, threshold: 0.85, maxClicks: 3),
                           noc90: ClickMetrics.numberOfClicks(ious: ious, threshold: 0.9, maxClicks: 3),
                           clickedClassKept: kept, secondsDecode: 0.5, secondsOpen: 0.2, secondsPerClick: [0.01, 0.03, 0.02])
        }
        let results = [result("a", [0.5, 0.95, 0.9], kept: [true, true, true]),
                       result("b", [0.86, 0.8, 0.7], kept: [true, false, true])]
        let summary = EvaluationSummary(dataset: "x", split: "all", results: results, maxClicks: 3, config: .null,
                                        secondsTotal: 1)
        #expect(summary.noc85 == 1.5)   // a: 2, b: 1
        #expect(summary.noc90 == 2.5)   // a: 2, b: never → 3
        #expect(summary.fail90 == 1)
        #expect(zip(summary.miouAt, [0.68, 0.875, 0.8]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(abs(summary.maxMiouDrop - 0.075) < 1e-12)
        #expect(abs(summary.clickedClassKept - 5.0 / 6.0) < 1e-12)
        #expect(abs(summary.secondsPerClick - 0.02) < 1e-12)
        #expect(abs(summary.secondsPerImageOpen - 0.2) < 1e-12)
    }

    @Test func reportFilesHaveTheInterfaceKeys() throws {
        let (image, truth) = discInstance()
        let runner = try EvaluationRunner(pipeline: pipeline(DiscPainter(radius: 4)), maxClicks: 6)
        let first = try runner.evaluate(name: "disc", image: image, truth: truth).result
        var second = try runner.evaluate(name: "disc,2", image: image, truth: truth).result
        second.split = .test
        let config = JSONValue.object(["stages": JSONValue.stages([StageSpec(role: .encoder, type: "fake",
                                                                             options: ["stride": .int(4)])])])
        let summary = EvaluationSummary(dataset: "synthetic", split: "all", results: [first, second], maxClicks: 6,
                                        config: config, secondsTotal: 0.1)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try EvaluationReport.write(summary: summary, results: [first, second], to: directory)

        let summaryData = try #require(FileManager.default.contents(atPath: directory + "/summary.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: summaryData) as? [String: Any])
        for key in ["dataset", "images", "noc85", "noc90", "fail90", "miou_at", "seconds_per_click",
                    "seconds_per_image_open", "config", "clicked_class_kept", "max_miou_drop"] {
            #expect(json[key] != nil, "summary.json lacks \(key)")
        }
        #expect(json["dataset"] as? String == "synthetic")
        #expect(json["images"] as? Int == 2)
        let miou = try #require(json["miou_at"] as? [Double])
        #expect(miou.count == 6 && miou.allSatisfy { $0 >= 0 && $0 <= 1 })
        let stages = (json["config"] as? [String: Any])?["stages"] as? [[String: Any]]
        #expect((stages?.first?["options"] as? [String: Any])?["stride"] as? Int == 4)
        #expect(try EvaluationReport.readSummary(directory) == summary)

        let instancesData = try #require(FileManager.default.contents(atPath: directory + "/instances.json"))
        let instances = try #require(try JSONSerialization.jsonObject(with: instancesData) as? [[String: Any]])
        #expect(instances.count == 2)
        #expect((instances[0]["ious"] as? [Double])?.count == 6)
        let clicks = try #require(instances[0]["clicks"] as? [[String: Any]])
        #expect(clicks.first?["x"] as? Int == 18 && clicks.first?["y"] as? Int == 14 && clicks.first?["positive"] as? Bool == true)
        #expect(instances[1]["split"] as? String == "test")

        let csv = try String(contentsOfFile: directory + "/instances.csv", encoding: .utf8)
        let lines = csv.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0] == "name,split,noc85,noc90,iou_1,iou_2,iou_3,iou_4,iou_5,iou_6")
        #expect(lines[2].hasPrefix("\"disc,2\",test,"))

        let svg = try String(contentsOfFile: directory + "/miou.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("<polyline") && svg.hasSuffix("</svg>\n"))
    }

    @Test func plotHasOneLineAndLegendEntryPerSeries() {
        let plot = SVGLinePlot(title: "a < b", xLabel: "clicks", yLabel: "mIoU",
                               series: [.init(name: "one", values: [0.1, 0.5, 0.9]),
                                        .init(name: "two & more", values: [0.2, 0.4, 0.6])])
        let svg = plot.svg()
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.contains("two &amp; more") && svg.contains("a &lt; b"))
    }

    @Test func masksAreSavedAsPNGAndRLE() throws {
        let mask = LabelMask(width: 3, height: 2, labels: [0, 1, 1, 0, 0, 1])
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let paths = try MaskExport.write(mask, name: "m", directory: directory)
        let png = try ImageDecoder.decodeFile(atPath: paths.png)
        #expect(stride(from: 0, to: png.pixels.count, by: 3).map { png.pixels[$0] } == [255, 0, 0, 255, 255, 0])
        let rleData = try #require(FileManager.default.contents(atPath: paths.rle))
        let rle = try JSONDecoder().decode(COCORLE.self, from: rleData)
        #expect(try rle.labelMask() == mask)
    }
}

/// The benchmark folders themselves, when `../shared/datasets` is present next to the repository.
@Suite struct BenchmarkDatasetTests {
    static let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/datasets").standardized.path
    static var present: Bool { FileManager.default.fileExists(atPath: datasets + "/Berkeley/pairs.tsv") }

    @Test(.enabled(if: present)) func listsBothBenchmarksWithTheirSplits() throws {
        let grabCut = try BenchmarkDataset.instances(.grabcut, root: Self.datasets + "/GrabCut")
        #expect(grabCut.count == 50)
        #expect(grabCut.contains { $0.name == "banana1" && $0.imagePath.hasSuffix("data_GT/banana1.bmp") })
        #expect(throws: BenchmarkError.self) {
            try BenchmarkDataset.instances(.grabcut, root: Self.datasets + "/GrabCut", split: .test)
        }
        let berkeley = try BenchmarkDataset.instances(.berkeley, root: Self.datasets + "/Berkeley")
        #expect(berkeley.count == 100)
        #expect(try BenchmarkDataset.instances(.berkeley, root: Self.datasets + "/Berkeley", split: .train).count == 46)
        #expect(try BenchmarkDataset.instances(.berkeley, root: Self.datasets + "/Berkeley", split: .test).count == 54)
        #expect(berkeley.filter { $0.imagePath.hasSuffix("images/189011.jpg") }.count == 3)
        #expect(throws: BenchmarkError.self) { try BenchmarkDataset.instances(.grabcut, root: Self.datasets) }
    }

    @Test(.enabled(if: present)) func sidewaysBerkeleyImageIsRotatedToMatchItsMask() throws {
        let instance = try #require(try BenchmarkDataset.berkeley(root: Self.datasets + "/Berkeley")
            .first { $0.name == "101087" })
        #expect(instance.imageTransform == .rotate90Clockwise)
        let (image, truth) = try instance.load()
        #expect(image.width == 321 && image.height == 481 && truth.width == 321)
    }

    /// The click sequences RITM's own `_get_next_click` (numpy + `cv2.distanceTransform`, run once with OpenCV 4 on
    /// these masks) chose when every click paints a disc of radius 60 with its label, pasted as literals.
    static let ritmClicks: [String: [(Int, Int, Bool)]] = [
        "banana1": [(380, 341, true), (236, 347, true), (497, 281, true), (128, 306, true), (547, 185, true), (62, 250, true), (310, 390, true), (461, 355, true), (306, 307, true), (302, 266, false)],
        "person1": [(345, 178, true), (344, 382, true), (320, 280, true), (250, 412, true), (436, 413, true), (156, 419, true), (524, 421, true), (398, 244, true), (387, 107, true), (398, 66, false)],
        "teddy": [(145, 179, true), (130, 96, true), (88, 294, true), (188, 299, true), (141, 308, false), (211, 266, false), (75, 256, false), (85, 295, true), (62, 262, false), (84, 295, true)],
    ]

    @Test(.enabled(if: present)) func simulatorMatchesRITMsCodeOnGrabCutMasks() throws {
        let runner = try EvaluationRunner(pipeline: pipeline(DiscPainter(radius: 60)), maxClicks: 10)
        for (name, expected) in Self.ritmClicks {
            let truth = try GroundTruthMask.load(path: Self.datasets + "/GrabCut/boundary_GT/\(name).bmp", rule: .grabCut)
            let image = RGBImage(width: truth.width, height: truth.height,
                                 pixels: [UInt8](repeating: 0, count: truth.width * truth.height * 3))
            let clicks = try runner.evaluate(name: name, image: image, truth: truth).result.clicks
            #expect(clicks == expected.map { SimulatedClick(x: $0.0, y: $0.1, isPositive: $0.2) }, "\(name)")
        }
    }

    @Test func rotationIsClockwise() {
        // 3 wide, 2 high: a b c / d e f  →  clockwise: d a / e b / f c.
        let image = RGBImage(width: 3, height: 2, pixels: [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6])
        let rotated = ImageTransform.rotate90Clockwise.apply(image)
        #expect(rotated.width == 2 && rotated.height == 3)
        #expect(stride(from: 0, to: 18, by: 3).map { rotated.pixels[$0] } == [4, 1, 5, 2, 6, 3])
    }
}

/// The evaluation loop with the real stages (reference attention, no plugin) on the two-region scene.
@Suite struct EvaluationWithRealStagesTests {
    @Test func simulatedClicksReachNinetyFivePercentWithinThree() throws {
        let scene = DiscScene(width: 96, height: 72)
        let attention = ReferenceAttention(keyIterations: 2)
        let stages = SegmentationPipeline(encoder: GridFeatureEncoder(stride: 8),
                                          adapter: VariantAttentionAdapter(attention: attention),
                                          propagator: BeliefPropagator(attention: attention))
        let truth = try GroundTruthMask(width: 96, height: 72, values: scene.inside.map { $0 ? 1 : 0 })
        let (result, _) = try EvaluationRunner(pipeline: stages, maxClicks: 3)
            .evaluate(name: "disc scene", image: scene.image, truth: truth)
        #expect(result.clicks[0].isPositive)
        #expect(result.ious.contains { $0 >= 0.95 })
        #expect(result.ious.last! >= 0.95)
        #expect(result.clickedClassKept.allSatisfy { $0 })
    }
}
