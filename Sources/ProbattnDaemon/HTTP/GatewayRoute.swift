import Foundation
import ProbattnSession

/// A request target as sent (`path?query`), split without decoding the path first: an image id may contain an
/// encoded `/` (`%2F`) or `?` (`%3F`), so the path is cut at literal `/` and each segment is percent-decoded on its own.
struct RequestTarget {
    /// The path's segments, still percent-encoded (no empty segments: `//` and a trailing `/` are ignored).
    var segments: [Substring]
    /// The query's parameters, decoded (`+` is a space); a repeated name keeps its last value.
    var query: [String: String]

    init(_ raw: String) {
        let queryStart = raw.firstIndex(of: "?")
        let path = raw[..<(queryStart ?? raw.endIndex)]
        segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var query: [String: String] = [:]
        if let queryStart {
            for pair in raw[raw.index(after: queryStart)...].split(separator: "&") where !pair.isEmpty {
                let equals = pair.firstIndex(of: "=")
                let name = Self.decodeQuery(pair[..<(equals ?? pair.endIndex)])
                let value = equals.map { Self.decodeQuery(pair[pair.index(after: $0)...]) } ?? ""
                if let name { query[name] = value ?? "" }
            }
        }
        self.query = query
    }

    static func decodeQuery(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

/// The gateway's routes (docs/HTTP.md), each naming the protocol request it stands for.
enum GatewayRoute: Equatable {
    case health
    case sessions
    case openImage
    case closeImage(imageID: String)
    case feedback(imageID: String)
    case undo(imageID: String)
    case mask(imageID: String)
    case webSocket(imageID: String)
    case metrics

    /// The protocol kind the route runs (nil for `/metrics`, and for the WebSocket, whose messages name theirs).
    var kind: RequestKind? {
        switch self {
        case .health: return .health
        case .sessions: return .listSessions
        case .openImage: return .openImage
        case .closeImage: return .closeImage
        case .feedback: return .feedback
        case .undo: return .undo
        case .mask: return .getMask
        case .webSocket, .metrics: return nil
        }
    }

    /// Why a target matched no route.
    enum Miss: Error, Equatable {
        /// No route has this path.
        case notFound(String)
        /// The path exists, but not with this method; the allowed method is given.
        case wrongMethod(allowed: String, String)
        /// The image id segment is not valid percent-encoding, or not a valid id.
        case badImageID(String)
    }

    /// The route of `method` and `target`.
    static func match(method: String, target: RequestTarget) -> Result<GatewayRoute, Miss> {
        let s = target.segments
        let path = "/" + s.joined(separator: "/")
        func expect(_ allowed: String, _ route: GatewayRoute) -> Result<GatewayRoute, Miss> {
            method == allowed || (allowed == "GET" && method == "HEAD") ? .success(route)
                : .failure(.wrongMethod(allowed: allowed, "\(method) \(path) is not a route; use \(allowed)"))
        }
        if s == ["metrics"] { return expect("GET", .metrics) }
        guard s.count >= 3, s[0] == "api", s[1] == "v1" else { return .failure(.notFound(notFound(method, path))) }
        switch (s[2], s.count) {
        case ("health", 3): return expect("GET", .health)
        case ("sessions", 3): return expect("GET", .sessions)
        case ("images", 3): return expect("POST", .openImage)
        case ("images", 4), ("images", 5):
            guard let decoded = String(s[3]).removingPercentEncoding else {
                return .failure(.badImageID("the image id '\(s[3])' is not valid percent-encoding"))
            }
            guard !decoded.isEmpty, decoded.utf8.count <= 256, !decoded.utf8.contains(0) else {
                return .failure(.badImageID(
                    "the image id must be a non-empty string of at most 256 bytes without NUL"))
            }
            if s.count == 4 { return expect("DELETE", .closeImage(imageID: decoded)) }
            switch s[4] {
            case "feedback": return expect("POST", .feedback(imageID: decoded))
            case "undo": return expect("POST", .undo(imageID: decoded))
            case "mask": return expect("GET", .mask(imageID: decoded))
            case "ws": return expect("GET", .webSocket(imageID: decoded))
            default: return .failure(.notFound(notFound(method, path)))
            }
        default:
            return .failure(.notFound(notFound(method, path)))
        }
    }

    private static func notFound(_ method: String, _ path: String) -> String {
        "no route \(method) \(path); routes: GET /api/v1/health, GET /api/v1/sessions, POST /api/v1/images, "
            + "POST /api/v1/images/{id}/feedback, POST /api/v1/images/{id}/undo, GET /api/v1/images/{id}/mask, "
            + "DELETE /api/v1/images/{id}, GET /api/v1/images/{id}/ws (WebSocket), GET /metrics"
    }
}

/// The HTTP status of each protocol error code (docs/HTTP.md).
enum GatewayStatus {
    static func status(for code: String) -> Int {
        switch ErrorCode(rawValue: code) {
        case .badHeader, .badRequest, .unknownKind, .unsupportedProtocol, .outOfBounds, .unknownClass, .badImage:
            return 400
        case .unknownImage: return 404
        case .forbidden: return 403
        case .imageExists, .nothingToUndo: return 409
        case .messageTooLarge, .imageTooLarge, .tooManyFrames: return 413
        case .busy: return 429
        case .shuttingDown: return 503
        case .internal: return 500
        case nil: return code == "unknown_route" ? 404 : code == "unauthorized" ? 401 : 500
        }
    }
}
