import Foundation
import Logging
import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// What a reload may change while the core runs.
public struct SessionSettings: Sendable {
    /// Largest image `open_image` accepts, in pixels.
    public var maxImagePixels: Int
    /// Most pixels the stages work on per image (`limits.working_pixels`): larger images are worked on at a
    /// reduced resolution (`WorkingResolution`), their masks given at full resolution. Applies to images opened,
    /// resumed or prepared for `predict` from then on.
    public var workingPixels: Int
    public var conflictPolicy: ConflictPolicy
    /// True when the store keeps the client's `source_path` instead of the image bytes (`store.image_bytes: path`):
    /// `open_image` then needs a `source_path` that resolves inside `imageRoot`.
    public var storesImagePaths: Bool
    /// The folder every stored `source_path` must resolve inside (`store.image_root`; see `ImagePaths`). With
    /// `storesImagePaths` and no root, every `source_path` is refused.
    public var imageRoot: String?
    /// The pipeline for images opened from now on.
    public var pipeline: SegmentationPipeline

    public init(maxImagePixels: Int, workingPixels: Int = WorkingResolution.defaultMaxPixels,
                conflictPolicy: ConflictPolicy, storesImagePaths: Bool, imageRoot: String? = nil,
                pipeline: SegmentationPipeline) {
        self.maxImagePixels = maxImagePixels
        self.workingPixels = workingPixels
        self.conflictPolicy = conflictPolicy
        self.storesImagePaths = storesImagePaths
        self.imageRoot = imageRoot
        self.pipeline = pipeline
    }
}

/// The session core: every open image's collaborative state and the commands on it (`open_image`, `feedback`, `undo`,
/// `get_mask`, `close_image`), and stateless prompts (`predict`: a mask from exactly one call's points and box, on a
/// preparation shared by every call on the same image content, with no session, store write or update), with no I/O
/// of its own. It calls the pipeline's stages, keeps prepared images in the
/// cache, and hands every change to the persistence before it returns, so a result is only ever produced for
/// committed work. Every front door runs this same code: the ZeroMQ and HTTP transports through `SessionDispatcher`,
/// `probattn eval` and tests directly.
///
/// Threading: commands for one image must not overlap (the dispatcher runs them in the image's queue; eval calls them
/// in order); commands for different images may run concurrently. The registry and every session's mutable state are
/// guarded by one lock, held only for reads and swaps, never across a stage call.
/// Unchecked `Sendable`: `sessions`, `settings`, `generation` and every session's mutable fields are touched only under
/// `lock`; the other properties are `let`s of `Sendable` types.
public final class SessionCore: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [String: ImageSession] = [:]
    private var settings: SessionSettings
    /// Bumped by every `apply` (a reload may bring a new pipeline): `predict` preparations of older generations are
    /// dropped from the cache and prepared again on their next call.
    private var generation = 0
    public let persistence: any SessionPersistence
    public let cache: PreparedCache
    public let statistics: StageStatistics
    /// The cores the stage calls take their budgets from (shared by every image; the daemon's holds the machine's
    /// cores, `probattn eval` gives each job's core its share).
    public let compute: CorePool
    private let logger: Logger

    /// `compute` nil: one core (every stage call single-threaded).
    public init(settings: SessionSettings, persistence: any SessionPersistence, cache: PreparedCache,
                statistics: StageStatistics = StageStatistics(), compute: CorePool? = nil,
                logger: Logger = Logger(label: "probattn.session")) {
        self.settings = settings
        self.persistence = persistence
        self.cache = cache
        self.statistics = statistics
        self.compute = compute ?? CorePool(cores: 1)
        self.logger = logger
    }

    public var currentSettings: SessionSettings { lock.withLock { settings } }

    /// Applies new settings (a reload): the conflict policy and size limit at once, the pipeline to images opened
    /// from now on.
    public func apply(_ new: SessionSettings) {
        let current = lock.withLock {
            settings = new
            generation += 1
            return generation
        }
        cache.removeContent(otherThan: current)
    }

    private func session(_ imageID: String) -> ImageSession? { lock.withLock { sessions[imageID] } }

    // MARK: resume

    /// Loads every open session of the persistence (after a restart). The mask is the stored latest version; the
    /// image is prepared again lazily by the next command that needs it.
    public func resume() throws {
        let settings = currentSettings
        let pipeline = settings.pipeline
        for stored in try persistence.openSessions() {
            let record = stored.session
            let labels: LabelMask
            do {
                if let mask = stored.mask {
                    labels = try MaskCodec.labels(from: mask, width: record.width, height: record.height,
                                                  classes: record.classes)
                } else {
                    labels = LabelMask(width: record.width, height: record.height, filledWith: 1)
                }
            } catch {
                logger.error("Cannot resume session: stored mask unreadable",
                             metadata: ["image": "\(record.imageID)", "error": "\(error)"])
                continue
            }
            let session = ImageSession(
                storeID: record.storeID, imageID: record.imageID, width: record.width, height: record.height,
                classes: record.classes, contentHash: record.contentHash, publishPNG: record.publishPNG,
                imageBytes: record.bytes, sourcePath: record.sourcePath, openedBy: record.openedBy,
                pipeline: pipeline,
                resolution: WorkingResolution(width: record.width, height: record.height,
                                              maxPixels: settings.workingPixels),
                clicks: stored.clicks.map { ActiveClick(id: $0.id, annotator: $0.annotator,
                                                        click: Click(x: $0.x, y: $0.y, classIndex: $0.classIndex)) },
                version: stored.mask?.version ?? 0, mask: labels, maskAnnotator: stored.mask?.annotator)
            lock.withLock { sessions[record.imageID] = session }
            logger.info("Session resumed", metadata: ["image": "\(record.imageID)",
                                                      "version": "\(stored.mask?.version ?? 0)",
                                                      "clicks": "\(stored.clicks.count)"])
        }
    }

    // MARK: commands

    /// Runs one per-image command. `received` is when the request arrived (uptime nanoseconds) and `queueSeconds` how
    /// long it waited for its turn; both only feed the timings. Throws `ProtocolError` with the protocol's code.
    public func execute(_ request: Request, queueSeconds: Double = 0,
                        received: UInt64 = DispatchTime.now().uptimeNanoseconds) throws -> CommandOutcome {
        let request = try Authorization.authorize(request, openedBy: { self.session($0)?.openedBy })
        switch request.body {
        case .openImage, .feedback, .undo, .predict:
            // Commands that run stages count in the compute pool's demand for their whole duration.
            return try compute.withRequest { try run(request, queueSeconds: queueSeconds, received: received) }
        default:
            return try run(request, queueSeconds: queueSeconds, received: received)
        }
    }

    private func run(_ request: Request, queueSeconds: Double, received: UInt64) throws -> CommandOutcome {
        switch request.body {
        case let .openImage(imageID, classes, annotator, sourcePath, publishPNG, bytes):
            return try open(request, imageID: imageID, classes: classes, annotator: annotator, sourcePath: sourcePath,
                            publishPNG: publishPNG, bytes: bytes, received: received)
        case let .feedback(imageID, annotator, clicks):
            return try feedback(request, imageID: imageID, annotator: annotator, clicks: clicks,
                                queueSeconds: queueSeconds, received: received)
        case let .undo(imageID, annotator):
            return try undo(request, imageID: imageID, annotator: annotator, queueSeconds: queueSeconds,
                            received: received)
        case let .getMask(imageID, _):
            return CommandOutcome(result: .mask(try snapshot(imageID)))
        case let .closeImage(imageID):
            return CommandOutcome(result: .closed(try close(imageID)))
        case .listSessions:
            return CommandOutcome(result: .sessions(summaries(visibleTo: request.principal)))
        case .predict(let prompt):
            return CommandOutcome(result: .predicted(try predict(prompt, queueSeconds: queueSeconds,
                                                                 received: received)))
        case .health, .listPlugins:
            throw ProtocolError(.internal, "'\(request.kind.rawValue)' is answered by the dispatcher, not the core")
        }
    }

    /// The current mask of an image.
    public func snapshot(_ imageID: String) throws -> MaskSnapshot {
        let session = try existing(imageID)
        return lock.withLock {
            MaskSnapshot(imageID: imageID, version: session.version, width: session.width, height: session.height,
                         classes: session.classes, annotator: session.version == 0 ? nil : session.maskAnnotator,
                         clickCount: session.clicks.count, mask: session.mask,
                         overridden: ConflictResolution.resolve(session.clicks, resolution: session.resolution,
                                                                policy: settings.conflictPolicy).overridden,
                         encoded: session.encoded)
        }
    }

    /// Ends a session: removed from memory, its prepared image from the cache, and closed in the store.
    public func close(_ imageID: String) throws -> CloseResult {
        let session = try existing(imageID)
        try storeCall { try persistence.close(session: session.storeID) }
        let version = lock.withLock {
            sessions[imageID] = nil
            return session.version
        }
        cache.remove(session.storeID)
        return CloseResult(imageID: imageID, version: version)
    }

    /// Every open session `principal` may list, sorted by image id (`queueDepth` is 0: the dispatcher fills it in):
    /// all of them without security and for `admin`, else those the principal opened or clicked in.
    public func summaries(visibleTo principal: Principal? = nil) -> [SessionSummary] {
        lock.withLock {
            sessions.values.filter { s in
                guard let principal, principal.role != .admin else { return true }
                return s.participants.contains(principal.identity)
            }.sorted { $0.imageID < $1.imageID }.map { s in
                SessionSummary(imageID: s.imageID, width: s.width, height: s.height, classes: s.classes,
                               version: s.version, clickCount: s.clicks.count,
                               annotators: Array(Set(s.clicks.map(\.annotator))).sorted(),
                               participants: s.participants.sorted(), openedBy: s.openedBy,
                               cached: cache.contains(s.storeID), queueDepth: 0)
            }
        }
    }

    /// How many sessions are open.
    public var sessionCount: Int { lock.withLock { sessions.count } }

    // MARK: open

    private func open(_ request: Request, imageID: String, classes: [String], annotator: String?,
                      sourcePath: String?, publishPNG: Bool, bytes: [UInt8], received: UInt64) throws
        -> CommandOutcome {
        let settings = currentSettings
        let hash = "sha256:" + SHA256.hex(bytes)
        if let current = session(imageID) {
            guard current.contentHash == hash, current.classes == classes else {
                throw ProtocolError(.imageExists,
                                    "image '\(imageID)' is already open with different \(current.contentHash == hash ? "classes" : "content"); close it first or choose another id")
            }
            let version = lock.withLock {
                if let annotator { current.participants.insert(annotator) }
                return current.version
            }
            let timings = ["decode": 0, "encode": 0, "adapt": 0, "propagate": 0, "commit": 0,
                           "total": Self.seconds(since: received)]
            return CommandOutcome(result: .opened(OpenResult(
                imageID: imageID, width: current.width, height: current.height, classes: classes, contentHash: hash,
                version: version, reopened: true, timings: timings)))
        }
        var sourcePath = sourcePath
        if settings.storesImagePaths {
            guard let given = sourcePath else {
                throw ProtocolError(.badRequest,
                                    "field 'source_path' is required: this daemon stores image paths, not bytes (store.image_bytes: path)")
            }
            // The resolved path is what is stored and re-read.
            guard let root = settings.imageRoot, let resolved = ImagePaths.resolve(given, inside: root) else {
                throw ProtocolError(.badRequest,
                                    "field 'source_path' must name an existing file inside the daemon's image folder (store.image_root), symlinks resolved")
            }
            sourcePath = resolved
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let image = try decode(bytes, maxPixels: settings.maxImagePixels)
        let decodeSeconds = Self.seconds(since: t0)
        statistics.record("decode", seconds: decodeSeconds)
        let pipeline = settings.pipeline
        let resolution = WorkingResolution(width: image.width, height: image.height, maxPixels: settings.workingPixels)
        let prepared = try stage("encoder/adapter") { try pipeline.prepare(image, resolution: resolution, context: $0) }
        statistics.record("encode", seconds: prepared.encodeSeconds)
        statistics.record("adapt", seconds: prepared.adaptSeconds)

        let (result, working) = try segment(pipeline: pipeline, prepared: prepared, resolved: [],
                                            policy: settings.conflictPolicy, classCount: classes.count)
        let encodedMask = EncodedMask(result.mask, classes: classes)
        let png = publishPNG ? try pngFrame(encodedMask.mask, classCount: classes.count) : nil
        let t1 = DispatchTime.now().uptimeNanoseconds
        let record = StoredSession(storeID: -1, imageID: imageID, width: image.width, height: image.height,
                                   contentHash: hash, classes: classes,
                                   bytes: settings.storesImagePaths ? nil : bytes, sourcePath: sourcePath,
                                   publishPNG: publishPNG, openedBy: annotator)
        let storeID = try storeCall {
            try persistence.open(record, firstMask: storedMask(encodedMask, version: 0, annotator: annotator,
                                                               cause: .open, request: request,
                                                               propagate: result.seconds,
                                                               total: Self.seconds(since: received)))
        }
        let commitSeconds = Self.seconds(since: t1)
        statistics.record("commit", seconds: commitSeconds)
        cache.put(storeID, prepared)
        cache.setState(storeID, result.state)
        let session = ImageSession(storeID: storeID, imageID: imageID, width: image.width, height: image.height,
                                   classes: classes, contentHash: hash, publishPNG: publishPNG, imageBytes: bytes,
                                   sourcePath: sourcePath, openedBy: annotator, pipeline: pipeline,
                                   resolution: resolution, clicks: [],
                                   version: 0, mask: result.mask, maskAnnotator: annotator)
        session.encoded = encodedMask
        session.workingMask = working
        lock.withLock { sessions[imageID] = session }
        let timings = ["decode": decodeSeconds, "encode": prepared.encodeSeconds, "adapt": prepared.adaptSeconds,
                       "propagate": result.seconds, "commit": commitSeconds, "total": Self.seconds(since: received)]
        let opened = OpenResult(imageID: imageID, width: image.width, height: image.height, classes: classes,
                                contentHash: hash, version: 0, reopened: false, timings: timings)
        let update = MaskUpdate(imageID: imageID, version: 0, annotator: annotator, cause: .open,
                                requestID: request.requestID, width: image.width, height: image.height,
                                classes: classes, clickCount: 0, mask: encodedMask, timings: timings, png: png,
                                added: [], undone: nil, overridden: [])
        return CommandOutcome(result: .opened(opened), update: update)
    }

    // MARK: feedback and undo

    private func feedback(_ request: Request, imageID: String, annotator: String, clicks: [WireClick],
                          queueSeconds: Double, received: UInt64) throws -> CommandOutcome {
        let session = try existing(imageID)
        var newClicks: [NewClick] = []
        for (index, wire) in clicks.enumerated() {
            guard (0..<session.width).contains(wire.x), (0..<session.height).contains(wire.y) else {
                throw ProtocolError(.outOfBounds,
                                    "clicks[\(index)] at (\(wire.x), \(wire.y)) lies outside the \(session.width)x\(session.height) image")
            }
            guard let classIndex = session.classes.firstIndex(of: wire.className) else {
                throw ProtocolError(.unknownClass, "clicks[\(index)] has class '\(wire.className)'; this image's classes are "
                                    + session.classes.joined(separator: ", "))
            }
            newClicks.append(NewClick(annotator: annotator, x: wire.x, y: wire.y, classIndex: classIndex,
                                      className: wire.className))
        }
        // The new clicks get their ids from the store when it commits; until then they rank after every logged
        // click (ids only order clicks, and the store's ids increase).
        let before = lock.withLock { session.clicks }
        let tentative = newClicks.enumerated().map { offset, c in
            ActiveClick(id: Int64.max - Int64(newClicks.count - offset), annotator: annotator,
                        click: Click(x: c.x, y: c.y, classIndex: c.classIndex))
        }
        return try commitChange(request, session: session, clicks: before + tentative, annotator: annotator,
                                queueSeconds: queueSeconds, received: received) { mask in
            let stored = try self.persistence.append(clicks: newClicks, requestID: request.requestID,
                                                     session: session.storeID, mask: mask)
            let committed = before + stored.map { ActiveClick(id: $0.id, annotator: annotator,
                                                              click: Click(x: $0.x, y: $0.y, classIndex: $0.classIndex)) }
            let added = stored.map { ClickRecord(id: $0.id, x: $0.x, y: $0.y,
                                                 className: session.classes[$0.classIndex], annotator: annotator) }
            return (committed, added, nil)
        }
    }

    private func undo(_ request: Request, imageID: String, annotator: String, queueSeconds: Double,
                      received: UInt64) throws -> CommandOutcome {
        let session = try existing(imageID)
        let before = lock.withLock { session.clicks }
        guard let position = before.lastIndex(where: { $0.annotator == annotator }) else {
            throw ProtocolError(.nothingToUndo, "annotator '\(annotator)' has no click to undo on image '\(imageID)'")
        }
        let removed = before[position]
        var remaining = before
        remaining.remove(at: position)
        let undone = ClickRecord(id: removed.id, x: removed.click.x, y: removed.click.y,
                                 className: session.classes[removed.click.classIndex], annotator: removed.annotator)
        return try commitChange(request, session: session, clicks: remaining, annotator: annotator,
                                queueSeconds: queueSeconds, received: received) { mask in
            try self.persistence.undo(click: removed.id, session: session.storeID, mask: mask)
            return (remaining, [], undone)
        }
    }

    /// The one commit sequence of `feedback` and `undo`: segment with `clicks` (conflicts resolved), encode, let
    /// `commit` write the version to the persistence (it returns the clicks now active, the clicks it added and the
    /// click it took back), then swap the session's state and build the result and the update.
    private func commitChange(
        _ request: Request, session: ImageSession, clicks: [ActiveClick], annotator: String, queueSeconds: Double,
        received: UInt64,
        commit: (StoredMask) throws -> (active: [ActiveClick], added: [ClickRecord], undone: ClickRecord?)
    ) throws -> CommandOutcome {
        let policy = currentSettings.conflictPolicy
        let prepared = try prepared(session)
        let resolved = ConflictResolution.resolve(clicks, resolution: session.resolution, policy: policy)
        let (known, previousMask, previousWorking) = lock.withLock {
            (session.encoded, session.mask, session.workingMask)
        }
        // The propagator recomputes only where the mask can change from the state of the session's newest mask
        // (kept with the prepared image in the cache; a missing or unfitting state means from scratch).
        let (result, working) = try segment(pipeline: session.pipeline, prepared: prepared,
                                            resolved: resolved.inForce, policy: policy,
                                            classCount: session.classes.count,
                                            previous: cache.state(session.storeID), previousMask: previousMask)
        // The previous version's encodings (encoded again once after a restart): only the changed columns are
        // re-encoded, and the update and the store get the changed rectangle.
        let t0 = DispatchTime.now().uptimeNanoseconds
        let previous = known ?? EncodedMask(previousMask, classes: session.classes)
        let encodedMask: EncodedMask
        if let working, let previousWorking, known != nil {
            encodedMask = EncodedMask(result.mask, classes: session.classes, previous: previous, working: working,
                                      previousWorking: previousWorking, resolution: session.resolution)
        } else {
            encodedMask = EncodedMask(result.mask, classes: session.classes, previous: previous)
        }
        statistics.record("mask_rle", seconds: Self.seconds(since: t0))
        let png = session.publishPNG ? try pngFrame(encodedMask.mask, classCount: session.classes.count) : nil
        let version = lock.withLock { session.version } + 1
        let cause: MaskUpdate.Cause = request.kind == .undo ? .undo : .feedback
        let t1 = DispatchTime.now().uptimeNanoseconds
        let committed = try storeCall {
            try commit(storedMask(encodedMask, version: version, annotator: annotator, cause: cause,
                                  request: request, propagate: result.seconds, total: Self.seconds(since: received)))
        }
        let commitSeconds = Self.seconds(since: t1)
        statistics.record("commit", seconds: commitSeconds)
        cache.setState(session.storeID, result.state)
        // The resolution ran before the store gave the new clicks their ids; `committed.active` lists the same clicks
        // in the same order, so each tentative id maps to the committed click at its position.
        let realID = Dictionary(uniqueKeysWithValues: zip(clicks.map(\.id), committed.active.map(\.id)))
        let overridden = resolved.overridden.map { realID[$0] ?? $0 }
        lock.withLock {
            session.clicks = committed.active
            session.version = version
            session.mask = result.mask
            session.encoded = encodedMask
            session.workingMask = working
            session.maskAnnotator = annotator
            session.participants.insert(annotator)
        }
        let total = Self.seconds(since: received)
        if cause == .feedback { statistics.record("feedback_total", seconds: total) }
        let timings = ["queue": queueSeconds, "propagate": result.seconds, "commit": commitSeconds, "total": total]
        let change = MaskChange(imageID: session.imageID, version: version, clickCount: committed.active.count,
                                mask: encodedMask, timings: timings, added: committed.added,
                                undone: committed.undone, overridden: overridden)
        let update = MaskUpdate(imageID: session.imageID, version: version, annotator: annotator, cause: cause,
                                requestID: request.requestID, width: session.width, height: session.height,
                                classes: session.classes, clickCount: committed.active.count, mask: encodedMask,
                                timings: timings, png: png, added: committed.added, undone: committed.undone,
                                overridden: overridden)
        return CommandOutcome(result: .changed(change), update: update)
    }

    // MARK: predict

    /// `predict`: the prepared image of the content (from the cache, or decoded and prepared now and cached under
    /// its hash), then the propagator on exactly the request's points, with the tokens entirely outside the box fixed
    /// to the last class and the mask outside the box set to it. Nothing is stored, logged as clicks or published.
    private func predict(_ prompt: PromptRequest, queueSeconds: Double, received: UInt64) throws -> PredictResult {
        let settings = currentSettings
        let generation = lock.withLock { self.generation }
        let key = PreparedCache.Key.content(prompt.contentHash, generation: generation)
        var timings: [String: Double] = ["queue": queueSeconds, "decode": 0, "encode": 0, "adapt": 0]
        let prepared: PreparedImage
        let cached: Bool
        if let hit = cache.get(key) {
            prepared = hit
            cached = true
        } else {
            guard case .bytes(let bytes) = prompt.image else {
                throw ProtocolError(.unknownImage,
                                    "no prepared image with content hash '\(prompt.contentHash)'; send the image bytes")
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let image = try decode(bytes, maxPixels: settings.maxImagePixels)
            timings["decode"] = Self.seconds(since: t0)
            statistics.record("decode", seconds: timings["decode"]!)
            let resolution = WorkingResolution(width: image.width, height: image.height,
                                               maxPixels: settings.workingPixels)
            prepared = try stage("encoder/adapter") {
                try settings.pipeline.prepare(image, resolution: resolution, context: $0)
            }
            timings["encode"] = prepared.encodeSeconds
            timings["adapt"] = prepared.adaptSeconds
            statistics.record("encode", seconds: prepared.encodeSeconds)
            statistics.record("adapt", seconds: prepared.adaptSeconds)
            cache.put(key, prepared)
            cached = false
        }
        let resolution = prepared.resolution
        let width = resolution.width, height = resolution.height
        let classes = prompt.classes
        var clicks: [ActiveClick] = []
        for (index, point) in prompt.points.enumerated() {
            guard (0..<width).contains(point.x), (0..<height).contains(point.y) else {
                throw ProtocolError(.outOfBounds,
                                    "points[\(index)] at (\(point.x), \(point.y)) lies outside the \(width)x\(height) image")
            }
            guard let classIndex = classes.firstIndex(of: point.className) else {
                throw ProtocolError(.unknownClass, "points[\(index)] has class '\(point.className)'; the classes are "
                                    + classes.joined(separator: ", "))
            }
            clicks.append(ActiveClick(id: Int64(index), annotator: prompt.annotator ?? "",
                                      click: Click(x: point.x, y: point.y, classIndex: classIndex)))
        }
        var box: PixelBox?
        if let given = prompt.box {
            let clipped = PixelBox(x0: max(0, given.x0), y0: max(0, given.y0), x1: min(width - 1, given.x1),
                                   y1: min(height - 1, given.y1))
            guard clipped.x0 <= clipped.x1, clipped.y0 <= clipped.y1 else {
                throw ProtocolError(.outOfBounds, "the box (\(given.x0), \(given.y0))-(\(given.x1), \(given.y1)) lies "
                                    + "outside the \(width)x\(height) image")
            }
            box = clipped
        }
        var points = prompt.points
        if clicks.isEmpty, let box {
            let centre = WireClick(x: (box.x0 + box.x1) / 2, y: (box.y0 + box.y1) / 2, className: classes[0])
            points = [centre]
            clicks = [ActiveClick(id: 0, annotator: prompt.annotator ?? "",
                                  click: Click(x: centre.x, y: centre.y, classIndex: 0))]
        }
        guard !clicks.isEmpty else {
            throw ProtocolError(.badRequest, "'predict' needs at least one point or a box")
        }
        let background = classes.count - 1
        let fixed = box.map {
            FixedTokens.outside(x0: resolution.working($0.x0), y0: resolution.working($0.y0),
                                x1: resolution.working($0.x1), y1: resolution.working($0.y1), of: prepared.encoded,
                                classIndex: background)
        } ?? FixedTokens()
        let resolved = ConflictResolution.resolve(clicks, resolution: resolution, policy: settings.conflictPolicy)
        let (result, _) = try segment(pipeline: settings.pipeline, prepared: prepared, resolved: resolved.inForce,
                                      policy: settings.conflictPolicy, fixed: fixed, classCount: classes.count)
        var mask = result.mask
        if let box {
            for y in 0..<height {
                for x in 0..<width where x < box.x0 || x > box.x1 || y < box.y0 || y > box.y1 {
                    mask.labels[y * width + x] = UInt8(background)
                }
            }
        }
        timings["propagate"] = result.seconds
        timings["total"] = Self.seconds(since: received)
        statistics.record("predict_total", seconds: timings["total"]!)
        return PredictResult(contentHash: prompt.contentHash, width: width, height: height, classes: classes,
                             mask: EncodedMask(mask, classes: classes), cached: cached, points: points, box: box,
                             timings: timings)
    }

    // MARK: stages

    private func existing(_ imageID: String) throws -> ImageSession {
        guard let session = session(imageID) else {
            throw ProtocolError(.unknownImage, "no open image with id '\(imageID)'")
        }
        return session
    }

    private func storeCall<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            throw ProtocolError(.internal, "the store failed: \(error)")
        }
    }

    /// Runs one step, a stage failure becoming `internal`.
    private func stage<T>(_ name: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ProtocolError { throw error } catch {
            throw ProtocolError(.internal, "the \(name) stage failed: \(error)")
        }
    }

    /// Runs one pipeline stage call (`stage`) with its context: the core's logger and statistics, and a budget taken
    /// from `compute` for the call's duration (waiting while no core is free).
    private func stage<T>(_ name: String, _ body: (StageContext) throws -> T) throws -> T {
        try compute.withBudget { budget in
            try stage(name) { try body(StageContext(logger: logger, metrics: statistics, budget: budget)) }
        }
    }

    static func seconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    private func decode(_ bytes: [UInt8], maxPixels: Int) throws -> RGBImage {
        do {
            return try ImageDecoder.decode(bytes, maxPixels: maxPixels)
        } catch let error as ImageError {
            if case .tooLarge = error { throw ProtocolError(.imageTooLarge, error.description) }
            throw ProtocolError(.badImage, error.description)
        } catch {
            throw ProtocolError(.badImage, "\(error)")
        }
    }

    private func pngFrame(_ mask: LabelMask, classCount: Int) throws -> [UInt8] {
        try stage("PNG encoder") { try MaskCodec.png(mask, classCount: classCount) }
    }

    /// The session's prepared image, from the cache or prepared again (after an eviction or a restart).
    private func prepared(_ session: ImageSession) throws -> PreparedImage {
        if let hit = cache.get(session.storeID) { return hit }
        let bytes: [UInt8]
        if let inline = session.imageBytes {
            bytes = inline
        } else if let stored = session.sourcePath {
            guard let root = currentSettings.imageRoot, let path = ImagePaths.resolve(stored, inside: root) else {
                throw ProtocolError(.internal, "the image file '\(stored)' is missing or no longer inside store.image_root")
            }
            do { bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) } catch {
                throw ProtocolError(.internal, "cannot re-read the image file '\(path)': \(error.localizedDescription)")
            }
            guard "sha256:" + SHA256.hex(bytes) == session.contentHash else {
                throw ProtocolError(.internal, "the image file '\(path)' changed since the image was opened")
            }
        } else {
            throw ProtocolError(.internal, "the session has neither image bytes nor a path")
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let image = try decode(bytes, maxPixels: Int.max)
        statistics.record("decode", seconds: Self.seconds(since: t0))
        let prepared = try stage("encoder/adapter") {
            try session.pipeline.prepare(image, resolution: session.resolution, context: $0)
        }
        statistics.record("encode", seconds: prepared.encodeSeconds)
        statistics.record("adapt", seconds: prepared.adaptSeconds)
        cache.put(session.storeID, prepared)
        logger.info("Image prepared again", metadata: ["image": "\(session.imageID)"])
        return prepared
    }

    /// Runs the propagator on clicks already resolved by `ConflictResolution` (working coordinates, log order, ties
    /// broken by `policy`; and, for `predict`, tokens a box fixes), checks the mask's size, records the stage time
    /// and gives the mask at the image's resolution. Of a reduced image, with `previous` and the mask of the version
    /// it belongs to (`previousMask`), only the image rectangle of the propagator's changed rectangle is expanded, the
    /// rest copied from that mask (stage `mask_expand`, within a budget from `compute`); the result's `changed` is
    /// that image rectangle. `working` is the propagator's own mask of a reduced image (nil at the image's own
    /// resolution).
    private func segment(pipeline: SegmentationPipeline, prepared: PreparedImage, resolved: [Click],
                         policy: ConflictPolicy, fixed: FixedTokens = FixedTokens(), classCount: Int,
                         previous: (any PropagatorState)? = nil, previousMask: LabelMask? = nil) throws
        -> (result: SegmentationResult, working: LabelMask?) {
        let resolution = prepared.resolution
        let result = try stage("propagator") {
            try pipeline.segment(prepared, clicks: resolved, fixed: fixed, classCount: classCount,
                                 context: $0.with(clickTieBreak: policy.clickTieBreak), previous: previous)
        }
        guard result.mask.width == resolution.workingWidth, result.mask.height == resolution.workingHeight else {
            throw ProtocolError(.internal, "the propagator returned a \(result.mask.width)x\(result.mask.height) mask for a \(resolution.workingWidth)x\(resolution.workingHeight) working image")
        }
        statistics.record("propagate", seconds: result.seconds)
        guard resolution.isReduced else { return (result, nil) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        var expanded: SegmentationResult
        if let changed = result.changed, let previousMask, previousMask.width == resolution.width,
           previousMask.height == resolution.height {
            // Copy and expansion in bands on the cores a stage call gets (a 12 MP mask is 12 MB to write).
            let (mask, rect) = compute.withBudget { budget in
                resolution.expanded(result.mask, rect: changed, over: previousMask) { count, body in
                    budget.forEachChunk(count: count, body)
                }
            }
            expanded = SegmentationResult(mask: mask, seconds: result.seconds, state: result.state, changed: rect)
        } else {
            expanded = SegmentationResult(mask: resolution.expand(result.mask), seconds: result.seconds,
                                          state: result.state)
        }
        let seconds = Self.seconds(since: t0)
        statistics.record("mask_expand", seconds: seconds)
        expanded.seconds += seconds
        return (expanded, result.mask)
    }

    /// The version as the store gets it: with its delta, except on every `StoredMask.fullVersionInterval`-th
    /// version and when the delta's RLE is no shorter than the full mask's (a change across the whole image).
    private func storedMask(_ encoded: EncodedMask, version: Int, annotator: String?, cause: MaskUpdate.Cause,
                            request: Request, propagate: Double, total: Double) -> StoredMask {
        var delta: StoredMaskDelta?
        if version % StoredMask.fullVersionInterval != 0, let change = encoded.delta {
            func length(_ rle: COCORLE, _ perClass: [String: COCORLE]?) -> Int {
                rle.counts.utf8.count + (perClass?.values.reduce(0) { $0 + $1.counts.utf8.count } ?? 0)
            }
            if length(change.rle, change.classMasks) < length(encoded.rle, encoded.classMasks) {
                delta = MaskCodec.stored(change)
            }
        }
        return StoredMask(version: version, annotator: annotator, cause: cause.rawValue, requestID: request.requestID,
                          rleCounts: encoded.rle.counts, classMasks: encoded.classMasks?.mapValues(\.counts),
                          propagateMilliseconds: propagate * 1e3, totalMilliseconds: total * 1e3, delta: delta)
    }
}
