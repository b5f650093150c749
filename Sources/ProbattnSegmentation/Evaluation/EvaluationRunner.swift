import Foundation
import ProbattnImaging

/// Everything measured on one benchmark instance.
public struct InstanceResult: Sendable, Equatable, Codable {
    public var name: String
    public var split: BenchmarkSplit?
    public var width: Int
    public var height: Int
    /// The simulated clicks, in order.
    public var clicks: [SimulatedClick]
    /// IoU after each click.
    public var ious: [Double]
    public var noc85: Int
    public var noc90: Int
    /// For each click: whether the clicked pixel has the clicked class in the mask that answered it.
    public var clickedClassKept: [Bool]
    /// Decoding the image and mask files (not part of the pipeline).
    public var secondsDecode: Double
    /// `SegmentationPipeline.prepare`: encoding and key adaptation, done once per image.
    public var secondsOpen: Double
    /// `SegmentationPipeline.segment` per click: the per-click work.
    public var secondsPerClick: [Double]

    enum CodingKeys: String, CodingKey {
        case name, split, width, height, clicks, ious, noc85, noc90
        case clickedClassKept = "clicked_class_kept"
        case secondsDecode = "seconds_decode"
        case secondsOpen = "seconds_open"
        case secondsPerClick = "seconds_per_click"
    }
}

/// Why an evaluation could not run.
public struct EvaluationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs the click loop of `evaluation.md` §1 on one instance with a pipeline: clicks from the simulator, the
/// pipeline's class map after each click (object = class 0, the equivalent of RITM's `prob > 0.49`), IoU after
/// each. All `maxClicks` clicks are always run (RITM's `target_iou = 1.01` mode, needed for the mIoU curve); NoC@85
/// and NoC@90 read from that sequence equal those of a run stopped at 90 %, since the IoUs up to the stop are the same.
public struct EvaluationRunner: Sendable {
    public let pipeline: SegmentationPipeline
    public let maxClicks: Int
    /// The image-size limit applied when decoding the benchmark's files (nil: none).
    public let maxPixels: Int?

    public init(pipeline: SegmentationPipeline, maxClicks: Int = 20, maxPixels: Int? = nil) throws {
        guard maxClicks >= 1 else { throw EvaluationError("--max-clicks must be at least 1, got \(maxClicks)") }
        self.pipeline = pipeline
        self.maxClicks = maxClicks
        self.maxPixels = maxPixels
    }

    /// Loads and evaluates one benchmark instance. Returns the result and the final mask (after the last click).
    public func evaluate(_ instance: BenchmarkInstance) throws -> (result: InstanceResult, finalMask: LabelMask) {
        let start = DispatchTime.now().uptimeNanoseconds
        let (image, truth) = try instance.load(maxPixels: maxPixels)
        let decode = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var run = try evaluate(name: instance.name, image: image, truth: truth)
        run.result.split = instance.split
        run.result.secondsDecode = decode
        return run
    }

    /// Evaluates one image against its ground truth.
    public func evaluate(name: String, image: RGBImage, truth: GroundTruthMask) throws
        -> (result: InstanceResult, finalMask: LabelMask) {
        guard image.width == truth.width, image.height == truth.height else {
            throw EvaluationError("\(name): image \(image.width)x\(image.height) but mask \(truth.width)x\(truth.height)")
        }
        let pixelCount = image.width * image.height
        let openStart = DispatchTime.now().uptimeNanoseconds
        let prepared = try pipeline.prepare(image)
        let secondsOpen = Double(DispatchTime.now().uptimeNanoseconds - openStart) / 1e9

        var simulator = ClickSimulator(truth: truth)
        var prediction = [Bool](repeating: false, count: pixelCount)
        var mask = LabelMask(width: image.width, height: image.height, filledWith: 1)
        var ious: [Double] = []
        var kept: [Bool] = []
        var times: [Double] = []
        for _ in 0..<maxClicks {
            let click = simulator.nextClick(prediction: prediction)
            let clickStart = DispatchTime.now().uptimeNanoseconds
            let result = try pipeline.segment(prepared, clicks: simulator.clicks.map(\.click), classCount: 2)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - clickStart) / 1e9)
            guard result.mask.width == image.width, result.mask.height == image.height else {
                throw EvaluationError("\(name): the pipeline returned a \(result.mask.width)x\(result.mask.height) "
                                      + "mask for a \(image.width)x\(image.height) image")
            }
            mask = result.mask
            prediction = mask.labels.map { $0 == 0 }
            kept.append(Int(mask.labels[click.y * image.width + click.x]) == click.click.classIndex)
            ious.append(ClickMetrics.iou(truth: truth, prediction: prediction))
        }
        let result = InstanceResult(
            name: name, split: nil, width: image.width, height: image.height, clicks: simulator.clicks, ious: ious,
            noc85: ClickMetrics.numberOfClicks(ious: ious, threshold: 0.85, maxClicks: maxClicks),
            noc90: ClickMetrics.numberOfClicks(ious: ious, threshold: 0.90, maxClicks: maxClicks),
            clickedClassKept: kept, secondsDecode: 0, secondsOpen: secondsOpen, secondsPerClick: times)
        return (result, mask)
    }
}
