import Hummingbird
import HummingbirdCore
import HTTPTypes
import Logging
import NIOCore
import ProbattnConfig

/// The web annotator on the gateway's listener: `GET /` with the page's files and `GET /api/v1/folder[/{name}]`
/// (`WebRoutes`, docs/WEB.md). `respond` asks `webResponse` first; everything it leaves (nil) goes to the gateway's
/// own routes.
extension HTTPGateway {
    /// The routes of `http.web_root` and `http.image_folder`; logs where the page's files are.
    static func webRoutes(_ settings: DaemonConfig.HTTP, logger: Logger) -> WebRoutes {
        let routes = WebRoutes(webRoot: settings.webRoot, imageFolder: settings.imageFolder)
        if let files = routes.files {
            logger.info("Web annotator", metadata: ["web_root": "\(files.root)",
                                                    "image_folder": "\(settings.imageFolder ?? "none")"])
        } else {
            logger.warning("Web annotator not served: no folder with index.html found",
                           metadata: ["web_root": "\(settings.webRoot ?? "searched")",
                                      "hint": "set http.web_root or \(WebFiles.environmentVariable)"])
        }
        return routes
    }

    /// The web annotator's answer to `request`, or nil when it is one of the gateway's own routes.
    func webResponse(_ web: WebRoutes, _ request: HummingbirdCore.Request) -> Response? {
        guard let page = web.response(method: request.method.rawValue, target: request.head.path ?? "/") else {
            return nil
        }
        var headers: HTTPFields = [.contentType: page.contentType]
        if let cache = page.cacheControl { headers[.cacheControl] = cache }
        return Response(status: HTTPResponse.Status(code: page.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: page.body)))
    }
}
