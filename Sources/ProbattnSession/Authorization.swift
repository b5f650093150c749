/// What each role may do (docs/SECURITY.md): checked by the session core before any command runs, so every front
/// door enforces the same rules. Without a principal (a daemon without security) everything is allowed.
///
/// - `view`: `get_mask`, `list_sessions` (the sessions it opened or clicked in: none, for a pure viewer), `health`.
/// - `annotate`: also `open_image`, `feedback`, `undo` (its own clicks only), `predict`, `list_plugins`;
///   `close_image` of the images it opened.
/// - `admin`: everything, on every image; `list_sessions` lists all sessions.
///
/// An authenticated request acts as its principal's identity: a request naming another `annotator` is `forbidden`,
/// and one naming none (an `open_image` without `annotator`) gets the identity.
public enum Authorization {
    /// The request as it may run (annotator filled in from the identity), or `forbidden`. `openedBy` gives the
    /// opener of an open image (nil for an unknown image: the command then fails with `unknown_image` itself).
    public static func authorize(_ request: Request, openedBy: (String) -> String??) throws -> Request {
        guard let principal = request.principal else { return request }
        func deny(_ why: String) -> ProtocolError {
            ProtocolError(.forbidden, "\(principal.identity) (role \(principal.role.rawValue)) \(why)")
        }
        func checkAnnotator(_ annotator: String?) throws {
            if let annotator, annotator != principal.identity {
                throw deny("cannot act as annotator '\(annotator)'")
            }
        }
        var authorized = request
        switch request.body {
        case .health, .listSessions, .getMask:
            return request
        case .listPlugins:
            guard principal.role != .view else { throw deny("may not list plugins") }
            return request
        case .predict:
            // A stateless prompt changes no session, but prepares an image: the work an annotator may ask for.
            guard principal.role != .view else { throw deny("may only view") }
            return request
        case let .openImage(imageID, classes, annotator, sourcePath, publishPNG, bytes):
            guard principal.role != .view else { throw deny("may only view") }
            try checkAnnotator(annotator)
            authorized.body = .openImage(imageID: imageID, classes: classes, annotator: principal.identity,
                                         sourcePath: sourcePath, publishPNG: publishPNG, bytes: bytes)
            return authorized
        case .feedback(_, let annotator, _), .undo(_, let annotator):
            guard principal.role != .view else { throw deny("may only view") }
            try checkAnnotator(annotator)
            return request
        case .closeImage(let imageID):
            guard principal.role != .admin else { return request }
            guard principal.role == .annotate else { throw deny("may only view") }
            if let opener = openedBy(imageID), opener != principal.identity {
                throw deny("may close only the images it opened; '\(imageID)' was opened by \(opener ?? "an unnamed opener")")
            }
            return request
        }
    }
}
