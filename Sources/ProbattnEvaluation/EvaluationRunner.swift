import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages

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
    /// For each click: how many clicks were in force in the mask that answered it (active and not overridden), and
    /// how many of them kept their class at their own pixel.
    public var activeClicksChecked: [Int] = []
    public var activeClicksKept: [Int] = []
    /// Decoding the image and mask files (not part of the pipeline).
    public var secondsDecode: Double
    /// `SegmentationPipeline.prepare`: encoding and key adaptation, done once per image.
    public var secondsOpen: Double
    /// The propagator's time per click (`SegmentationPipeline.segment`): the per-click work.
    public var secondsPerClick: [Double]
    /// The whole `feedback` command per click, as the session core ran it (propagation, mask encoding, commit).
    public var secondsPerFeedback: [Double] = []

    enum CodingKeys: String, CodingKey {
        case name, split, width, height, clicks, ious, noc85, noc90
        case clickedClassKept = "clicked_class_kept"
        case activeClicksChecked = "active_clicks_checked"
        case activeClicksKept = "active_clicks_kept"
        case secondsDecode = "seconds_decode"
        case secondsOpen = "seconds_open"
        case secondsPerClick = "seconds_per_click"
        case secondsPerFeedback = "seconds_per_feedback"
    }
}

/// Why an evaluation could not run.
public struct EvaluationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs the click loop of `evaluation.md` §1 on one instance through the session core — the same code path as the
/// daemon's, with the in-memory writer stage (`InMemorySessionStore.descriptor`, keeping only the latest mask) and
/// every stage call given `budget` threads: the image is opened from its file's bytes, every simulated click is one
/// `feedback` command, and the mask that answers it is the one a client would get. The prediction is the class map
/// with the object as class 0 (the equivalent of RITM's `prob > 0.49`), IoU after each click. All `maxClicks` clicks
/// are always run (RITM's `target_iou = 1.01` mode, needed for the mIoU curve); NoC@85 and NoC@90 read from that
/// sequence equal those of a run stopped at 90 %, since the IoUs up to the stop are the same.
public struct EvaluationRunner: Sendable {
    public let pipeline: SegmentationPipeline
    public let maxClicks: Int
    /// The image-size limit applied when decoding the benchmark's files (nil: none).
    public let maxPixels: Int?
    /// Most pixels the stages work on per image (the daemon's `limits.working_pixels`).
    public let workingPixels: Int
    /// The session core's conflict policy (the daemon's `sessions.conflict_policy`).
    public let conflictPolicy: ConflictPolicy
    /// The threads each stage call of an instance may use (`probattn eval --jobs J`: max(1, cores / J)); the masks
    /// are the same for every budget.
    public let budget: ComputeBudget
    /// The writer stage each instance's session core commits to.
    public static let writer = StageSpec(role: .writer, type: InMemorySessionStore.typeName,
                                         options: ["keep_every_version": .bool(false)])
    /// The annotator name the simulated clicks are sent under.
    public static let annotator = "eval"
    /// Called with the instance's name, the click's number (1-based) and the mask that answered it, after every
    /// click (`probattn eval --save-click-masks`); nil: masks are not passed on.
    public var clickMaskSink: (@Sendable (_ name: String, _ click: Int, _ mask: LabelMask) throws -> Void)?

    public init(pipeline: SegmentationPipeline, maxClicks: Int = 20, maxPixels: Int? = nil,
                workingPixels: Int = WorkingResolution.defaultMaxPixels, conflictPolicy: ConflictPolicy = .latestWins, budget: ComputeBudget = .single,
                clickMaskSink: (@Sendable (String, Int, LabelMask) throws -> Void)? = nil) throws {
        guard maxClicks >= 1 else { throw EvaluationError("--max-clicks must be at least 1, got \(maxClicks)") }
        self.budget = budget
        self.pipeline = pipeline
        self.maxClicks = maxClicks
        self.maxPixels = maxPixels
        self.workingPixels = workingPixels
        self.conflictPolicy = conflictPolicy
        self.clickMaskSink = clickMaskSink
    }

    /// Loads and evaluates one benchmark instance. Returns the result and the final mask (after the last click).
    public func evaluate(_ instance: BenchmarkInstance) throws -> (result: InstanceResult, finalMask: LabelMask) {
        let start = DispatchTime.now().uptimeNanoseconds
        let (image, truth) = try instance.load(maxPixels: maxPixels)
        // The core opens images from their encoded bytes, as a client sends them: the file itself, or — when the
        // benchmark transforms the image to match its mask — the transformed image as a (lossless) PNG.
        let bytes: [UInt8]
        if case .none = instance.imageTransform {
            bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: instance.imagePath)))
        } else {
            bytes = try ImageEncoding.png(image)
        }
        let decode = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var run = try evaluate(name: instance.name, imageBytes: bytes, truth: truth)
        run.result.split = instance.split
        run.result.secondsDecode = decode
        return run
    }

    /// Evaluates one decoded image against its ground truth (opened as a PNG of it).
    public func evaluate(name: String, image: RGBImage, truth: GroundTruthMask) throws
        -> (result: InstanceResult, finalMask: LabelMask) {
        try evaluate(name: name, imageBytes: try ImageEncoding.png(image), truth: truth)
    }

    /// Evaluates one encoded image (PNG, JPEG or BMP bytes) against its ground truth.
    public func evaluate(name: String, imageBytes: [UInt8], truth: GroundTruthMask) throws
        -> (result: InstanceResult, finalMask: LabelMask) {
        let writer = try InMemorySessionStore.descriptor.make(options: Self.writer.options,
                                                              environment: WriterEnvironment(storePath: ""))
        let core = SessionCore(
            settings: SessionSettings(maxImagePixels: maxPixels ?? Int.max, workingPixels: workingPixels,
                                      conflictPolicy: conflictPolicy,
                                      storesImagePaths: false, pipeline: pipeline),
            persistence: writer, cache: PreparedCache(budgetBytes: Int.max),
            compute: CorePool(cores: budget.threads))
        func run(_ body: RequestBody, _ id: String) throws -> CommandResult {
            do {
                return try core.execute(Request(requestID: id, body)).result
            } catch let error as ProtocolError {
                throw EvaluationError("\(name): \(error.code.rawValue): \(error.message)")
            }
        }
        guard case .opened(let opened) = try run(.openImage(imageID: name, classes: ["object", "background"],
                                                            annotator: Self.annotator, sourcePath: nil,
                                                            publishPNG: false, bytes: imageBytes), "open") else {
            throw EvaluationError("\(name): open_image gave no session")
        }
        defer { _ = try? core.close(name) }
        guard opened.width == truth.width, opened.height == truth.height else {
            throw EvaluationError("\(name): image \(opened.width)x\(opened.height) but mask \(truth.width)x\(truth.height)")
        }
        let secondsOpen = (opened.timings["encode"] ?? 0) + (opened.timings["adapt"] ?? 0)
        let classes = ["object", "background"]

        var simulator = ClickSimulator(truth: truth)
        var prediction = [Bool](repeating: false, count: truth.width * truth.height)
        var mask = LabelMask(width: truth.width, height: truth.height, filledWith: 1)
        var result = InstanceResult(name: name, split: nil, width: truth.width, height: truth.height, clicks: [],
                                    ious: [], noc85: 0, noc90: 0, clickedClassKept: [], secondsDecode: 0,
                                    secondsOpen: secondsOpen, secondsPerClick: [])
        var active: [(id: Int64, click: Click)] = []
        for step in 0..<maxClicks {
            let click = simulator.nextClick(prediction: prediction)
            let clickStart = DispatchTime.now().uptimeNanoseconds
            let answer = try run(.feedback(imageID: name, annotator: Self.annotator,
                                           clicks: [WireClick(x: click.x, y: click.y,
                                                              className: classes[click.click.classIndex])]),
                                 "click-\(step + 1)")
            let feedbackSeconds = Double(DispatchTime.now().uptimeNanoseconds - clickStart) / 1e9
            guard case .changed(let change) = answer, let added = change.added.last else {
                throw EvaluationError("\(name): feedback gave no new mask version")
            }
            guard change.mask.mask.width == truth.width, change.mask.mask.height == truth.height else {
                throw EvaluationError("\(name): the pipeline returned a \(change.mask.mask.width)x\(change.mask.mask.height) "
                                      + "mask for a \(truth.width)x\(truth.height) image")
            }
            mask = change.mask.mask
            try clickMaskSink?(name, step + 1, mask)
            active.append((added.id, click.click))
            prediction = mask.labels.map { $0 == 0 }
            result.secondsPerClick.append(change.timings["propagate"] ?? feedbackSeconds)
            result.secondsPerFeedback.append(feedbackSeconds)
            result.clickedClassKept.append(Int(mask.labels[click.y * truth.width + click.x]) == click.click.classIndex)
            // Every click in force must keep its class at its own pixel, not only the newest one.
            let overridden = Set(change.overridden)
            let checked = active.filter { !overridden.contains($0.id) }
            result.activeClicksChecked.append(checked.count)
            result.activeClicksKept.append(checked.filter {
                Int(mask.labels[$0.click.y * truth.width + $0.click.x]) == $0.click.classIndex
            }.count)
            result.ious.append(ClickMetrics.iou(truth: truth, prediction: prediction))
        }
        result.clicks = simulator.clicks
        result.noc85 = ClickMetrics.numberOfClicks(ious: result.ious, threshold: 0.85, maxClicks: maxClicks)
        result.noc90 = ClickMetrics.numberOfClicks(ious: result.ious, threshold: 0.90, maxClicks: maxClicks)
        return (result, mask)
    }
}
