/// The commands of the session core, as every front door (ZeroMQ, HTTP, eval) hands them over after decoding. The
/// names and raw values are the wire protocol's (docs/PROTOCOL.md): a transport decodes its own framing into these
/// values and encodes the results back; nothing here knows about bytes on a wire.

/// The protocol version this daemon speaks (the header's `protocol` field).
public let probattnProtocolVersion = 1

/// The request kinds of protocol version 1.
public enum RequestKind: String, Sendable, CaseIterable {
    case openImage = "open_image"
    case feedback
    case undo
    case getMask = "get_mask"
    case closeImage = "close_image"
    case listSessions = "list_sessions"
    case health
    case listPlugins = "list_plugins"
    case predict
}

/// One click as a client sends it: pixel position and class name.
public struct WireClick: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public var className: String
    public init(x: Int, y: Int, className: String) { self.x = x; self.y = y; self.className = className }
}

/// A rectangle in pixels, corners inclusive (`x0 <= x1`, `y0 <= y1`).
public struct PixelBox: Sendable, Equatable {
    public var x0: Int
    public var y0: Int
    public var x1: Int
    public var y1: Int
    public init(x0: Int, y0: Int, x1: Int, y1: Int) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }
}

/// `predict`: one stateless prompt (all its points and an optional box) on an image given by its bytes or by the
/// content hash of an image a previous `predict` prepared.
public struct PromptRequest: Sendable {
    public enum Image: Sendable {
        case bytes([UInt8])
        /// Only the hash: the prepared image must still be in the cache (else `unknown_image`).
        case cached
    }

    public var image: Image
    /// `sha256:<hex>` of the image bytes (computed from them when they are given).
    public var contentHash: String
    public var classes: [String]
    public var points: [WireClick]
    public var box: PixelBox?
    /// Who asked (logs only).
    public var annotator: String?

    public init(bytes: [UInt8], classes: [String], points: [WireClick], box: PixelBox?, annotator: String?) {
        image = .bytes(bytes)
        contentHash = "sha256:" + SHA256.hex(bytes)
        self.classes = classes
        self.points = points
        self.box = box
        self.annotator = annotator
    }

    public init(contentHash: String, classes: [String], points: [WireClick], box: PixelBox?, annotator: String?) {
        image = .cached
        self.contentHash = contentHash
        self.classes = classes
        self.points = points
        self.box = box
        self.annotator = annotator
    }

    /// The scheduler key of `predict` calls on this content: calls on the same image run one at a time (the
    /// second finds the first's preparation), never in a session's queue (image ids cannot contain NUL).
    public var queueKey: String { "\u{0}predict/" + contentHash }
}

/// The mask formats `get_mask` can return.
public enum MaskFormat: String, Sendable, CaseIterable {
    case rle, png, both
    public var wantsRLE: Bool { self != .png }
    public var wantsPNG: Bool { self != .rle }
}

/// A request after header validation: the kind with its typed fields. Checks that need the session (image bounds,
/// class names) happen when the request runs.
public enum RequestBody: Sendable {
    case openImage(imageID: String, classes: [String], annotator: String?, sourcePath: String?, publishPNG: Bool,
                   bytes: [UInt8])
    case feedback(imageID: String, annotator: String, clicks: [WireClick])
    case undo(imageID: String, annotator: String)
    case getMask(imageID: String, format: MaskFormat)
    case closeImage(imageID: String)
    case listSessions
    case health
    case listPlugins
    case predict(PromptRequest)

    /// The image a request works on; nil for daemon-wide kinds.
    public var imageID: String? {
        switch self {
        case .openImage(let id, _, _, _, _, _), .feedback(let id, _, _), .undo(let id, _), .getMask(let id, _),
             .closeImage(let id):
            return id
        case .listSessions, .health, .listPlugins, .predict:
            return nil
        }
    }

    /// The scheduler queue the request runs in: its image's, or for `predict` its content's; nil for daemon-wide
    /// kinds.
    public var queueKey: String? {
        if case .predict(let prompt) = self { return prompt.queueKey }
        return imageID
    }

    /// The kind this body is a request of.
    public var kind: RequestKind {
        switch self {
        case .openImage: return .openImage
        case .feedback: return .feedback
        case .undo: return .undo
        case .getMask: return .getMask
        case .closeImage: return .closeImage
        case .listSessions: return .listSessions
        case .health: return .health
        case .listPlugins: return .listPlugins
        case .predict: return .predict
        }
    }

    public var annotator: String? {
        switch self {
        case .openImage(_, _, let a, _, _, _): return a
        case .feedback(_, let a, _), .undo(_, let a): return a
        case .predict(let p): return p.annotator
        default: return nil
        }
    }
}

/// A parsed request: its id and kind (for the reply) and the body.
public struct Request: Sendable {
    public var requestID: String
    public var kind: RequestKind
    public var body: RequestBody
    /// Who sent it, as the transport authenticated them; nil when the daemon runs without security (every request
    /// is allowed and the annotator names in requests are trusted).
    public var principal: Principal?

    public init(requestID: String, kind: RequestKind, body: RequestBody, principal: Principal? = nil) {
        self.requestID = requestID
        self.kind = kind
        self.body = body
        self.principal = principal
    }

    /// A request whose kind is its body's.
    public init(requestID: String, _ body: RequestBody, principal: Principal? = nil) {
        self.init(requestID: requestID, kind: body.kind, body: body, principal: principal)
    }
}

/// An authenticated sender: the identity their key or token names, and what their role allows.
public struct Principal: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable {
        /// May read masks and follow updates, on any image.
        case view
        /// May also open images, click, and undo their own clicks; may close the images they opened.
        case annotate
        /// May do everything, on every image.
        case admin
    }

    public var identity: String
    public var role: Role

    public init(identity: String, role: Role) {
        self.identity = identity
        self.role = role
    }
}

/// What the parser knows about a request even when it is invalid, so the error reply can carry it.
public struct RequestEcho: Sendable, Equatable {
    public var requestID: String?
    public var kind: String?
    public init(requestID: String?, kind: String?) { self.requestID = requestID; self.kind = kind }
    public init(_ request: Request) { self.init(requestID: request.requestID, kind: request.kind.rawValue) }
    public static let unknown = RequestEcho(requestID: nil, kind: nil)
}

