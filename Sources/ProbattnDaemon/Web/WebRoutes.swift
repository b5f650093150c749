import Foundation
import ProbattnJSON

/// The web annotator's routes on the HTTP listener (docs/WEB.md), next to the gateway's `/api/v1` routes:
///
/// | route | answer |
/// |---|---|
/// | `GET /` and `GET /{file}` | the page's static files (`WebFiles`), `Cache-Control: no-cache` |
/// | `GET /api/v1/folder` | `{"ok": true, "configured": bool, "images": [{"name", "bytes", "content_type"}]}` |
/// | `GET /api/v1/folder/{name}` | the image's bytes; 400 `bad_request` for a name with `/` or `..` or resolving outside the folder, 404 `not_found` |
///
/// `response(method:target:)` gives nil for every other request, which the gateway then answers itself; `HEAD` is
/// answered like `GET` (the server drops the body).
public struct WebRoutes: Sendable {
    /// What to send: status, content type and body.
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]
        /// Static files are revalidated on every load, so a new daemon's page is used at once.
        public var cacheControl: String?
    }

    public let files: WebFiles?
    public let folder: ImageFolder?

    public init(files: WebFiles?, folder: ImageFolder?) {
        self.files = files
        self.folder = folder
    }

    /// From the config: `http.web_root` (nil: `WebFiles.locate`'s search) and `http.image_folder` (nil: none).
    public init(webRoot: String?, imageFolder: String?) {
        self.init(files: WebFiles.locate(configured: webRoot), folder: imageFolder.map(ImageFolder.init(path:)))
    }

    /// The answer to `method` on `target` (the request's raw `path?query`), or nil when it is not one of these routes.
    public func response(method: String, target: String) -> Response? {
        guard method == "GET" || method == "HEAD" else { return nil }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        let plain = segments.filter { !$0.isEmpty }
        if plain.count >= 3, plain[plain.startIndex] == "api", plain[plain.startIndex + 1] == "v1",
           plain[plain.startIndex + 2] == "folder" {
            return folderResponse(Array(segments.dropFirst(3)))
        }
        guard let files, plain.count <= 1 else { return nil }
        guard let name = plain.first.map({ String($0).removingPercentEncoding }) ?? "index.html",
              let file = files.file(forPath: "/" + name) else { return nil }
        return Response(status: 200, contentType: file.contentType, body: file.bytes, cacheControl: "no-cache")
    }

    /// `segments`: what follows `/api/v1/folder`, still percent-encoded.
    private func folderResponse(_ segments: [Substring]) -> Response {
        if segments.allSatisfy(\.isEmpty) {
            guard let folder else {
                return Self.json(["ok": true, "configured": false, "images": []])
            }
            do {
                let images = try folder.list().map { entry -> JSONValue in
                    ["name": .string(entry.name), "bytes": .int(entry.bytes), "content_type": .string(entry.contentType)]
                }
                return Self.json(["ok": true, "configured": true, "images": .array(images)])
            } catch {
                return Self.error(error)
            }
        }
        // A name is one segment; a literal `/` (more segments) is a name containing `/`, like an encoded one.
        let raw = segments.joined(separator: "/")
        guard let name = raw.removingPercentEncoding else {
            return Self.error(.badName(raw))
        }
        guard let folder else { return Self.error(.notFound(name), message: "no http.image_folder is configured") }
        do {
            let image = try folder.read(name: name)
            return Response(status: 200, contentType: image.contentType, body: image.bytes, cacheControl: "no-cache")
        } catch {
            return Self.error(error)
        }
    }

    private static func json(_ value: JSONValue, status: Int = 200) -> Response {
        Response(status: status, contentType: "application/json", body: value.serialized(), cacheControl: "no-cache")
    }

    /// The gateway's error shape: `{"ok": false, "error": {"code", "message"}}` with the failure's status.
    private static func error(_ failure: ImageFolder.Failure, message: String? = nil) -> Response {
        json(["protocol": 1, "request_id": .null, "kind": .null, "ok": false,
              "error": ["code": .string(failure.code), "message": .string(message ?? failure.description)]],
             status: failure.status)
    }
}
