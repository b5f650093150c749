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
}

/// One click as a client sends it: pixel position and class name.
public struct WireClick: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public var className: String
    public init(x: Int, y: Int, className: String) { self.x = x; self.y = y; self.className = className }
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

    /// The image a request works on; nil for daemon-wide kinds.
    public var imageID: String? {
        switch self {
        case .openImage(let id, _, _, _, _, _), .feedback(let id, _, _), .undo(let id, _), .getMask(let id, _),
             .closeImage(let id):
            return id
        case .listSessions, .health, .listPlugins:
            return nil
        }
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
        }
    }

    public var annotator: String? {
        switch self {
        case .openImage(_, _, let a, _, _, _): return a
        case .feedback(_, let a, _), .undo(_, let a): return a
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

