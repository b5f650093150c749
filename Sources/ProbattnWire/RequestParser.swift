import ProbattnJSON
import ProbattnSession

/// Turns the frames of one request (after the routing envelope) into a `Request`, or a `ProtocolError` with the
/// header's echo. Enforces the frame and size limits first, so an oversized message is refused before it is parsed.
/// Called by the ZeroMQ transport for every inbound message, after `splitEnvelope`.
public struct RequestParser: Sendable {
    public var maxMessageBytes: Int
    public var maxFrames: Int

    public init(maxMessageBytes: Int, maxFrames: Int) {
        self.maxMessageBytes = maxMessageBytes
        self.maxFrames = maxFrames
    }

    public static let maxIDLength = 256
    /// Largest header frame, in bytes (1 MiB); a longer one is refused with `bad_header` before it is parsed.
    public static let maxHeaderBytes = 1 << 20
    /// How many frames at the start of a message may form its envelope (see `splitEnvelope`).
    public static let maxEnvelopeFrames = 8

    /// Splits the frames after the routing id into the envelope (sent back in front of the reply) and the request.
    /// A message whose frame 0 is a JSON object has no envelope. Otherwise the envelope is every frame up to and
    /// including the first empty frame among the first `maxEnvelopeFrames` (a REQ socket's delimiter, a
    /// REQ_CORRELATE request id and delimiter, the routing ids a ROUTER/DEALER proxy adds and the delimiter the
    /// client sent); without such an empty frame there is no envelope and frame 0 is read as the header.
    public static func splitEnvelope(_ frames: [[UInt8]]) -> (envelope: [[UInt8]], request: [[UInt8]]) {
        guard let delimiter = frames.prefix(maxEnvelopeFrames).firstIndex(where: \.isEmpty) else {
            return ([], frames)
        }
        if delimiter > 0, case .object? = header(frames[0]) { return ([], frames) }
        return (Array(frames[...delimiter]), Array(frames[(delimiter + 1)...]))
    }

    /// The header frame's JSON, or nil when it is longer than `maxHeaderBytes`, not UTF-8 or not JSON.
    private static func header(_ bytes: [UInt8]) -> JSONValue? {
        guard bytes.count <= maxHeaderBytes, isUTF8Text(bytes) else { return nil }
        return JSONValue.parse(bytes)
    }

    /// Valid UTF-8 without NUL bytes. JSON in UTF-8 never has a raw NUL (inside strings it must be escaped), while
    /// ASCII text in UTF-16 or UTF-32 is full of them; Foundation's decoder would otherwise accept those encodings.
    static func isUTF8Text(_ bytes: [UInt8]) -> Bool {
        !bytes.contains(0) && String(validating: bytes, as: UTF8.self) != nil
    }

    public func parse(_ frames: [[UInt8]]) -> Result<Request, ParseFailure> {
        guard let headerBytes = frames.first else {
            return .failure(.init(echo: .unknown, error: ProtocolError(.badHeader, "the message has no header frame")))
        }
        // The header is parsed (when possible) before the limits are checked, so that even a refused message's reply
        // carries its request_id.
        let header = Self.header(headerBytes)
        let echo = RequestEcho(requestID: header?["request_id"]?.stringValue, kind: header?["kind"]?.stringValue)
        func fail(_ code: ErrorCode, _ message: String) -> Result<Request, ParseFailure> {
            .failure(ParseFailure(echo: echo, error: ProtocolError(code, message)))
        }
        if frames.count > maxFrames {
            return fail(.tooManyFrames, "the request has \(frames.count) frames; at most \(maxFrames) are accepted")
        }
        let total = frames.reduce(0) { $0 + $1.count }
        if total > maxMessageBytes {
            return fail(.messageTooLarge, "the request has \(total) bytes; at most \(maxMessageBytes) are accepted")
        }
        if headerBytes.count > Self.maxHeaderBytes {
            return fail(.badHeader, "the header frame has \(headerBytes.count) bytes; headers are limited to "
                            + "\(Self.maxHeaderBytes) bytes (1 MiB)")
        }
        if !Self.isUTF8Text(headerBytes) {
            return fail(.badHeader, "the header frame is not UTF-8 text (invalid UTF-8 or NUL bytes, as in UTF-16)")
        }
        guard let header, case .object(let fields) = header else {
            return fail(.badHeader, "the header frame is not a JSON object")
        }
        var reader = FieldReader(fields: fields)
        do {
            guard let version = fields["protocol"] else {
                throw ProtocolError(.badRequest, "missing field 'protocol' (this daemon speaks protocol \(probattnProtocolVersion))")
            }
            guard let v = version.intValue, case .int = version else {
                throw ProtocolError(.badRequest, "field 'protocol' must be an integer, got \(version)")
            }
            guard v == probattnProtocolVersion else {
                throw ProtocolError(.unsupportedProtocol,
                                    "protocol version \(v) is not supported; this daemon speaks version \(probattnProtocolVersion)")
            }
            let requestID = try reader.identifier("request_id")
            let kindName = try reader.string("kind")
            guard let kind = RequestKind(rawValue: kindName) else {
                throw ProtocolError(.unknownKind, "unknown request kind '\(kindName)'; valid kinds: "
                                    + RequestKind.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let payloads = Array(frames.dropFirst())
            if kind != .openImage, kind != .predict, !payloads.isEmpty {
                throw ProtocolError(.badRequest, "'\(kind.rawValue)' takes no payload frames, got \(payloads.count)")
            }
            let body = try parseBody(kind, &reader, payloads: payloads)
            return .success(Request(requestID: requestID, kind: kind, body: body))
        } catch let error as ProtocolError {
            return .failure(ParseFailure(echo: echo, error: error))
        } catch {
            return fail(.badRequest, "\(error)")
        }
    }

    private func parseBody(_ kind: RequestKind, _ r: inout FieldReader, payloads: [[UInt8]]) throws -> RequestBody {
        switch kind {
        case .openImage:
            let imageID = try r.identifier("image_id")
            let classes = try Self.classes(r)
            let annotator = try r.optionalIdentifier("annotator")
            let sourcePath = try r.optionalString("source_path")
            let publishPNG = try r.optionalBool("publish_png") ?? false
            guard payloads.count == 1 else {
                throw ProtocolError(.badRequest,
                                    "'open_image' needs exactly one payload frame with the image bytes, got \(payloads.count)")
            }
            return .openImage(imageID: imageID, classes: classes, annotator: annotator, sourcePath: sourcePath,
                              publishPNG: publishPNG, bytes: payloads[0])
        case .feedback:
            let imageID = try r.identifier("image_id")
            let annotator = try r.identifier("annotator")
            guard let raw = r.fields["clicks"] else { throw ProtocolError(.badRequest, "missing field 'clicks'") }
            guard let list = raw.arrayValue, !list.isEmpty else {
                throw ProtocolError(.badRequest, "field 'clicks' must be a non-empty array of {x, y, class}")
            }
            let clicks = try list.enumerated().map { index, item -> WireClick in
                guard case .object(let c) = item else {
                    throw ProtocolError(.badRequest, "clicks[\(index)] must be an object {x, y, class}")
                }
                let cr = FieldReader(fields: c, prefix: "clicks[\(index)].")
                return WireClick(x: try cr.int("x"), y: try cr.int("y"), className: try cr.string("class"))
            }
            return .feedback(imageID: imageID, annotator: annotator, clicks: clicks)
        case .undo:
            return .undo(imageID: try r.identifier("image_id"), annotator: try r.identifier("annotator"))
        case .getMask:
            let imageID = try r.identifier("image_id")
            var format = MaskFormat.rle
            if let name = try r.optionalString("format") {
                guard let f = MaskFormat(rawValue: name) else {
                    throw ProtocolError(.badRequest, "field 'format' must be one of rle, png, both; got '\(name)'")
                }
                format = f
            }
            return .getMask(imageID: imageID, format: format)
        case .closeImage:
            return .closeImage(imageID: try r.identifier("image_id"))
        case .listSessions: return .listSessions
        case .health: return .health
        case .listPlugins: return .listPlugins
        case .predict:
            return .predict(try Self.prompt(r, payloads: payloads))
        }
    }

    /// The `classes` field (default object, background).
    private static func classes(_ r: FieldReader) throws -> [String] {
        guard let list = try r.optionalStringArray("classes") else { return ["object", "background"] }
        guard (2...255).contains(list.count) else {
            throw ProtocolError(.badRequest, "field 'classes' must list 2 to 255 classes, got \(list.count)")
        }
        guard Set(list).count == list.count, !list.contains(where: \.isEmpty) else {
            throw ProtocolError(.badRequest, "field 'classes' must hold distinct non-empty names")
        }
        return list
    }

    /// `predict`: `points` (may be empty when there is a `box`), optional `box` {x0, y0, x1, y1}, the image as one
    /// payload frame or, without a payload, by `content_hash`.
    private static func prompt(_ r: FieldReader, payloads: [[UInt8]]) throws -> PromptRequest {
        let classes = try classes(r)
        let annotator = try r.optionalIdentifier("annotator")
        var points: [WireClick] = []
        if let raw = r.fields["points"], raw != .null {
            guard let list = raw.arrayValue else {
                throw ProtocolError(.badRequest, "field 'points' must be an array of {x, y, class}")
            }
            points = try list.enumerated().map { index, item -> WireClick in
                guard case .object(let c) = item else {
                    throw ProtocolError(.badRequest, "points[\(index)] must be an object {x, y, class}")
                }
                let cr = FieldReader(fields: c, prefix: "points[\(index)].")
                return WireClick(x: try cr.int("x"), y: try cr.int("y"), className: try cr.string("class"))
            }
        }
        var box: PixelBox?
        if let raw = r.fields["box"], raw != .null {
            guard case .object(let b) = raw else {
                throw ProtocolError(.badRequest, "field 'box' must be an object {x0, y0, x1, y1}")
            }
            let br = FieldReader(fields: b, prefix: "box.")
            let value = PixelBox(x0: try br.int("x0"), y0: try br.int("y0"), x1: try br.int("x1"), y1: try br.int("y1"))
            guard value.x0 <= value.x1, value.y0 <= value.y1 else {
                throw ProtocolError(.badRequest, "field 'box' needs x0 <= x1 and y0 <= y1")
            }
            box = value
        }
        if points.isEmpty, box == nil {
            throw ProtocolError(.badRequest, "'predict' needs at least one point in 'points' or a 'box'")
        }
        let hash = try r.optionalString("content_hash")
        switch payloads.count {
        case 0:
            guard let hash else {
                throw ProtocolError(.badRequest,
                                    "'predict' needs the image: one payload frame with its bytes, or 'content_hash'")
            }
            return PromptRequest(contentHash: hash, classes: classes, points: points, box: box, annotator: annotator)
        case 1:
            let prompt = PromptRequest(bytes: payloads[0], classes: classes, points: points, box: box,
                                       annotator: annotator)
            if let hash, hash != prompt.contentHash {
                throw ProtocolError(.badRequest, "field 'content_hash' (\(hash)) is not the hash of the image bytes "
                                    + "(\(prompt.contentHash))")
            }
            return prompt
        default:
            throw ProtocolError(.badRequest, "'predict' takes at most one payload frame (the image), got \(payloads.count)")
        }
    }

    /// Why a request could not be parsed, with what is known of it.
    public struct ParseFailure: Error, Sendable {
        public var echo: RequestEcho
        public var error: ProtocolError
    }
}

/// Typed access to header fields with `bad_request` errors that name the field.
struct FieldReader {
    let fields: [String: JSONValue]
    var prefix = ""

    private func missing(_ name: String) -> ProtocolError {
        ProtocolError(.badRequest, "missing field '\(prefix)\(name)'")
    }
    private func mistyped(_ name: String, _ expected: String, _ value: JSONValue) -> ProtocolError {
        ProtocolError(.badRequest, "field '\(prefix)\(name)' must be \(expected), got \(value)")
    }

    func string(_ name: String) throws -> String {
        guard let value = fields[name] else { throw missing(name) }
        guard let s = value.stringValue else { throw mistyped(name, "a string", value) }
        return s
    }

    func optionalString(_ name: String) throws -> String? {
        guard let value = fields[name], value != .null else { return nil }
        guard let s = value.stringValue else { throw mistyped(name, "a string", value) }
        return s
    }

    /// A non-empty string of at most 256 characters without NUL (ids travel in topics, logs and the store).
    func identifier(_ name: String) throws -> String {
        try checkIdentifier(name, try string(name))
    }

    func optionalIdentifier(_ name: String) throws -> String? {
        try optionalString(name).map { try checkIdentifier(name, $0) }
    }

    private func checkIdentifier(_ name: String, _ s: String) throws -> String {
        guard !s.isEmpty, s.utf8.count <= RequestParser.maxIDLength, !s.utf8.contains(0) else {
            throw ProtocolError(.badRequest,
                                "field '\(prefix)\(name)' must be a non-empty string of at most \(RequestParser.maxIDLength) bytes without NUL")
        }
        return s
    }

    func int(_ name: String) throws -> Int {
        guard let value = fields[name] else { throw missing(name) }
        guard case .int(let v) = value else { throw mistyped(name, "an integer", value) }
        return v
    }

    func optionalBool(_ name: String) throws -> Bool? {
        guard let value = fields[name], value != .null else { return nil }
        guard let b = value.boolValue else { throw mistyped(name, "true or false", value) }
        return b
    }

    func optionalStringArray(_ name: String) throws -> [String]? {
        guard let value = fields[name], value != .null else { return nil }
        guard let list = value.arrayValue else { throw mistyped(name, "an array of strings", value) }
        return try list.map { item in
            guard let s = item.stringValue else { throw mistyped(name, "an array of strings", value) }
            return s
        }
    }
}
