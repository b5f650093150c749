import Foundation
import Logging
import ProbattnImaging
import ProbattnPluginHost
import ProbattnSegmentation

/// What a reload may change while the daemon runs.
struct LiveSettings: Sendable {
    var limits: DaemonConfig.Limits
    var conflictPolicy: DaemonConfig.ConflictPolicy
    var imageBytes: DaemonConfig.ImageBytes
    /// The pipeline for images opened from now on.
    var pipeline: SegmentationPipeline
}

/// Executes requests: the daemon-wide kinds at once on the socket thread, the per-image kinds as jobs on the
/// scheduler (one image's jobs in arrival order). Every job ends by posting exactly one reply (and, when the mask
/// changed, one update) to the outbox — after the store has committed.
final class SessionEngine: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [String: ImageSession] = [:]
    private var settings: LiveSettings
    private let store: SessionStore
    private let cache: PreparedCache
    private let scheduler: WorkScheduler
    private let outbox: Outbox
    private let plugins: PluginRegistry?
    private let logger: Logger
    let statistics = StageStatistics()
    private let startTime = DispatchTime.now().uptimeNanoseconds

    init(settings: LiveSettings, store: SessionStore, cache: PreparedCache, scheduler: WorkScheduler, outbox: Outbox,
         plugins: PluginRegistry?, logger: Logger) {
        self.settings = settings
        self.store = store
        self.cache = cache
        self.scheduler = scheduler
        self.outbox = outbox
        self.plugins = plugins
        self.logger = logger
    }

    var currentSettings: LiveSettings { lock.lock(); defer { lock.unlock() }; return settings }

    func apply(_ new: LiveSettings) {
        lock.lock()
        settings = new
        lock.unlock()
        cache.setBudget(new.limits.cacheMemoryBytes)
        scheduler.setLimits(perKey: new.limits.queueDepthPerImage, total: new.limits.maxPendingRequests)
    }

    private func session(_ imageID: String) -> ImageSession? {
        lock.lock(); defer { lock.unlock() }
        return sessions[imageID]
    }

    // MARK: resume

    /// Loads every open session of the store (after a restart). The mask is the stored latest version; the image is
    /// prepared again lazily by the next request that needs it.
    func resume() throws {
        let pipeline = currentSettings.pipeline
        for (stored, clicks, mask) in try store.openSessions() {
            let labels: LabelMask
            do {
                if let mask {
                    labels = try MaskCodec.labels(from: mask, width: stored.width, height: stored.height,
                                                  classes: stored.classes)
                } else {
                    labels = LabelMask(width: stored.width, height: stored.height, filledWith: 1)
                }
            } catch {
                logger.error("Cannot resume session: stored mask unreadable",
                             metadata: ["image": "\(stored.imageID)", "error": "\(error)"])
                continue
            }
            let session = ImageSession(
                storeID: stored.storeID, imageID: stored.imageID, width: stored.width, height: stored.height,
                classes: stored.classes, contentHash: stored.contentHash, publishPNG: stored.publishPNG,
                imageBytes: stored.bytes, sourcePath: stored.sourcePath, pipeline: pipeline,
                clicks: clicks.map { ActiveClick(id: $0.id, annotator: $0.annotator,
                                                 click: Click(x: $0.x, y: $0.y, classIndex: $0.classIndex)) },
                version: mask?.version ?? 0, mask: labels, maskAnnotator: mask?.annotator)
            lock.lock()
            sessions[stored.imageID] = session
            lock.unlock()
            logger.info("Session resumed", metadata: ["image": "\(stored.imageID)", "version": "\(session.version)",
                                                      "clicks": "\(session.clicks.count)"])
        }
    }

    // MARK: dispatch

    /// Handles one parsed request. Daemon-wide kinds are answered at once (the reply is returned); per-image kinds
    /// are queued (nil is returned, the job posts its reply) or refused with `busy`.
    func dispatch(_ request: Request, envelope: [[UInt8]]) -> [[UInt8]]? {
        let received = DispatchTime.now().uptimeNanoseconds
        switch request.body {
        case .health: return Self.reply(request, .success(health()))
        case .listSessions: return Self.reply(request, .success(listSessions()))
        case .listPlugins: return Self.reply(request, .success(listPlugins()))
        default: break
        }
        guard let imageID = request.body.imageID else {
            return Self.reply(request, .failure(ProtocolError(.internal, "request without an image")))
        }
        let accepted = scheduler.submit(key: imageID) { [self] in
            let started = DispatchTime.now().uptimeNanoseconds
            let queueSeconds = Double(started - received) / 1e9
            var messages: [Outgoing]
            do {
                messages = try run(request, envelope: envelope, queueSeconds: queueSeconds, received: received)
            } catch let error as ProtocolError {
                messages = [.reply(envelope: envelope, frames: Self.reply(request, .failure(error)))]
            } catch {
                messages = [.reply(envelope: envelope, frames: Self.reply(
                    request, .failure(ProtocolError(.internal, "\(error)"))))]
            }
            outbox.post(messages)
        }
        if accepted { return nil }
        let depth = scheduler.queueDepths[imageID] ?? 0
        return Self.reply(request, .failure(ProtocolError(
            .busy, "the daemon is busy (\(depth) requests queued for image '\(imageID)', \(scheduler.pendingCount) pending in all); retry later")))
    }

    /// The reply frames for a request.
    static func reply(_ request: Request, _ result: Result<JSONValue, ProtocolError>, extra: [[UInt8]] = []) -> [[UInt8]] {
        reply(echo: RequestEcho(requestID: request.requestID, kind: request.kind.rawValue), result, extra: extra)
    }

    static func reply(echo: RequestEcho, _ result: Result<JSONValue, ProtocolError>, extra: [[UInt8]] = []) -> [[UInt8]] {
        var fields: [String: JSONValue] = [
            "protocol": .int(probattnProtocolVersion), "request_id": .optional(echo.requestID),
            "kind": .optional(echo.kind),
        ]
        switch result {
        case .success(let body):
            for (k, v) in body.objectValue ?? [:] { fields[k] = v }
            fields["ok"] = true
        case .failure(let error):
            fields["ok"] = false
            fields["error"] = error.json
        }
        return [JSONValue.object(fields).serialized()] + extra
    }

    // MARK: per-image jobs

    private func run(_ request: Request, envelope: [[UInt8]], queueSeconds: Double, received: UInt64) throws
        -> [Outgoing] {
        var meta: Logger.Metadata = ["request": "\(request.requestID)", "kind": "\(request.kind.rawValue)"]
        if let image = request.body.imageID { meta["image"] = "\(image)" }
        if let annotator = request.body.annotator { meta["annotator"] = "\(annotator)" }
        do {
            let (body, extra, update) = try execute(request, queueSeconds: queueSeconds, received: received)
            var messages: [Outgoing] = [.reply(envelope: envelope, frames: Self.reply(request, .success(body),
                                                                                       extra: extra))]
            if let update { messages.append(.publish(frames: update)) }
            if let version = body["version"]?.intValue { meta["version"] = "\(version)" }
            meta["ms"] = "\(String(format: "%.1f", Double(DispatchTime.now().uptimeNanoseconds - received) / 1e6))"
            logger.info("Request done", metadata: meta)
            return messages
        } catch let error as ProtocolError {
            meta["code"] = "\(error.code.rawValue)"
            logger.notice("Request refused: \(error.message)", metadata: meta)
            throw error
        }
    }

    private func execute(_ request: Request, queueSeconds: Double, received: UInt64) throws
        -> (JSONValue, [[UInt8]], [[UInt8]]?) {
        switch request.body {
        case let .openImage(imageID, classes, annotator, sourcePath, publishPNG, bytes):
            return try openImage(request, imageID: imageID, classes: classes, annotator: annotator,
                                 sourcePath: sourcePath, publishPNG: publishPNG, bytes: bytes, received: received)
        case let .feedback(imageID, annotator, clicks):
            return try feedback(request, imageID: imageID, annotator: annotator, clicks: clicks,
                                queueSeconds: queueSeconds, received: received)
        case let .undo(imageID, annotator):
            return try undo(request, imageID: imageID, annotator: annotator, queueSeconds: queueSeconds,
                            received: received)
        case let .getMask(imageID, format):
            return try getMask(imageID: imageID, format: format)
        case let .closeImage(imageID):
            let session = try existing(imageID)
            try storeCall { try store.close(session: session.storeID) }
            lock.lock()
            sessions[imageID] = nil
            let version = session.version
            lock.unlock()
            cache.remove(session.storeID)
            return (["image_id": .string(imageID), "version": .int(version)], [], nil)
        case .health, .listSessions, .listPlugins:
            throw ProtocolError(.internal, "daemon-wide request routed to an image queue")
        }
    }

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

    private func stage<T>(_ name: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ProtocolError { throw error } catch {
            throw ProtocolError(.internal, "the \(name) stage failed: \(error)")
        }
    }

    private static func seconds(since start: UInt64) -> Double {
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

    /// The session's prepared image, from the cache or prepared again (after an eviction or a restart).
    private func prepared(_ session: ImageSession) throws -> PreparedImage {
        if let hit = cache.get(session.storeID) { return hit }
        let bytes: [UInt8]
        if let inline = session.imageBytes {
            bytes = inline
        } else if let path = session.sourcePath {
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
        let prepared = try stage("encoder/adapter") { try session.pipeline.prepare(image) }
        statistics.record("encode", seconds: prepared.encodeSeconds)
        statistics.record("adapt", seconds: prepared.adaptSeconds)
        cache.put(session.storeID, prepared)
        logger.info("Image prepared again", metadata: ["image": "\(session.imageID)"])
        return prepared
    }

    private func segment(_ session: ImageSession, prepared: PreparedImage, clicks: [ActiveClick]) throws
        -> SegmentationResult {
        let latest = currentSettings.conflictPolicy == .latestWins
        let effective = ConflictResolution.resolve(clicks.map(\.click), tokenOfPixel: prepared.encoded.tokenOfPixel,
                                                   width: session.width, latestWins: latest)
        let result = try stage("propagator") {
            try session.pipeline.segment(prepared, clicks: effective, classCount: session.classes.count)
        }
        guard result.mask.width == session.width, result.mask.height == session.height else {
            throw ProtocolError(.internal, "the propagator returned a \(result.mask.width)x\(result.mask.height) mask for a \(session.width)x\(session.height) image")
        }
        statistics.record("propagate", seconds: result.seconds)
        return result
    }

    private func storedMask(_ encoded: EncodedMask, version: Int, annotator: String?, cause: String, request: Request,
                            propagate: Double, total: Double) -> StoredMask {
        StoredMask(version: version, annotator: annotator, cause: cause, requestID: request.requestID,
                   rleCounts: encoded.rle.counts, classMasks: encoded.classMasks?.mapValues(\.counts),
                   propagateMilliseconds: propagate * 1e3, totalMilliseconds: total * 1e3)
    }

    /// The update frames published after a mask change.
    private func update(_ session: ImageSession, mask encoded: EncodedMask, version: Int, annotator: String?, cause: String,
                        request: Request, clickCount: Int, timings: JSONValue) throws -> [[UInt8]] {
        var header: [String: JSONValue] = [
            "protocol": .int(probattnProtocolVersion), "kind": "mask_update", "image_id": .string(session.imageID),
            "version": .int(version), "annotator": .optional(annotator), "cause": .string(cause),
            "request_id": .string(request.requestID), "width": .int(session.width), "height": .int(session.height),
            "clicks": .int(clickCount), "mask": MaskCodec.json(encoded.rle), "timings_ms": timings,
            "png": .bool(session.publishPNG),
        ]
        if let perClass = encoded.classMasks {
            header["class_masks"] = .object(perClass.mapValues(MaskCodec.json))
        }
        var frames = [ImageSession.topic(session.imageID), JSONValue.object(header).serialized()]
        if session.publishPNG {
            frames.append(try stage("PNG encoder") {
                try MaskCodec.png(encoded.mask, classCount: session.classes.count)
            })
        }
        return frames
    }

    private func openImage(_ request: Request, imageID: String, classes: [String], annotator: String?,
                           sourcePath: String?, publishPNG: Bool, bytes: [UInt8], received: UInt64) throws
        -> (JSONValue, [[UInt8]], [[UInt8]]?) {
        let settings = currentSettings
        let hash = "sha256:" + SHA256.hex(bytes)
        if let current = session(imageID) {
            guard current.contentHash == hash, current.classes == classes else {
                throw ProtocolError(.imageExists,
                                    "image '\(imageID)' is already open with different \(current.contentHash == hash ? "classes" : "content"); close it first or choose another id")
            }
            lock.lock()
            let version = current.version
            lock.unlock()
            return (["image_id": .string(imageID), "width": .int(current.width), "height": .int(current.height),
                     "classes": .array(classes.map(JSONValue.string)), "content_hash": .string(hash),
                     "version": .int(version), "reopened": true,
                     "timings_ms": ["decode": 0, "encode": 0, "adapt": 0, "propagate": 0, "commit": 0,
                                    "total": .ms(Self.seconds(since: received))]], [], nil)
        }
        if settings.imageBytes == .path, sourcePath == nil {
            throw ProtocolError(.badRequest,
                                "field 'source_path' is required: this daemon stores image paths, not bytes (store.image_bytes: path)")
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let image = try decode(bytes, maxPixels: settings.limits.maxImagePixels)
        let decodeSeconds = Self.seconds(since: t0)
        statistics.record("decode", seconds: decodeSeconds)
        let pipeline = settings.pipeline
        let prepared = try stage("encoder/adapter") { try pipeline.prepare(image) }
        statistics.record("encode", seconds: prepared.encodeSeconds)
        statistics.record("adapt", seconds: prepared.adaptSeconds)

        let draft = ImageSession(storeID: -1, imageID: imageID, width: image.width, height: image.height,
                                 classes: classes, contentHash: hash, publishPNG: publishPNG, imageBytes: bytes,
                                 sourcePath: sourcePath, pipeline: pipeline, clicks: [], version: 0,
                                 mask: LabelMask(width: image.width, height: image.height, filledWith: 0),
                                 maskAnnotator: annotator)
        let result = try segment(draft, prepared: prepared, clicks: [])
        let encodedMask = EncodedMask(result.mask, classes: classes)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let record = StoredSession(storeID: -1, imageID: imageID, width: image.width, height: image.height,
                                   contentHash: hash, classes: classes,
                                   bytes: settings.imageBytes == .inline ? bytes : nil, sourcePath: sourcePath,
                                   publishPNG: publishPNG, openedBy: annotator)
        let storeID = try storeCall {
            try store.open(record, firstMask: storedMask(encodedMask, version: 0, annotator: annotator, cause: "open",
                                                         request: request, propagate: result.seconds,
                                                         total: Self.seconds(since: received)))
        }
        let commitSeconds = Self.seconds(since: t1)
        statistics.record("commit", seconds: commitSeconds)
        cache.put(storeID, prepared)
        let session = ImageSession(storeID: storeID, imageID: imageID, width: image.width, height: image.height,
                                   classes: classes, contentHash: hash, publishPNG: publishPNG,
                                   imageBytes: settings.imageBytes == .inline ? bytes : bytes,
                                   sourcePath: sourcePath, pipeline: pipeline, clicks: [], version: 0,
                                   mask: result.mask, maskAnnotator: annotator)
        lock.lock()
        sessions[imageID] = session
        lock.unlock()
        let timings: JSONValue = ["decode": .ms(decodeSeconds), "encode": .ms(prepared.encodeSeconds),
                                  "adapt": .ms(prepared.adaptSeconds), "propagate": .ms(result.seconds),
                                  "commit": .ms(commitSeconds), "total": .ms(Self.seconds(since: received))]
        let body: JSONValue = ["image_id": .string(imageID), "width": .int(image.width), "height": .int(image.height),
                               "classes": .array(classes.map(JSONValue.string)), "content_hash": .string(hash),
                               "version": 0, "reopened": false, "timings_ms": timings]
        let published = try update(session, mask: encodedMask, version: 0, annotator: annotator, cause: "open",
                                   request: request, clickCount: 0, timings: timings)
        return (body, [], published)
    }

    private func feedback(_ request: Request, imageID: String, annotator: String, clicks: [WireClick],
                          queueSeconds: Double, received: UInt64) throws -> (JSONValue, [[UInt8]], [[UInt8]]?) {
        let session = try existing(imageID)
        var newClicks: [Click] = []
        for (index, wire) in clicks.enumerated() {
            guard (0..<session.width).contains(wire.x), (0..<session.height).contains(wire.y) else {
                throw ProtocolError(.outOfBounds,
                                    "clicks[\(index)] at (\(wire.x), \(wire.y)) lies outside the \(session.width)x\(session.height) image")
            }
            guard let classIndex = session.classes.firstIndex(of: wire.className) else {
                throw ProtocolError(.unknownClass, "clicks[\(index)] has class '\(wire.className)'; this image's classes are "
                                    + session.classes.joined(separator: ", "))
            }
            newClicks.append(Click(x: wire.x, y: wire.y, classIndex: classIndex))
        }
        let prepared = try prepared(session)
        let tentative = newClicks.map { ActiveClick(id: -1, annotator: annotator, click: $0) }
        let result = try segment(session, prepared: prepared, clicks: session.clicks + tentative)
        let encodedMask = EncodedMask(result.mask, classes: session.classes)
        let version = session.version + 1
        let t1 = DispatchTime.now().uptimeNanoseconds
        let stored = try storeCall {
            try store.append(
                clicks: newClicks.map { (annotator, $0.x, $0.y, $0.classIndex, session.classes[$0.classIndex]) },
                requestID: request.requestID, session: session.storeID,
                mask: storedMask(encodedMask, version: version, annotator: annotator, cause: "feedback",
                                 request: request, propagate: result.seconds,
                                 total: Self.seconds(since: received)))
        }
        let commitSeconds = Self.seconds(since: t1)
        statistics.record("commit", seconds: commitSeconds)
        lock.lock()
        session.clicks += stored.map { ActiveClick(id: $0.id, annotator: annotator,
                                                   click: Click(x: $0.x, y: $0.y, classIndex: $0.classIndex)) }
        session.version = version
        session.mask = result.mask
        session.maskAnnotator = annotator
        let clickCount = session.clicks.count
        lock.unlock()
        let total = Self.seconds(since: received)
        statistics.record("feedback_total", seconds: total)
        let timings: JSONValue = ["queue": .ms(queueSeconds), "propagate": .ms(result.seconds),
                                  "commit": .ms(commitSeconds), "total": .ms(total)]
        let body: JSONValue = ["image_id": .string(imageID), "version": .int(version), "clicks": .int(clickCount),
                               "mask": MaskCodec.json(encodedMask.rle), "timings_ms": timings]
        let published = try update(session, mask: encodedMask, version: version, annotator: annotator,
                                   cause: "feedback", request: request, clickCount: clickCount, timings: timings)
        return (body, [], published)
    }

    private func undo(_ request: Request, imageID: String, annotator: String, queueSeconds: Double,
                      received: UInt64) throws -> (JSONValue, [[UInt8]], [[UInt8]]?) {
        let session = try existing(imageID)
        guard let position = session.clicks.lastIndex(where: { $0.annotator == annotator }) else {
            throw ProtocolError(.nothingToUndo, "annotator '\(annotator)' has no click to undo on image '\(imageID)'")
        }
        let removed = session.clicks[position]
        var remaining = session.clicks
        remaining.remove(at: position)
        let prepared = try prepared(session)
        let result = try segment(session, prepared: prepared, clicks: remaining)
        let encodedMask = EncodedMask(result.mask, classes: session.classes)
        let version = session.version + 1
        let t1 = DispatchTime.now().uptimeNanoseconds
        try storeCall {
            try store.undo(click: removed.id, session: session.storeID,
                           mask: storedMask(encodedMask, version: version, annotator: annotator, cause: "undo",
                                            request: request, propagate: result.seconds,
                                            total: Self.seconds(since: received)))
        }
        let commitSeconds = Self.seconds(since: t1)
        statistics.record("commit", seconds: commitSeconds)
        lock.lock()
        session.clicks = remaining
        session.version = version
        session.mask = result.mask
        session.maskAnnotator = annotator
        lock.unlock()
        let timings: JSONValue = ["queue": .ms(queueSeconds), "propagate": .ms(result.seconds),
                                  "commit": .ms(commitSeconds), "total": .ms(Self.seconds(since: received))]
        let body: JSONValue = [
            "image_id": .string(imageID), "version": .int(version), "clicks": .int(remaining.count),
            "mask": MaskCodec.json(encodedMask.rle), "timings_ms": timings,
            "undone": ["x": .int(removed.click.x), "y": .int(removed.click.y),
                       "class": .string(session.classes[removed.click.classIndex])],
        ]
        let published = try update(session, mask: encodedMask, version: version, annotator: annotator,
                                   cause: "undo", request: request, clickCount: remaining.count, timings: timings)
        return (body, [], published)
    }

    private func getMask(imageID: String, format: MaskFormat) throws -> (JSONValue, [[UInt8]], [[UInt8]]?) {
        let session = try existing(imageID)
        lock.lock()
        let (mask, version, annotator, clicks) = (session.mask, session.version, session.maskAnnotator,
                                                  session.clicks.count)
        lock.unlock()
        var body: [String: JSONValue] = [
            "image_id": .string(imageID), "version": .int(version), "width": .int(session.width),
            "height": .int(session.height), "annotator": .optional(version == 0 ? nil : annotator),
            "clicks": .int(clicks),
        ]
        if format.wantsRLE {
            body["mask"] = MaskCodec.json(MaskCodec.rle(mask))
            if let perClass = MaskCodec.classMasks(mask, classes: session.classes) {
                body["class_masks"] = .object(perClass.mapValues(MaskCodec.json))
            }
        }
        var extra: [[UInt8]] = []
        if format.wantsPNG {
            extra.append(try stage("PNG encoder") { try MaskCodec.png(mask, classCount: session.classes.count) })
        }
        return (.object(body), extra, nil)
    }

    // MARK: daemon-wide

    func health() -> JSONValue {
        let cacheStats = cache.stats
        lock.lock()
        let sessionCount = sessions.count
        lock.unlock()
        return [
            "uptime_s": .double(Double(DispatchTime.now().uptimeNanoseconds - startTime) / 1e9),
            "sessions": .int(sessionCount),
            "pending_requests": .int(scheduler.pendingCount),
            "workers": .int(scheduler.workerCount),
            "queue_depths": .object(scheduler.queueDepths.mapValues(JSONValue.int)),
            "cache": ["entries": .int(cacheStats.entries), "bytes": .int(cacheStats.bytes),
                      "budget_bytes": .int(cacheStats.budget), "evictions": .int(cacheStats.evictions)],
            "stages": statistics.summary(),
        ]
    }

    func listSessions() -> JSONValue {
        let depths = scheduler.queueDepths
        lock.lock()
        let list = sessions.values.sorted { $0.imageID < $1.imageID }.map { s -> JSONValue in
            [
                "image_id": .string(s.imageID), "width": .int(s.width), "height": .int(s.height),
                "classes": .array(s.classes.map(JSONValue.string)), "version": .int(s.version),
                "clicks": .int(s.clicks.count),
                "annotators": .array(Array(Set(s.clicks.map(\.annotator))).sorted().map(JSONValue.string)),
                "cached": .bool(cache.contains(s.storeID)), "queue_depth": .int(depths[s.imageID] ?? 0),
            ]
        }
        lock.unlock()
        return ["sessions": .array(list)]
    }

    func listPlugins() -> JSONValue {
        guard let plugins else { return ["directory": .null, "plugins": [], "failures": []] }
        return PluginListing.json(plugins)
    }
}
