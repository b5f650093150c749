import Foundation
import Hummingbird
import HummingbirdCore
import HTTPTypes
import NIOCore
import ProbattnJSON
import ProbattnSession
import ProbattnWire

/// Tokens on the HTTP gateway of a secured daemon (docs/SECURITY.md). Every route needs `Authorization: Bearer
/// TOKEN`; the `/label-studio/*` routes also take HTTP Basic with the token as the password (Label Studio's ML backend
/// connection offers only Basic auth); a WebSocket offers it as the subprotocol `bearer.TOKEN` next to `probattn.v1`
/// (browsers cannot set headers on a WebSocket, and a token in the URL would end up in logs). A missing or unknown
/// token gets 401 (`unauthorized`), a request the token's role does not allow 403 (`forbidden`, from the session
/// core). The token is looked up again when its request is submitted, so a key removed by a reload is refused at
/// once, also on an open WebSocket.
extension HTTPGateway {
    /// The token of the request being answered, for `submit`: set by `respond` around each HTTP request and by the
    /// WebSocket handler around its connection.
    @TaskLocal static var token: String?

    /// The close code of a WebSocket whose token a reload removed (4403: "forbidden" in the private range).
    static let revokedCloseCode: UInt16 = 4403

    /// After a reload of the keys: closes the WebSockets whose token is no longer admitted.
    func revokeRemovedTokens() {
        guard let access else { return }
        let closed = hub.revoke { access.principal(token: $0) == nil }
        if closed > 0 { logger.notice("WebSockets closed: their token is no longer authorized", metadata: ["count": "\(closed)"]) }
    }

    /// The WebSocket subprotocol of the protocol's messages, and the prefix of the one that carries a token.
    static let webSocketProtocol = "probattn.v1"
    static let bearerProtocolPrefix = "bearer."

    /// The result of checking a request's credentials: the token to answer it with (nil on an open daemon), or the
    /// 401 to answer instead.
    enum Authentication {
        case allowed(token: String?)
        case refused(Response)
    }

    /// Checks the credentials of an HTTP request (before any route runs, so the integration routes need them too).
    func authenticate(_ request: HummingbirdCore.Request, target: RequestTarget) -> Authentication {
        guard let access else { return .allowed(token: nil) }
        let labelStudio = target.segments.first == "label-studio"
        let token = Self.bearerToken(request.headers[.authorization])
            ?? (labelStudio ? Self.basicPassword(request.headers[.authorization]) : nil)
        guard let token else {
            return .refused(unauthorized("this daemon needs a token: send 'Authorization: Bearer TOKEN'"
                                             + (labelStudio ? " or HTTP Basic with the token as the password" : ""),
                                         basic: labelStudio))
        }
        guard access.principal(token: token) != nil else {
            return .refused(unauthorized("unknown token", basic: labelStudio))
        }
        return .allowed(token: token)
    }

    /// The 401 of a missing or unknown token, with the challenge(s) the route accepts.
    private func unauthorized(_ message: String, basic: Bool) -> Response {
        requests.metrics.countRequest(transport: "http", kind: nil, code: "unauthorized")
        let reply: JSONValue = ["protocol": .int(probattnProtocolVersion), "request_id": .null, "kind": .null,
                                "ok": false, "error": ["code": "unauthorized", "message": .string(message)]]
        var headers: HTTPFields = [.contentType: "application/json",
                                   .wwwAuthenticate: "Bearer realm=\"probattn\""]
        if basic { headers.append(HTTPField(name: .wwwAuthenticate, value: "Basic realm=\"probattn\"")) }
        return Response(status: .unauthorized, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: reply.serialized())))
    }

    /// `GET /api/v1/whoami`: whether the daemon needs a token and, with one, whose it is. Answered for every valid
    /// token (and, open, for everyone), so that a page can ask for a token when this answers 401.
    func whoami(token: String?) -> Response {
        var body: [String: JSONValue] = ["protocol": .int(probattnProtocolVersion), "ok": true,
                                         "security": .bool(access != nil)]
        if let token, let principal = access?.principal(token: token) {
            body["identity"] = .string(principal.identity)
            body["role"] = .string(principal.role.rawValue)
        } else {
            body["identity"] = .null
            body["role"] = .null
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: JSONValue.object(body).serialized())))
    }

    /// The principal a submission runs as: nil on an open daemon; on a secured one the token's current owner, or
    /// `forbidden` when the token is gone (removed by a reload since the request or WebSocket was authenticated).
    func principalForSubmission() -> Result<Principal?, ProtocolError> {
        guard let access else { return .success(nil) }
        guard let token = Self.token, let principal = access.principal(token: token) else {
            return .failure(ProtocolError(.forbidden, "this token is not (or no longer) authorized"))
        }
        return .success(principal)
    }

    /// The WebSocket upgrade's credentials: whether the client offered `probattn.v1` (then the 101 must name it) and
    /// the token of its `bearer.TOKEN` subprotocol. On a secured daemon, nil `token` means: refuse the upgrade.
    func webSocketCredentials(_ head: HTTPRequest) -> (offersProtocol: Bool, token: String?, refusal: String?) {
        let offered = head.headerFields[values: .secWebSocketProtocol]
            .flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        let offersProtocol = offered.contains(Self.webSocketProtocol)
        guard let access else { return (offersProtocol, nil, nil) }
        guard let token = offered.first(where: { $0.hasPrefix(Self.bearerProtocolPrefix) })
            .map({ String($0.dropFirst(Self.bearerProtocolPrefix.count)) }) else {
            return (offersProtocol, nil, "no token: offer the subprotocols 'probattn.v1, bearer.TOKEN'")
        }
        guard offersProtocol else { return (false, nil, "the subprotocol 'probattn.v1' must be offered with the token") }
        guard access.principal(token: token) != nil else { return (true, nil, "unknown token") }
        return (true, token, nil)
    }

    /// `Authorization: Bearer TOKEN`'s token.
    static func bearerToken(_ header: String?) -> String? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// `Authorization: Basic base64(user:password)`'s password (any user name).
    static func basicPassword(_ header: String?) -> String? {
        guard let header, header.count > 6, header.prefix(6).lowercased() == "basic " else { return nil }
        let encoded = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8),
              let colon = text.firstIndex(of: ":") else { return nil }
        let password = String(text[text.index(after: colon)...])
        return password.isEmpty ? nil : password
    }
}
