import ProbattnImaging
import ProbattnJSON
import ProbattnSession

/// The JSON of protocol version 1 (docs/PROTOCOL.md) for the session core's results: reply bodies, error replies and
/// mask updates. The ZeroMQ transport sends these as frames; the HTTP transport sends the same JSON as bodies and
/// WebSocket messages, so every front door answers with the same fields.
public enum WireEncoding {
    /// The reply frames: frame 0 the JSON reply, then any payload frames (the PNG of `get_mask` with format png or
    /// both).
    public static func replyFrames(_ echo: RequestEcho, _ result: Result<CommandResult, ProtocolError>,
                                   format: MaskFormat = .rle) -> [[UInt8]] {
        switch result {
        case .success(let value):
            do {
                let (body, extra) = try self.body(value, format: format)
                return [reply(echo, .success(body)).serialized()] + extra
            } catch {
                return [reply(echo, .failure(error as? ProtocolError ?? ProtocolError(.internal, "\(error)")))
                    .serialized()]
            }
        case .failure(let error):
            return [reply(echo, .failure(error)).serialized()]
        }
    }

    /// The whole reply object: protocol, request_id, kind, ok, and the body's fields or the error.
    public static func reply(_ echo: RequestEcho, _ result: Result<JSONValue, ProtocolError>) -> JSONValue {
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
            fields["error"] = json(error)
        }
        return .object(fields)
    }

    /// The `error` object of a failure reply.
    public static func json(_ error: ProtocolError) -> JSONValue {
        ["code": .string(error.code.rawValue), "message": .string(error.message)]
    }

    public static func json(_ rle: COCORLE) -> JSONValue {
        ["size": .array(rle.size.map(JSONValue.int)), "counts": .string(rle.counts)]
    }

    /// An update's `delta`: the changed rectangle and its content's RLE (docs/PROTOCOL.md, "Mask updates").
    public static func json(_ delta: MaskDelta) -> JSONValue {
        var fields: [String: JSONValue] = [
            "x": .int(delta.rect.x), "y": .int(delta.rect.y), "width": .int(delta.rect.width),
            "height": .int(delta.rect.height), "mask": json(delta.rle),
        ]
        if let perClass = delta.classMasks { fields["class_masks"] = .object(perClass.mapValues(json)) }
        return .object(fields)
    }

    static func milliseconds(_ timings: [String: Double]) -> JSONValue {
        .object(timings.mapValues(JSONValue.ms))
    }

    static func json(_ click: ClickRecord) -> JSONValue {
        ["id": .int(Int(click.id)), "x": .int(click.x), "y": .int(click.y), "class": .string(click.className),
         "annotator": .string(click.annotator)]
    }

    static func ids(_ ids: [Int64]) -> JSONValue { .array(ids.map { .int(Int($0)) }) }

    /// A result's reply fields and payload frames.
    public static func body(_ result: CommandResult, format: MaskFormat = .rle) throws -> (JSONValue, [[UInt8]]) {
        switch result {
        case .opened(let o):
            return (["image_id": .string(o.imageID), "width": .int(o.width), "height": .int(o.height),
                     "classes": .array(o.classes.map(JSONValue.string)), "content_hash": .string(o.contentHash),
                     "version": .int(o.version), "reopened": .bool(o.reopened),
                     "timings_ms": milliseconds(o.timings)], [])
        case .changed(let c):
            var body: [String: JSONValue] = [
                "image_id": .string(c.imageID), "version": .int(c.version), "clicks": .int(c.clickCount),
                "mask": json(c.mask.rle), "timings_ms": milliseconds(c.timings), "overridden": ids(c.overridden),
            ]
            if let undone = c.undone { body["undone"] = json(undone) } else {
                body["click_ids"] = ids(c.added.map(\.id))
            }
            return (.object(body), [])
        case .mask(let m):
            var body: [String: JSONValue] = [
                "image_id": .string(m.imageID), "version": .int(m.version), "width": .int(m.width),
                "height": .int(m.height), "annotator": .optional(m.annotator), "clicks": .int(m.clickCount),
                "overridden": ids(m.overridden),
            ]
            if format.wantsRLE {
                body["mask"] = json(m.encoded?.rle ?? MaskCodec.rle(m.mask))
                if let perClass = m.encoded?.classMasks ?? MaskCodec.classMasks(m.mask, classes: m.classes) {
                    body["class_masks"] = .object(perClass.mapValues(json))
                }
            }
            var extra: [[UInt8]] = []
            if format.wantsPNG {
                do { extra.append(try MaskCodec.png(m.mask, classCount: m.classes.count)) } catch {
                    throw ProtocolError(.internal, "the PNG encoder failed: \(error)")
                }
            }
            return (.object(body), extra)
        case .closed(let c):
            return (["image_id": .string(c.imageID), "version": .int(c.version)], [])
        case .sessions(let list):
            return (["sessions": .array(list.map(json))], [])
        case .health(let h):
            return (json(h), [])
        case .predicted(let p):
            var body: [String: JSONValue] = [
                "content_hash": .string(p.contentHash), "width": .int(p.width), "height": .int(p.height),
                "classes": .array(p.classes.map(JSONValue.string)), "mask": json(p.mask.rle),
                "cached": .bool(p.cached), "timings_ms": milliseconds(p.timings),
                "points": .array(p.points.map { ["x": .int($0.x), "y": .int($0.y), "class": .string($0.className)] }),
                "box": p.box.map { ["x0": .int($0.x0), "y0": .int($0.y0), "x1": .int($0.x1), "y1": .int($0.y1)] }
                    ?? .null,
            ]
            if let perClass = p.mask.classMasks { body["class_masks"] = .object(perClass.mapValues(json)) }
            return (.object(body), [])
        }
    }

    static func json(_ s: SessionSummary) -> JSONValue {
        ["image_id": .string(s.imageID), "width": .int(s.width), "height": .int(s.height),
         "classes": .array(s.classes.map(JSONValue.string)), "version": .int(s.version), "clicks": .int(s.clickCount),
         "annotators": .array(s.annotators.map(JSONValue.string)), "opened_by": .optional(s.openedBy),
         "cached": .bool(s.cached), "queue_depth": .int(s.queueDepth)]
    }

    static func json(_ h: HealthReport) -> JSONValue {
        func ms(_ seconds: Double?) -> JSONValue { seconds.map(JSONValue.ms) ?? .null }
        return [
            "uptime_s": .double(h.uptimeSeconds), "sessions": .int(h.sessions),
            "pending_requests": .int(h.pendingRequests), "workers": .int(h.workers),
            "queue_depths": .object(h.queueDepths.mapValues(JSONValue.int)),
            "cache": ["entries": .int(h.cacheEntries), "bytes": .int(h.cacheBytes),
                      "budget_bytes": .int(h.cacheBudgetBytes), "evictions": .int(h.cacheEvictions)],
            "stages": .object(h.stages.mapValues { s in
                ["count": .int(s.count), "p50_ms": ms(s.p50), "p90_ms": ms(s.p90), "p99_ms": ms(s.p99),
                 "max_ms": ms(s.max)]
            }),
        ]
    }

    /// The JSON of a mask update (the PUB socket's frame 1, and the WebSocket's text message).
    public static func update(_ u: MaskUpdate) -> JSONValue {
        var header: [String: JSONValue] = [
            "protocol": .int(probattnProtocolVersion), "kind": "mask_update", "image_id": .string(u.imageID),
            "version": .int(u.version), "annotator": .optional(u.annotator), "cause": .string(u.cause.rawValue),
            "request_id": .string(u.requestID), "width": .int(u.width), "height": .int(u.height),
            "clicks": .int(u.clickCount), "mask": json(u.mask.rle), "timings_ms": milliseconds(u.timings),
            "png": .bool(u.png != nil), "overridden": ids(u.overridden),
        ]
        if let perClass = u.mask.classMasks { header["class_masks"] = .object(perClass.mapValues(json)) }
        if let delta = u.mask.delta { header["delta"] = json(delta) }
        if let click = u.added.last { header["click"] = json(click) }
        if u.added.count > 1 { header["clicks_added"] = .array(u.added.map(json)) }
        if let undone = u.undone { header["undone"] = json(undone) }
        return .object(header)
    }

    /// The PUB socket's frames of an update: topic, JSON, and the PNG when the session publishes one.
    public static func updateFrames(_ u: MaskUpdate) -> [[UInt8]] {
        [topic(u.imageID), update(u).serialized()] + (u.png.map { [$0] } ?? [])
    }

    /// The topic frame of an image's updates: `"mask/" + id + NUL` (ids cannot contain NUL, so no id's topic is a
    /// prefix of another's).
    public static func topic(_ imageID: String) -> [UInt8] { Array("mask/\(imageID)".utf8) + [0] }
}
