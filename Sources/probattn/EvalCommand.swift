import ArgumentParser
import Foundation
import ProbattnConfig
import ProbattnCore
import ProbattnEvaluation
import ProbattnJSON
import ProbattnImaging
import ProbattnCore
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import Synchronization

extension BenchmarkKind: ExpressibleByArgument {}
extension BenchmarkSplit: ExpressibleByArgument {}

/// `probattn eval`: runs the standard click-based evaluation (`../shared/spec/evaluation.md` §1, RITM's protocol)
/// of the configured pipeline on GrabCut, Berkeley, DAVIS or a folder of the user's own images and masks,
/// in-process through the session core, and prints NoC@85, NoC@90, ≥N@90, mIoU@k and the
/// time per click; `--report DIR` writes summary.json, instances.json, instances.csv and miou.svg.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate the segmentation pipeline on GrabCut, Berkeley, DAVIS or your own folders with the standard click simulator.",
        discussion: """
            Follows RITM's protocol: the first click from an empty prediction, each next click at the error pixel \
            farthest from the error regions' boundaries (positive if in a false-negative region that is strictly \
            thicker than every false-positive one), ignore pixels never clicked nor scored, NoC capped at \
            --max-clicks. All clicks are always run so that the mIoU curve is complete. No zoom-in, no flip \
            averaging. The prediction is the pipeline's class map with the object as class 0.
            """)

    @Option(help: "The benchmark: grabcut, berkeley, davis (RITM's DAVIS-345 layout) or folder (your own data).")
    var dataset: BenchmarkKind

    @Option(help: "The dataset's own folder, e.g. ../shared/datasets/GrabCut (not for --dataset folder).")
    var root: String?

    @Option(help: "--dataset folder: the images (PNG, JPEG or BMP), paired with the masks by file stem.")
    var images: String?

    @Option(help: "--dataset folder: the masks (PNG or BMP), read by each pixel's largest channel.")
    var masks: String?

    @Option(name: .customLong("ignore-value"), help: "--dataset folder: this mask value marks pixels neither object nor background.")
    var ignoreValue: UInt8?

    @Option(name: .customLong("object-value"), help: "--dataset folder: the object's mask value (default: every non-zero value).")
    var objectValue: UInt8?

    @Flag(help: "--dataset folder: one instance per distinct non-zero mask value.")
    var instances = false

    @Option(help: "Evaluate only the first N instances (sorted by name).")
    var limit: Int?

    @Option(name: .customLong("max-clicks"), help: "Clicks per instance; NoC is capped at this number.")
    var maxClicks = 20

    @Option(help: "A probattnd YAML config: its pipeline, plugin folder and image-size limit are used.")
    var config: String?

    @Option(help: "Write summary.json, instances.json, instances.csv and miou.svg into this folder.")
    var report: String?

    @Flag(name: .customLong("no-key-adaptation"), help: "Ablation: no key adaptation (0 EM iterations on the keys).")
    var noKeyAdaptation = false

    @Flag(name: .customLong("no-value-propagation"), help: "Ablation: clicks fix their own tokens only.")
    var noValuePropagation = false

    @Option(help: "The attention variant of the adapter (a plugin variant name, e.g. probabilistic, softmax).")
    var attention: String?

    @Option(help: "Berkeley's BSDS300 split: train (46 masks), test (54) or all. GrabCut has no split.")
    var split: BenchmarkSplit = .all

    @Flag(name: .customLong("save-masks"), help: "Also write every final mask as PNG and COCO RLE JSON into DIR/masks.")
    var saveMasks = false

    @Flag(name: .customLong("save-click-masks"),
          help: "Also write the mask after every click (DIR/clicks/<name>/click-NN.png) and the encoder's token footprint (DIR/clicks/<name>/tokens.png: token index = 256 R + G), for error analysis.")
    var saveClickMasks = false

    @Option(help: "Evaluate this many instances at once (the pipeline is thread-safe); each job's stage calls get max(1, cores / jobs) threads (the masks are the same for every count). Per-click times then include contention.")
    var jobs = 1

    @Option(name: .customLong("plugin-dir"), help: "The attention plugin folder (default: the config's, else the usual search).")
    var pluginDirectory: String?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if maxClicks < 1 { throw ValidationError("--max-clicks must be at least 1") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if saveMasks && report == nil { throw ValidationError("--save-masks needs --report DIR") }
        if saveClickMasks && report == nil { throw ValidationError("--save-click-masks needs --report DIR") }
        if dataset == .folder {
            guard images != nil, masks != nil else {
                throw ValidationError("--dataset folder needs --images DIR and --masks DIR")
            }
            if root != nil { throw ValidationError("--dataset folder takes --images and --masks, not --root") }
            if objectValue != nil && instances {
                throw ValidationError("--object-value and --instances exclude each other")
            }
            if let objectValue, objectValue == ignoreValue {
                throw ValidationError("--object-value and --ignore-value must differ")
            }
        } else {
            guard root != nil else { throw ValidationError("--dataset \(dataset.rawValue) needs --root DIR") }
            if images != nil || masks != nil || ignoreValue != nil || objectValue != nil || instances {
                throw ValidationError("--images, --masks, --ignore-value, --object-value and --instances are for --dataset folder")
            }
        }
    }

    /// The threads each job's stage calls get: max(1, cores / jobs).
    var budgetPerJob: ComputeBudget {
        ComputeBudget(threads: max(1, UsableCores.count() / jobs))
    }

    func run() throws {
        // BLAS threads once, as the daemon does (1 unless OPENBLAS_NUM_THREADS is set); the jobs' budgets do the rest.
        BLAS.configureThreadsAtStart(environment: ProcessInfo.processInfo.environment)
        let daemonConfig = try config.map { try DaemonConfig.load(path: $0) }
        let pluginFolder = pluginDirectory ?? daemonConfig?.pluginDirectory ?? PluginRegistry.defaultDirectory()
        let registry = PluginRegistry.load(directory: pluginFolder)
        for failure in registry.failures {
            FileHandle.standardError.write(Data("warning: plugin not loaded: \(failure)\n".utf8))
        }
        let stages = try PipelineFactory.stages(daemonConfig?.pipeline ?? PipelineFactory.defaultStages,
                                                attention: attention, keyAdaptation: !noKeyAdaptation,
                                                valuePropagation: !noValuePropagation, plugins: registry)
        let pipeline = try PipelineFactory.make(stages: stages, plugins: registry)

        var instances: [BenchmarkInstance]
        if dataset == .folder, let images, let masks {
            guard split == .all else { throw ValidationError("--dataset folder has no train/test split: use --split all") }
            instances = try BenchmarkDataset.folder(FolderLayout(images: images, masks: masks, ignoreValue: ignoreValue,
                                                                 objectValue: objectValue, instances: self.instances))
        } else {
            instances = try BenchmarkDataset.instances(dataset, root: root ?? "", split: split)
        }
        if let limit { instances = Array(instances.prefix(limit)) }
        let clicksFolder = saveClickMasks ? report.map { ($0 as NSString).appendingPathComponent("clicks") } : nil
        let workingPixels = daemonConfig?.limits.workingPixels ?? WorkingResolution.defaultMaxPixels
        let budget = budgetPerJob
        let runner = try EvaluationRunner(
            pipeline: pipeline, maxClicks: maxClicks, maxPixels: daemonConfig?.limits.maxImagePixels,
            workingPixels: workingPixels,
            conflictPolicy: daemonConfig?.sessions.conflictPolicy ?? .latestWins, budget: budget,
            clickMaskSink: clicksFolder.map { folder in
                { @Sendable name, click, mask in
                    try ClickMaskExport.writeMask(mask, click: click, name: name, folder: folder)
                }
            })

        let progress = EvalProgress(total: instances.count, maxClicks: maxClicks)
        let masksFolder = report.map { ($0 as NSString).appendingPathComponent("masks") }
        let start = DispatchTime.now().uptimeNanoseconds
        let slots = ResultSlots(count: instances.count)
        let evaluateOne = { (index: Int) in
            do {
                let (result, finalMask) = try runner.evaluate(instances[index])
                if saveMasks, let masksFolder {
                    try MaskExport.write(finalMask, objectClass: 0, name: instances[index].name, directory: masksFolder)
                }
                if let clicksFolder {
                    // The footprint of the working copy the session core encodes, at the mask's size.
                    let (image, _) = try instances[index].load(maxPixels: daemonConfig?.limits.maxImagePixels)
                    let resolution = WorkingResolution(width: image.width, height: image.height,
                                                       maxPixels: workingPixels)
                    try ClickMaskExport.writeTokens(try pipeline.encoder.encode(resolution.reduce(image)),
                                                    resolution: resolution, name: instances[index].name,
                                                    folder: clicksFolder)
                }
                slots.set(index, .success(result))
                progress.finished(result)
            } catch {
                slots.set(index, .failure(error))
            }
        }
        if jobs == 1 {
            for index in instances.indices {
                evaluateOne(index)
                if let error = slots.firstError { throw error }
            }
        } else {
            // Instances are handed out in order to `jobs` workers.
            let next = ResultSlots.Counter()
            ParallelChunks.perform(min(jobs, instances.count)) { _ in
                while slots.firstError == nil, let index = next.take(below: instances.count) { evaluateOne(index) }
            }
            if let error = slots.firstError { throw error }
        }
        let results = slots.results
        progress.finish()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

        let summary = EvaluationSummary(dataset: dataset.rawValue, split: split.rawValue, results: results,
                                        maxClicks: maxClicks,
                                        config: configJSON(stages: stages, pluginFolder: pluginFolder, budget: budget),
                                        secondsTotal: seconds)
        print(summary.text)
        if let report {
            try EvaluationReport.write(summary: summary, results: results, to: report)
            print("report written to \(report)")
        }
    }

    /// `summary.json`'s `config`: the stages as run, the protocol's settings and the jobs' `budget`.
    private func configJSON(stages: [StageSpec], pluginFolder: String, budget: ComputeBudget) -> JSONValue {
        .object([
            "stages": JSONValue.stages(stages),
            "config_file": config.map(JSONValue.string) ?? .null,
            "plugin_dir": .string(pluginFolder),
            "attention": attention.map(JSONValue.string) ?? .null,
            "key_adaptation": .bool(!noKeyAdaptation),
            "value_propagation": .bool(!noValuePropagation),
            "root": root.map(JSONValue.string) ?? .null,
            "images": images.map(JSONValue.string) ?? .null,
            "masks": masks.map(JSONValue.string) ?? .null,
            "ignore_value": ignoreValue.map { .int(Int($0)) } ?? .null,
            "object_value": objectValue.map { .int(Int($0)) } ?? .null,
            "instances": .bool(instances),
            "split": .string(split.rawValue),
            "limit": limit.map(JSONValue.int) ?? .null,
            "max_clicks": .int(maxClicks),
            "jobs": .int(jobs),
            "threads_per_job": .int(budget.threads),
            "save_click_masks": .bool(saveClickMasks),
            "protocol": .string("RITM isegm clicker and NoC (evaluation.md section 1); all clicks run (target_iou 1.01)"),
            "prediction": .string("pipeline class map, object = class 0 (RITM: prob > 0.49)"),
            "zoom_in": .bool(false),
            "flip": .bool(false),
        ])
    }
}

/// The per-instance outcomes of an evaluation, filled by one or several workers.
/// `@unchecked`: every access to `slots` is under `lock` (kept as NSLock: the failures are non-Sendable `Error`s,
/// which a `Mutex` could not hand out).
final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<InstanceResult, Error>?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ outcome: Result<InstanceResult, Error>) {
        lock.lock(); defer { lock.unlock() }
        slots[index] = outcome
    }

    /// The first failure in instance order, if any.
    var firstError: Error? {
        lock.lock(); defer { lock.unlock() }
        for case .failure(let error)? in slots { return error }
        return nil
    }

    /// The results in instance order (call when every slot is filled with a success).
    var results: [InstanceResult] {
        lock.lock(); defer { lock.unlock() }
        return slots.compactMap { try? $0?.get() }
    }

    /// Hands out indices 0, 1, 2, ... to workers.
    final class Counter: Sendable {
        private let value = Mutex(0)
        func take(below limit: Int) -> Int? {
            value.withLock { value in
                guard value < limit else { return nil }
                value += 1
                return value - 1
            }
        }
    }
}
