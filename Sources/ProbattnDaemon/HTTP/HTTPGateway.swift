import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import HTTPTypes
import Logging
import NIOCore
import ProbattnConfig
import ProbattnJSON
import ProbattnSession
import ProbattnWire
import Synchronization

/// The HTTP and WebSocket transport (docs/HTTP.md), on Hummingbird 2. Like the ZeroMQ transport it only decodes
/// (HTTP routes and bodies into the protocol's request header and payload frames, checked by `RequestParser`),
/// submits through `DaemonRequests` and encodes the reply (`WireEncoding`'s JSON as the body, the status from the
/// error code); mask updates reach the WebSockets through the dispatcher's update listener and `WebSocketHub`.
///
/// Life cycle: `DaemonRuntime` makes it (nothing bound yet); `DaemonService` runs `run()` as a child task, so the
/// service group's graceful shutdown reaches Hummingbird's server, and waits for `waitUntilListening()` before
/// `READY=1`; on SIGTERM it calls `beginDraining()` (new requests get `shutting_down`, requests already submitted
/// still get their replies) before the runtime drains the workers.
final class HTTPGateway: Sendable {
    private let settings: DaemonConfig.HTTP
    let requests: DaemonRequests
    let logger: Logger
    /// The keys and tokens of a secured daemon (HTTPGateway+Auth.swift); nil when it runs open.
    let access: AccessControl?
    let hub = WebSocketHub()
    /// The web annotator's page and image folder (HTTPGateway+Web.swift).
    private let web: WebRoutes

    private struct State {
        var parser: RequestParser
        var draining = false
        var requestCounter = 0
        var listenState = ListenState.waiting([])
        var hook: Hook?
    }

    private let state: Mutex<State>

    private enum ListenState {
        case waiting([CheckedContinuation<Void, Error>])
        case listening
        case failed(any Error & Sendable)
    }

    typealias Hook = @Sendable (HummingbirdCore.Request, RequestTarget, UInt64) async -> Response?

    init(settings: DaemonConfig.HTTP, limits: DaemonConfig.Limits, requests: DaemonRequests, logger: Logger,
         access: AccessControl? = nil) {
        self.settings = settings
        self.access = access
        self.requests = requests
        self.logger = logger
        web = Self.webRoutes(settings, logger: logger)
        state = Mutex(State(parser: RequestParser(maxMessageBytes: limits.maxMessageBytes, maxFrames: limits.maxFrames)))
        let hub = self.hub
        requests.dispatcher.addListener { update in hub.publish(update) }
    }

    /// Routes other files add (`IntegrationRoutes`): asked first with every request's target; nil lets the
    /// gateway's own routes answer. Set before `run()`.
    var hook: Hook? {
        get { state.withLock { $0.hook } }
        set { state.withLock { $0.hook = newValue } }
    }

    var isDraining: Bool { state.withLock { $0.draining } }

    /// New limits from a reload: body size and frame count apply to the next request.
    func setLimits(_ limits: DaemonConfig.Limits) {
        state.withLock {
            $0.parser = RequestParser(maxMessageBytes: limits.maxMessageBytes, maxFrames: limits.maxFrames)
        }
    }

    /// From now on new requests (HTTP and WebSocket messages) get `shutting_down`.
    func beginDraining() { state.withLock { $0.draining = true } }

    // MARK: running

    /// Binds and serves until the service group's graceful shutdown has closed every connection. Throws when the
    /// address cannot be bound (then `waitUntilListening()` throws the same error).
    func run() async throws {
        var serverLogger = logger
        // Hummingbird's own per-request logs are debug noise next to the daemon's "Request done" lines.
        serverLogger.logLevel = max(logger.logLevel, .notice)
        let app = Application(
            responder: GatewayResponder(gateway: self),
            server: .http1WebSocketUpgrade(
                configuration: .init(http1: .init(idleTimeout: .seconds(120)),
                                     ws: .init(maxFrameSize: 1 << 20, autoPing: .enabled(timePeriod: .seconds(30)))),
                shouldUpgrade: { [self] head, _, _ in shouldUpgrade(head) }),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            onServerRunning: { [self] channel in listening(on: channel) },
            logger: serverLogger)
        do {
            try await app.run()
        } catch {
            let failure = ProtocolError(.internal, "cannot serve HTTP on \(settings.listen): \(error)")
            finishListening(.failure(failure))
            throw failure
        }
        finishListening(.failure(ProtocolError(.internal, "the HTTP server stopped before it was listening")))
    }

    /// Returns once the listener is bound; throws when binding failed.
    func waitUntilListening() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let current = state.withLock { state -> Result<Void, any Error & Sendable>? in
                switch state.listenState {
                case .waiting(let list):
                    state.listenState = .waiting(list + [continuation])
                    return nil
                case .listening:
                    return .success(())
                case .failed(let error):
                    return .failure(error)
                }
            }
            if let current { continuation.resume(with: current) }
        }
    }

    private func listening(on channel: any Channel) {
        let address = channel.localAddress
        let host = address?.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? settings.host
        logger.info("HTTP listening", metadata: ["address": "\(host):\(address?.port ?? settings.port)"])
        finishListening(.success(()))
    }

    private func finishListening(_ outcome: Result<Void, ProtocolError>) {
        let waiters: [CheckedContinuation<Void, Error>] = state.withLock { state in
            guard case .waiting(let list) = state.listenState else { return [] }
            switch outcome {
            case .success: state.listenState = .listening
            case .failure(let error): state.listenState = .failed(error)
            }
            return list
        }
        for waiter in waiters { waiter.resume(with: outcome) }
    }

    // MARK: submitting

    /// Hands a parsed request to the session side unless the daemon is draining; false when it is (the caller then
    /// answers `shutting_down`). The check and the submission are one step under the lock, so that once
    /// `beginDraining()` returned nothing new reaches the workers.
    /// On a secured daemon the request runs as the owner of the current token (`HTTPGateway.token`), or is answered
    /// `forbidden` when that token is no longer admitted.
    private func submit(_ request: ProbattnSession.Request, received: UInt64, transport: String,
                        answer: @escaping @Sendable (JSONValue, [[UInt8]]) -> Void) -> Bool {
        var request = request
        switch principalForSubmission() {
        case .success(let principal):
            request.principal = principal
        case .failure(let error):
            requests.countRefusal(transport: transport, echo: RequestEcho(request), error: error)
            answer(WireEncoding.reply(RequestEcho(request), .failure(error)), [])
            return true
        }
        return state.withLock { state in
            if state.draining { return false }
            requests.submit(request, received: received, transport: transport, answer: answer)
            return true
        }
    }

    private func nextRequestID() -> String {
        state.withLock { state in
            state.requestCounter += 1
            return "http-\(state.requestCounter)"
        }
    }

    var currentParser: RequestParser { state.withLock { $0.parser } }

    private static let shuttingDown = ProtocolError(.shuttingDown, "the daemon is shutting down and accepts no new requests")

    // MARK: HTTP

    /// Answers one HTTP request (never throws: every failure is the protocol's JSON error with its status): the web
    /// annotator's own files without credentials (they hold no data, and a browser loads them before it has a token
    /// to send), everything else after `authenticate`, routed with its token in `HTTPGateway.token`.
    func respond(_ request: HummingbirdCore.Request, channel: any Channel) async -> Response {
        let target = RequestTarget(request.head.path ?? "/")
        if target.segments.first != "api", let page = webResponse(web, request) { return page }
        switch authenticate(request, target: target) {
        case .refused(let response):
            return response
        case .allowed(let token):
            if target.segments == ["api", "v1", "whoami"], request.method == .get { return whoami(token: token) }
            return await Self.$token.withValue(token) { await route(request, channel: channel) }
        }
    }

    /// An authenticated HTTP request, by its route.
    private func route(_ request: HummingbirdCore.Request, channel: any Channel) async -> Response {
        let received = DispatchTime.now().uptimeNanoseconds
        if let page = webResponse(web, request) { return page }
        let target = RequestTarget(request.head.path ?? "/")
        if let hook, let answered = await hook(request, target, received) { return answered }
        let route: GatewayRoute
        switch GatewayRoute.match(method: request.method.rawValue, target: target) {
        case .success(let matched): route = matched
        case .failure(.notFound(let message)):
            return refuse(echo: .unknown, code: "unknown_route", message, status: 404)
        case .failure(.wrongMethod(let allowed, let message)):
            var response = refuse(echo: .unknown, code: "unknown_route", message, status: 405)
            response.headers[.allow] = allowed
            return response
        case .failure(.badImageID(let message)):
            return refuse(echo: .unknown, ProtocolError(.badRequest, message))
        }
        let echo = RequestEcho(requestID: target.query["request_id"], kind: route.kind?.rawValue)
        switch route {
        case .metrics:
            let text = requests.metrics.exposition(health: requests.dispatcher.health(),
                                                   webSocketConnections: hub.connectionCount)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: text)))
        case .webSocket(let imageID):
            // Reached only when the request was not upgraded.
            if let problem = Self.annotatorProblem(target.query["annotator"]) {
                return refuse(echo: echo, ProtocolError(.badRequest, problem))
            }
            if isDraining { return refuse(echo: echo, Self.shuttingDown) }
            return refuse(echo: echo, ProtocolError(.badRequest,
                "GET /api/v1/images/\(imageID)/ws needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)"))
        case .health, .sessions:
            return await run(fields: queryFields(target, names: ["request_id"]), payloads: [], route: route,
                             received: received)
        case .closeImage(let imageID):
            var fields = queryFields(target, names: ["request_id"])
            fields["image_id"] = .string(imageID)
            return await run(fields: fields, payloads: [], route: route, received: received)
        case .mask(let imageID):
            var fields = queryFields(target, names: ["request_id", "format"])
            fields["image_id"] = .string(imageID)
            if let format = fields["format"]?.stringValue, format != "rle", format != "png" {
                return refuse(echo: echo, ProtocolError(.badRequest,
                    "query parameter 'format' must be rle or png over HTTP, got '\(format)'"))
            }
            return await run(fields: fields, payloads: [], route: route, received: received)
        case .feedback(let imageID), .undo(let imageID):
            let body: [UInt8]
            switch await readBody(request) {
            case .complete(let bytes): body = bytes
            case .refused(let error, let close): return refuse(echo: echo, error, closing: close ? channel : nil)
            }
            var fields = queryFields(target, names: ["request_id"])
            if !body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
                guard let json = JSONValue.parse(body), case .object(let object) = json else {
                    return refuse(echo: echo, ProtocolError(.badHeader, "the body is not a JSON object"))
                }
                fields.merge(object) { _, fromBody in fromBody }
            }
            if let given = fields["image_id"], given != .string(imageID) {
                return refuse(echo: echo, ProtocolError(.badRequest,
                    "field 'image_id' (\(given)) differs from the image id of the URL ('\(imageID)')"))
            }
            fields["image_id"] = .string(imageID)
            return await run(fields: fields, payloads: [], route: route, received: received)
        case .openImage:
            let body: [UInt8]
            switch await readBody(request) {
            case .complete(let bytes): body = bytes
            case .refused(let error, let close): return refuse(echo: echo, error, closing: close ? channel : nil)
            }
            switch MultipartForm.boundary(contentType: request.headers[.contentType]) {
            case .some(.some(let boundary)):
                let form: MultipartForm
                do { form = try MultipartForm(body: body, boundary: boundary) } catch {
                    return refuse(echo: echo, ProtocolError(.badRequest, "the multipart body is malformed: \(error.message)"))
                }
                guard let header = form.parts.first(where: { $0.name == "header" }) else {
                    return refuse(echo: echo, ProtocolError(.badRequest,
                        "the multipart body has no part named 'header' (the open request's JSON)"))
                }
                guard let image = form.parts.first(where: { $0.name == "image" }) else {
                    return refuse(echo: echo, ProtocolError(.badRequest,
                        "the multipart body has no part named 'image' (the image file)"))
                }
                guard let json = JSONValue.parse(header.body), case .object(let object) = json else {
                    return refuse(echo: echo, ProtocolError(.badHeader, "the part 'header' is not a JSON object"))
                }
                var fields = queryFields(target, names: ["request_id"])
                fields.merge(object) { _, fromBody in fromBody }
                // Every further part counts as a frame, so that the frame limit applies as on ZeroMQ.
                let others = form.parts.filter { $0.name != "header" && $0.name != "image" }.map(\.body)
                return await run(fields: fields, payloads: [image.body] + others, route: route, received: received)
            case .some(.none):
                return refuse(echo: echo, ProtocolError(.badRequest, "the multipart content type has no boundary"))
            case .none:
                var fields = queryFields(target, names: ["request_id", "image_id", "annotator", "source_path"])
                if let classes = target.query["classes"] {
                    fields["classes"] = .array(classes.split(separator: ",", omittingEmptySubsequences: false)
                        .map { .string(String($0)) })
                }
                if let publish = target.query["publish_png"] {
                    switch publish.lowercased() {
                    case "true", "1": fields["publish_png"] = true
                    case "false", "0": fields["publish_png"] = false
                    default: fields["publish_png"] = .string(publish)
                    }
                }
                return await run(fields: fields, payloads: [body], route: route, received: received)
            }
        }
    }

    /// Query parameters that are request fields (strings).
    private func queryFields(_ target: RequestTarget, names: [String]) -> [String: JSONValue] {
        var fields: [String: JSONValue] = [:]
        for name in names { if let value = target.query[name] { fields[name] = .string(value) } }
        if let version = target.query["protocol"] { fields["protocol"] = Int(version).map(JSONValue.int) ?? .string(version) }
        return fields
    }

    /// Builds the protocol header of a route (its kind, protocol 1 and a request id unless the client gave them),
    /// checks it with the same parser as the ZeroMQ side, submits it and encodes the reply.
    private func run(fields: [String: JSONValue], payloads: [[UInt8]], route: GatewayRoute,
                     received: UInt64) async -> Response {
        guard let kind = route.kind else { return refuse(echo: .unknown, ProtocolError(.internal, "no kind")) }
        var header = fields
        if let given = header["kind"], given != .string(kind.rawValue) {
            return refuse(echo: RequestEcho(requestID: header["request_id"]?.stringValue, kind: kind.rawValue),
                          ProtocolError(.badRequest, "field 'kind' (\(given)) differs from the route's kind '\(kind.rawValue)'"))
        }
        header["kind"] = .string(kind.rawValue)
        header["protocol"] = header["protocol"] ?? .int(probattnProtocolVersion)
        if header["request_id"] == nil { header["request_id"] = .string(nextRequestID()) }
        let request: ProbattnSession.Request
        switch currentParser.parse([header.serializedObject] + payloads) {
        case .failure(let failure):
            return refuse(echo: failure.echo, failure.error)
        case .success(let parsed):
            request = parsed
        }
        let (reply, replyPayloads) = await withCheckedContinuation { continuation in
            let accepted = submit(request, received: received, transport: "http") { reply, payloads in
                continuation.resume(returning: (reply, payloads))
            }
            if !accepted {
                requests.countRefusal(transport: "http", echo: RequestEcho(request), error: Self.shuttingDown)
                continuation.resume(returning: (WireEncoding.reply(RequestEcho(request), .failure(Self.shuttingDown)), []))
            }
        }
        guard reply["ok"]?.boolValue == true else {
            let code = reply["error"]?["code"]?.stringValue ?? "internal"
            return Self.json(reply, status: GatewayStatus.status(for: code), retryAfter: code == "busy")
        }
        if case .getMask(_, let format) = request.body, format == .png, let png = replyPayloads.first {
            var headers: HTTPFields = [.contentType: "image/png"]
            headers[Self.versionHeader] = reply["version"]?.intValue.map { String($0) }
            headers[Self.requestIDHeader] = reply["request_id"]?.stringValue
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
        let created = request.kind == .openImage && reply["reopened"]?.boolValue == false
        return Self.json(reply, status: created ? 201 : 200)
    }

    static let versionHeader = HTTPField.Name("X-Probattn-Version")!
    static let requestIDHeader = HTTPField.Name("X-Probattn-Request-Id")!

    /// What reading a request body gave.
    enum BodyOutcome {
        case complete([UInt8])
        /// The error to answer, and whether the connection must be closed after the answer (the rest of the body
        /// is not wanted).
        case refused(ProtocolError, close: Bool)
    }

    /// The whole body, at most `limits.max_message_bytes`: refused at once when Content-Length is larger, else as
    /// soon as the running total passes the limit (nothing beyond it is kept).
    func readBody(_ request: HummingbirdCore.Request) async -> BodyOutcome {
        let limit = currentParser.maxMessageBytes
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > limit {
            return .refused(ProtocolError(.messageTooLarge,
                "the body has \(declared) bytes (Content-Length); at most \(limit) are accepted"), close: true)
        }
        var bytes: [UInt8] = []
        if let declared { bytes.reserveCapacity(declared) }
        do {
            for try await chunk in request.body {
                guard bytes.count + chunk.readableBytes <= limit else {
                    return .refused(ProtocolError(.messageTooLarge,
                        "the body passed \(limit) bytes, the most that is accepted"), close: true)
                }
                bytes.append(contentsOf: chunk.readableBytesView)
            }
        } catch {
            return .refused(ProtocolError(.badRequest, "the body could not be read: \(error)"), close: true)
        }
        if let declared, bytes.count != declared {
            return .refused(ProtocolError(.badRequest,
                "the body ended after \(bytes.count) of its \(declared) bytes"), close: true)
        }
        return .complete(bytes)
    }

    /// An error answered by the gateway itself (before or instead of submitting), counted in the metrics. With
    /// `closing`, the connection is closed once the answer is written: output first (the client sees the reply and
    /// the end of the stream), the whole connection 2 s later, so a client still sending cannot hold it.
    private func refuse(echo: RequestEcho, _ error: ProtocolError, closing channel: (any Channel)? = nil) -> Response {
        requests.countRefusal(transport: "http", echo: echo, error: error)
        let response = Self.json(WireEncoding.reply(echo, .failure(error)),
                                 status: GatewayStatus.status(for: error.code.rawValue),
                                 retryAfter: error.code == .busy)
        guard let channel else { return response }
        let bytes = WireEncoding.reply(echo, .failure(error)).serialized()
        var headers = response.headers
        headers[.connection] = "close"
        return Response(status: response.status, headers: headers,
                        body: ResponseBody(contentLength: bytes.count) { writer in
                            try await writer.write(ByteBuffer(bytes: bytes))
                            try await writer.finish(nil)
                            channel.close(mode: .output, promise: nil)
                            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
                        })
    }

    /// An error that has no protocol code of its own (an unknown route).
    private func refuse(echo: RequestEcho, code: String, _ message: String, status: Int) -> Response {
        requests.metrics.countRequest(transport: "http", kind: echo.kind, code: code)
        let reply: JSONValue = ["protocol": .int(probattnProtocolVersion), "request_id": .optional(echo.requestID),
                                "kind": .optional(echo.kind), "ok": false,
                                "error": ["code": .string(code), "message": .string(message)]]
        return Self.json(reply, status: status)
    }

    private static func json(_ reply: JSONValue, status: Int, retryAfter: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if retryAfter { headers[.retryAfter] = "1" }
        return Response(status: HTTPResponse.Status(code: status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: reply.serialized())))
    }

    /// Why `?annotator=` is not a valid name, or nil when it is valid or absent.
    static func annotatorProblem(_ name: String?) -> String? {
        guard let name else { return nil }
        guard !name.isEmpty, name.utf8.count <= 256, !name.utf8.contains(0) else {
            return "query parameter 'annotator' must be a non-empty string of at most 256 bytes without NUL"
        }
        return nil
    }

    // MARK: WebSocket

    /// Decides an upgrade request: only `GET /api/v1/images/{id}/ws` with a valid id and annotator, while not
    /// draining, and on a secured daemon with a valid `bearer.TOKEN` subprotocol (the annotator is then the token's
    /// identity; another `?annotator=` is refused). A refused upgrade is answered 400 without a body (Hummingbird
    /// answers every refused upgrade so; the reason is logged); everything else is answered by the HTTP responder.
    /// When the client offers `probattn.v1`, the 101 names it, as browsers require.
    private func shouldUpgrade(_ head: HTTPRequest)
        -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let target = RequestTarget(head.path ?? "/")
        guard case .success(.webSocket(let imageID)) = GatewayRoute.match(method: head.method.rawValue, target: target),
              Self.annotatorProblem(target.query["annotator"]) == nil, !isDraining else {
            return .dontUpgrade
        }
        let credentials = webSocketCredentials(head)
        var annotator = target.query["annotator"]
        if access != nil {
            guard let token = credentials.token, let principal = access?.principal(token: token) else {
                requests.metrics.countRequest(transport: "ws", kind: nil, code: "unauthorized")
                logger.notice("WebSocket refused: \(credentials.refusal ?? "unknown token")", metadata: ["image": "\(imageID)"])
                return .dontUpgrade
            }
            if let annotator, annotator != principal.identity {
                requests.metrics.countRequest(transport: "ws", kind: nil, code: "forbidden")
                logger.notice("WebSocket refused: \(principal.identity) cannot act as annotator '\(annotator)'",
                              metadata: ["image": "\(imageID)"])
                return .dontUpgrade
            }
            annotator = principal.identity
        }
        let token = credentials.token, connectionAnnotator = annotator
        let headers: HTTPFields = credentials.offersProtocol ? [.secWebSocketProtocol: Self.webSocketProtocol] : [:]
        return .upgrade(headers) { [self] inbound, outbound, _ in
            await Self.$token.withValue(token) {
                await serveWebSocket(imageID: imageID, annotator: connectionAnnotator, inbound: inbound,
                                     outbound: outbound)
            }
        }
    }

    /// One WebSocket client of one image: joins the hub (presence goes out), writes its queue in order from one
    /// task, and answers its text frames (protocol requests `feedback`, `undo`, `get_mask`) until it closes.
    private func serveWebSocket(imageID: String, annotator: String?, inbound: WebSocketInboundStream,
                                outbound: WebSocketOutboundWriter) async {
        let (connection, stream) = hub.join(imageID: imageID, annotator: annotator, token: Self.token)
        var meta: Logger.Metadata = ["image": "\(imageID)", "connection": "\(connection.id)"]
        if let annotator { meta["annotator"] = "\(annotator)" }
        logger.info("WebSocket joined", metadata: meta)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in stream {
                    do {
                        switch message {
                        case .text(let text): try await outbound.write(.text(text))
                        case .binary(let bytes): try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
                        }
                    } catch {
                        return
                    }
                }
                if connection.wasOverflowed {
                    try? await outbound.close(.policyViolation,
                                              reason: "more than \(WebSocketHub.queueLimit) messages behind")
                } else if connection.wasRevoked {
                    try? await outbound.close(.unknown(HTTPGateway.revokedCloseCode), reason: "token no longer authorized")
                }
            }
            do {
                for try await message in inbound.messages(maxSize: currentParser.maxMessageBytes) {
                    switch message {
                    case .text(let text):
                        handleWebSocketText(text, connection: connection)
                    case .binary:
                        let error = ProtocolError(.badHeader, "binary frames are not requests; send JSON text frames")
                        requests.countRefusal(transport: "ws", echo: .unknown, error: error)
                        hub.send(connection, [.text(Self.text(WireEncoding.reply(.unknown, .failure(error))))])
                    }
                }
            } catch {
                logger.debug("WebSocket read ended", metadata: meta.merging(["error": "\(error)"]) { $1 })
            }
            hub.leave(connection)
            await group.waitForAll()
        }
        logger.info("WebSocket left", metadata: meta)
    }

    /// The kinds a WebSocket accepts (the image is the URL's).
    private static let webSocketKinds: Set<RequestKind> = [.feedback, .undo, .getMask]

    private func handleWebSocketText(_ text: String, connection: WebSocketHub.Connection) {
        let received = DispatchTime.now().uptimeNanoseconds
        func answer(_ echo: RequestEcho, _ error: ProtocolError) {
            requests.countRefusal(transport: "ws", echo: echo, error: error)
            hub.send(connection, [.text(Self.text(WireEncoding.reply(echo, .failure(error))))])
        }
        guard let json = JSONValue.parse(Array(text.utf8)), case .object(var fields) = json else {
            answer(.unknown, ProtocolError(.badHeader, "the text frame is not a JSON object"))
            return
        }
        let echo = RequestEcho(requestID: fields["request_id"]?.stringValue, kind: fields["kind"]?.stringValue)
        if let given = fields["image_id"], given != .string(connection.imageID) {
            answer(echo, ProtocolError(.badRequest,
                "field 'image_id' (\(given)) differs from this WebSocket's image '\(connection.imageID)'"))
            return
        }
        fields["image_id"] = .string(connection.imageID)
        let request: ProbattnSession.Request
        switch currentParser.parse([JSONValue.object(fields).serialized()]) {
        case .failure(let failure):
            answer(failure.echo, failure.error)
            return
        case .success(let parsed):
            request = parsed
        }
        guard Self.webSocketKinds.contains(request.kind) else {
            answer(echo, ProtocolError(.badRequest, "'\(request.kind.rawValue)' is not accepted on an image's "
                + "WebSocket; accepted: feedback, undo, get_mask (the rest are HTTP routes)"))
            return
        }
        let outbound = self.hub
        let accepted = submit(request, received: received, transport: "ws") { reply, payloads in
            outbound.send(connection, [.text(Self.text(reply))] + payloads.map(WebSocketHub.Outbound.binary))
        }
        if !accepted { answer(RequestEcho(request), Self.shuttingDown) }
    }

    private static func text(_ json: JSONValue) -> String { String(decoding: json.serialized(), as: UTF8.self) }
}

/// The responder Hummingbird calls for every request that is not a WebSocket upgrade.
struct GatewayResponder: HTTPResponder {
    typealias Context = GatewayRequestContext
    let gateway: HTTPGateway

    func respond(to request: HummingbirdCore.Request, context: GatewayRequestContext) async throws -> Response {
        await gateway.respond(request, channel: context.channel)
    }
}

/// The request context of the gateway: Hummingbird's core storage plus the connection, so that a refused upload can
/// close it.
struct GatewayRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    /// The fields as one serialised JSON object.
    var serializedObject: [UInt8] { JSONValue.object(self).serialized() }
}
