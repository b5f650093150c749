import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ProbattnConfig
import ProbattnJSON
import ProbattnSession
import ProbattnWire
import Synchronization

/// The gateway routes of the stateless `predict` command and of the annotation tools (docs/INTEGRATIONS.md), asked
/// before the gateway's own routes through `HTTPGateway.hook`:
///
/// - `POST /api/v1/predict`: the protocol's `predict` (multipart `header` + `image`, or a JSON header with
///   `content_hash`), answered with the protocol's reply.
/// - `/label-studio/…`: Label Studio's ML backend API (`GET /` and `/health`, `POST /setup`, `/predict`, `/webhook`,
///   `GET /versions`), in label-studio-ml's bodies and error shape.
/// - `POST /cvat/interactor`: CVAT's interactor contract; errors are a non-200 status with a text body.
final class IntegrationRoutes: Sendable {
    private let requests: DaemonRequests
    private let labelStudio: LabelStudioClient
    private let urlHashes = URLHashMemory(capacity: 4096)
    private let logger: Logger
    /// The last request id `nextID` gave out.
    private let counter = Mutex(0)

    init(labelStudio settings: DaemonConfig.LabelStudio, limits: DaemonConfig.Limits, requests: DaemonRequests,
         logger: Logger) {
        self.requests = requests
        labelStudio = LabelStudioClient(settings: settings, maxBytes: limits.maxMessageBytes)
        self.logger = logger
    }

    /// The answer of a route of this file, or nil when the target is not one of them.
    func respond(_ request: HummingbirdCore.Request, target: RequestTarget, gateway: HTTPGateway,
                 received: UInt64) async -> Response? {
        let s = target.segments
        let method = request.method.rawValue
        if s == ["api", "v1", "predict"] {
            guard method == "POST" else { return Self.wrongMethod("POST", s) }
            return await protocolPredict(request, target: target, gateway: gateway, received: received)
        }
        if s.first == "label-studio" {
            return await labelStudioRoute(Array(s.dropFirst()).map(String.init), method: method, request: request,
                                          gateway: gateway, received: received)
        }
        if s == ["cvat", "interactor"] {
            guard method == "POST" else { return Self.text(405, "use POST /cvat/interactor") }
            return await cvat(request, gateway: gateway, received: received)
        }
        return nil
    }

    // MARK: predict, the protocol's

    private func protocolPredict(_ request: HummingbirdCore.Request, target: RequestTarget, gateway: HTTPGateway,
                                 received: UInt64) async -> Response {
        let echo = RequestEcho(requestID: target.query["request_id"], kind: RequestKind.predict.rawValue)
        let body: [UInt8]
        switch await gateway.readBody(request) {
        case .complete(let bytes): body = bytes
        case .refused(let error, _): return Self.closing(Self.protocolError(echo, error))
        }
        var header: [String: JSONValue] = [:]
        var payloads: [[UInt8]] = []
        switch MultipartForm.boundary(contentType: request.headers[.contentType]) {
        case .some(.some(let boundary)):
            let form: MultipartForm
            do { form = try MultipartForm(body: body, boundary: boundary) } catch {
                return Self.protocolError(echo, ProtocolError(.badRequest, "the multipart body is malformed: \(error.message)"))
            }
            guard let part = form.parts.first(where: { $0.name == "header" }), let json = JSONValue.parse(part.body),
                  case .object(let object) = json else {
                return Self.protocolError(echo, ProtocolError(.badHeader, "the part 'header' is missing or not a JSON object"))
            }
            header = object
            payloads = form.parts.filter { $0.name == "image" }.map(\.body)
        case .some(.none):
            return Self.protocolError(echo, ProtocolError(.badRequest, "the multipart content type has no boundary"))
        case .none:
            guard let json = JSONValue.parse(body), case .object(let object) = json else {
                return Self.protocolError(echo, ProtocolError(.badHeader, "the body is not a JSON object"))
            }
            header = object
        }
        if let id = target.query["request_id"] { header["request_id"] = .string(id) }
        header["kind"] = header["kind"] ?? .string(RequestKind.predict.rawValue)
        header["protocol"] = header["protocol"] ?? .int(probattnProtocolVersion)
        if header["request_id"] == nil { header["request_id"] = .string(nextID("http-predict")) }
        var parsed: ProbattnSession.Request
        switch gateway.currentParser.parse([JSONValue.object(header).serialized()] + payloads) {
        case .failure(let failure): return Self.protocolError(failure.echo, failure.error)
        case .success(let request): parsed = request
        }
        switch gateway.principalForSubmission() {  // a secured daemon: the token's owner (docs/SECURITY.md)
        case .failure(let error): return Self.protocolError(RequestEcho(parsed), error)
        case .success(let principal): parsed.principal = principal
        }
        guard case .predict = parsed.body else {
            return Self.protocolError(RequestEcho(parsed), ProtocolError(.badRequest, "POST /api/v1/predict takes kind 'predict'"))
        }
        guard !gateway.isDraining else { return Self.protocolError(RequestEcho(parsed), Self.shuttingDown) }
        let reply: JSONValue = await withCheckedContinuation { continuation in
            requests.submit(parsed, received: received, transport: "http") { reply, _ in continuation.resume(returning: reply) }
        }
        let status = reply["ok"]?.boolValue == true ? 200
            : GatewayStatus.status(for: reply["error"]?["code"]?.stringValue ?? "internal")
        return Self.json(reply, status: status)
    }

    // MARK: Label Studio

    private func labelStudioRoute(_ path: [String], method: String, request: HummingbirdCore.Request,
                                  gateway: HTTPGateway, received: UInt64) async -> Response {
        let route = path.joined(separator: "/")
        func expect(_ allowed: String) -> Response? {
            method == allowed || (allowed == "GET" && method == "HEAD") ? nil
                : Self.json(LabelStudioBackend.error(405, "use \(allowed) /label-studio/\(route)"), status: 405)
        }
        switch route {
        case "", "health":
            if let wrong = expect("GET") { return wrong }
            return Self.json(["status": "UP", "model_class": "probattn", "model_version": .string(LabelStudioBackend.modelVersion)],
                             status: 200)
        case "versions":
            if let wrong = expect("GET") { return wrong }
            return Self.json(["versions": [.string(LabelStudioBackend.modelVersion)]], status: 200)
        case "metrics":
            if let wrong = expect("GET") { return wrong }
            return Self.json([:], status: 200)
        case "webhook":
            if let wrong = expect("POST") { return wrong }
            _ = await gateway.readBody(request)
            return Self.json(["status": "Unknown event"], status: 200)
        case "setup":
            if let wrong = expect("POST") { return wrong }
            guard case .complete(let body) = await gateway.readBody(request), let json = JSONValue.parse(body),
                  case .object = json else {
                return Self.json(LabelStudioBackend.error(400, "the /setup body is not a JSON object"), status: 400)
            }
            labelStudio.setUp(hostname: json["hostname"]?.stringValue, token: json["access_token"]?.stringValue)
            return Self.json(["model_version": .string(LabelStudioBackend.modelVersion)], status: 200)
        case "predict":
            if let wrong = expect("POST") { return wrong }
            return await labelStudioPredict(request, gateway: gateway, received: received)
        default:
            return Self.json(LabelStudioBackend.error(404, "no route \(method) /label-studio/\(route); routes: GET /health, "
                                                      + "POST /setup, POST /predict, POST /webhook, GET /versions"),
                             status: 404)
        }
    }

    private func labelStudioPredict(_ request: HummingbirdCore.Request, gateway: HTTPGateway,
                                    received: UInt64) async -> Response {
        func failure(_ status: Int, _ message: String) -> Response {
            requests.metrics.countRequest(transport: "label_studio", kind: RequestKind.predict.rawValue,
                                          code: status == 200 ? "ok" : "\(status)")
            logger.notice("Label Studio prediction refused: \(message)", metadata: ["status": "\(status)"])
            return Self.json(LabelStudioBackend.error(status, message), status: status)
        }
        let json: JSONValue
        switch await Self.readJSON(request, gateway: gateway, failure: failure) {
        case .success(let value): json = value
        case .failure(let refusal): return refusal.response
        }
        do {
            let prompt = try LabelStudioBackend.prompt(json)
            let url = try labelStudio.resolve(prompt.imageURL).absoluteString
            var result: PredictResult?
            var downloaded = false
            var downloadSeconds = 0.0
            if let hash = urlHashes.hash(for: url) {
                switch await predict(LabelStudioBackend.request(prompt, image: .cached, contentHash: hash),
                                     transport: "label_studio", gateway: gateway, received: received) {
                case .success(let value): result = value
                case .failure(let error) where error.code == .unknownImage: urlHashes.forget(url)
                case .failure(let error): return failure(GatewayStatus.status(for: error.code.rawValue), error.message)
                }
            }
            if result == nil {
                let started = DispatchTime.now().uptimeNanoseconds
                let bytes = try await labelStudio.download(prompt.imageURL)
                let fetched = DispatchTime.now().uptimeNanoseconds
                downloadSeconds = Double(fetched - started) / 1e9
                downloaded = true
                switch await predict(LabelStudioBackend.request(prompt, image: .bytes(bytes), contentHash: nil),
                                     transport: "label_studio", gateway: gateway, received: fetched) {
                case .success(let value):
                    urlHashes.remember(value.contentHash, for: url)
                    result = value
                case .failure(let error): return failure(GatewayStatus.status(for: error.code.rawValue), error.message)
                }
            }
            guard let result else { return failure(500, "no result") }
            guard result.width == prompt.width, result.height == prompt.height else {
                return failure(400, "the context gives original_width × original_height = \(prompt.width) × "
                               + "\(prompt.height), but the task's image is \(result.width) × \(result.height)")
            }
            var timed = result
            timed.timings["download"] = downloadSeconds
            timed.timings["request_total"] = Double(DispatchTime.now().uptimeNanoseconds - received) / 1e9
            return Self.json(LabelStudioBackend.reply(prompt, timed, downloaded: downloaded,
                                                      regionID: String(UUID().uuidString.prefix(8))), status: 200)
        } catch let error as IntegrationError {
            return failure(error.status, error.message)
        } catch {
            return failure(500, "\(error)")
        }
    }

    /// An early answer of a tool route, carried out of `readJSON`.
    private struct Refusal: Error { let response: Response }

    /// The body of a tool route as JSON, or the tool's error answer: over the size limit (the connection is then
    /// closed, like the gateway's own refusals) or not JSON (400).
    private static func readJSON(_ request: HummingbirdCore.Request, gateway: HTTPGateway,
                                 failure: (Int, String) -> Response) async -> Result<JSONValue, Refusal> {
        switch await gateway.readBody(request) {
        case .complete(let bytes):
            guard let json = JSONValue.parse(bytes) else { return .failure(Refusal(response: failure(400, "the body is not JSON"))) }
            return .success(json)
        case .refused(let error, _):
            return .failure(Refusal(response: closing(failure(GatewayStatus.status(for: error.code.rawValue),
                                                              error.message))))
        }
    }

    // MARK: CVAT

    private func cvat(_ request: HummingbirdCore.Request, gateway: HTTPGateway, received: UInt64) async -> Response {
        func failure(_ status: Int, _ message: String) -> Response {
            requests.metrics.countRequest(transport: "cvat", kind: RequestKind.predict.rawValue, code: "\(status)")
            logger.notice("CVAT interaction refused: \(message)", metadata: ["status": "\(status)"])
            return Self.text(status, message)
        }
        let json: JSONValue
        switch await Self.readJSON(request, gateway: gateway, failure: failure) {
        case .success(let value): json = value
        case .failure(let refusal): return refusal.response
        }
        do {
            let prompt = try CVATInteractor.prompt(json)
            switch await predict(CVATInteractor.request(prompt), transport: "cvat", gateway: gateway, received: received) {
            case .success(let result):
                guard let reply = CVATInteractor.replyBytes(result) else {
                    return failure(422, "the mask is empty: no pixel is on the object")
                }
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(bytes: reply)))
            case .failure(let error):
                return failure(GatewayStatus.status(for: error.code.rawValue), "\(error.code.rawValue): \(error.message)")
            }
        } catch let error as IntegrationError {
            return failure(error.status, error.message)
        } catch {
            return failure(500, "\(error)")
        }
    }

    // MARK: shared

    /// Runs one `predict` through the dispatcher (the content's queue), unless the daemon is draining.
    private func predict(_ prompt: PromptRequest, transport: String, gateway: HTTPGateway,
                         received: UInt64) async -> Result<PredictResult, ProtocolError> {
        guard !gateway.isDraining else { return .failure(Self.shuttingDown) }
        var request = ProbattnSession.Request(requestID: nextID(transport), .predict(prompt))
        switch gateway.principalForSubmission() {  // a secured daemon: the token's owner (docs/SECURITY.md)
        case .failure(let error): return .failure(error)
        case .success(let principal): request.principal = principal
        }
        let metrics = requests.metrics
        let outcome: Result<CommandResult, ProtocolError> = await withCheckedContinuation { continuation in
            requests.dispatcher.submit(request, received: received) { continuation.resume(returning: $0) }
        }
        switch outcome {
        case .success(.predicted(let result)):
            metrics.recordStages(result.timings)
            metrics.countRequest(transport: transport, kind: RequestKind.predict.rawValue, code: "ok")
            return .success(result)
        case .success:
            return .failure(ProtocolError(.internal, "predict gave another result kind"))
        case .failure(let error):
            metrics.countRequest(transport: transport, kind: RequestKind.predict.rawValue, code: error.code.rawValue)
            return .failure(error)
        }
    }

    private func nextID(_ prefix: String) -> String {
        counter.withLock { counter in
            counter += 1
            return "\(prefix)-\(counter)"
        }
    }

    private static let shuttingDown = ProtocolError(.shuttingDown, "the daemon is shutting down and accepts no new requests")

    private static func wrongMethod(_ allowed: String, _ segments: [Substring]) -> Response {
        var response = json(["protocol": .int(probattnProtocolVersion), "request_id": .null, "kind": "predict", "ok": false,
                             "error": ["code": "unknown_route",
                                       "message": .string("use \(allowed) /\(segments.joined(separator: "/"))")]],
                            status: 405)
        response.headers[.allow] = allowed
        return response
    }

    private static func protocolError(_ echo: RequestEcho, _ error: ProtocolError) -> Response {
        json(WireEncoding.reply(echo, .failure(error)), status: GatewayStatus.status(for: error.code.rawValue))
    }

    /// A response after which the connection is closed (the rest of a refused body is not read).
    private static func closing(_ response: Response) -> Response {
        var response = response
        response.headers[.connection] = "close"
        return response
    }

    static func json(_ value: JSONValue, status: Int) -> Response {
        Response(status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }

    static func text(_ status: Int, _ message: String) -> Response {
        Response(status: HTTPResponse.Status(code: status), headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(bytes: Array((message + "\n").utf8))))
    }
}
