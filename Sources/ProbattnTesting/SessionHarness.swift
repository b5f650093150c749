import Foundation
import ProbattnImaging
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnSession

/// The daemon's click path in-process, in the spirit of swift-nio's `EmbeddedChannel`: a session core with a pipeline
/// and the in-memory store, driven synchronously, with every published update recorded. For the project's tests and
/// for plugin and stage authors who want to see what their stage does to a session without starting a daemon:
///
/// ```swift
/// let harness = try SessionHarness(pipeline: SessionHarness.defaultPipeline())
/// try harness.open("img", png: bytes)
/// let change = try harness.click("img", x: 40, y: 30, class: "object", annotator: "alice")
/// ```
///
/// Commands run on the calling thread, one at a time (the core's contract for one image). Errors are the
/// `ProtocolError`s a client would get.
/// Unchecked `Sendable`: `updates` and the id counter are unguarded; safe because the harness is driven from one thread
/// at a time (see above), and only handed between threads.
public final class SessionHarness: @unchecked Sendable {
    public let core: SessionCore
    public let store: InMemorySessionStore
    /// Every update the commands published, in order.
    public private(set) var updates: [MaskUpdate] = []
    private var counter = 0

    public init(pipeline: SegmentationPipeline, conflictPolicy: ConflictPolicy = .latestWins,
                maxImagePixels: Int = 4096 * 4096, workingPixels: Int = WorkingResolution.defaultMaxPixels,
                cacheBytes: Int = 1 << 30, store: InMemorySessionStore = InMemorySessionStore()) {
        self.store = store
        core = SessionCore(settings: SessionSettings(maxImagePixels: maxImagePixels, workingPixels: workingPixels,
                                                     conflictPolicy: conflictPolicy,
                                                     storesImagePaths: false, pipeline: pipeline),
                           persistence: store, cache: PreparedCache(budgetBytes: cacheBytes))
    }

    /// The pipeline of the default config (`PipelineFactory.defaultStages`) with the plugins of `pluginDirectory`
    /// (default: the usual search, which finds the build's plugins next to the test bundle).
    public static func defaultPipeline(pluginDirectory: String? = nil) throws -> SegmentationPipeline {
        let plugins = PluginRegistry.load(directory: pluginDirectory ?? PluginRegistry.defaultDirectory())
        return try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: plugins)
    }

    private func nextID() -> String {
        counter += 1
        return "h-\(counter)"
    }

    /// Runs one request through the core exactly as a transport would, sent by `principal` (nil: a daemon without
    /// security); records its update.
    @discardableResult
    public func execute(_ body: RequestBody, requestID: String? = nil, as principal: Principal? = nil) throws
        -> CommandResult {
        let outcome = try core.execute(Request(requestID: requestID ?? nextID(), body, principal: principal))
        if let update = outcome.update { updates.append(update) }
        return outcome.result
    }

    @discardableResult
    public func open(_ imageID: String, png bytes: [UInt8], classes: [String] = ["object", "background"],
                     annotator: String? = nil, publishPNG: Bool = false) throws -> OpenResult {
        guard case .opened(let result) = try execute(.openImage(imageID: imageID, classes: classes,
                                                                annotator: annotator, sourcePath: nil,
                                                                publishPNG: publishPNG, bytes: bytes)) else {
            throw ProtocolError(.internal, "open_image gave another result")
        }
        return result
    }

    @discardableResult
    public func click(_ imageID: String, x: Int, y: Int, class className: String, annotator: String) throws
        -> MaskChange {
        try feedback(imageID, annotator: annotator, clicks: [WireClick(x: x, y: y, className: className)])
    }

    @discardableResult
    public func feedback(_ imageID: String, annotator: String, clicks: [WireClick]) throws -> MaskChange {
        guard case .changed(let change) = try execute(.feedback(imageID: imageID, annotator: annotator,
                                                                clicks: clicks)) else {
            throw ProtocolError(.internal, "feedback gave another result")
        }
        return change
    }

    @discardableResult
    public func undo(_ imageID: String, annotator: String) throws -> MaskChange {
        guard case .changed(let change) = try execute(.undo(imageID: imageID, annotator: annotator)) else {
            throw ProtocolError(.internal, "undo gave another result")
        }
        return change
    }

    public func mask(_ imageID: String) throws -> MaskSnapshot { try core.snapshot(imageID) }

    @discardableResult
    public func close(_ imageID: String) throws -> CloseResult { try core.close(imageID) }

    /// A harness over the same store with a fresh core that resumed from it: what a daemon restart does.
    public func restarted(pipeline: SegmentationPipeline? = nil) throws -> SessionHarness {
        let settings = core.currentSettings
        let next = SessionHarness(pipeline: pipeline ?? settings.pipeline, conflictPolicy: settings.conflictPolicy,
                                  maxImagePixels: settings.maxImagePixels,
                                  workingPixels: settings.workingPixels, store: store)
        try next.core.resume()
        return next
    }
}
