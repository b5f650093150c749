import Foundation
import ProbattnClient
import ProbattnConfig
import ProbattnJSON
import ProbattnKeys
import ProbattnSession
import ProbattnZMQ
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A daemon with `security`: keys made by `KeyGenerator` in its folder (`keys/`: every file; `authorized/`: the
/// clients' `.key` files the daemon admits), the real `probattnd` with CURVE on both sockets.
final class SecuredDaemon {
    let daemon: DaemonProcess
    let keyFolder: String
    let authorizedFolder: String
    let serverPublicKey: [UInt8]
    /// Client names and roles made at start; `keys(for:)` loads any of them.
    static let clients: [(String, Principal.Role)] = [("alice", .annotate), ("bob", .annotate), ("vera", .view),
                                                      ("root", .admin)]

    /// Client tokens by name (shown once by `KeyGenerator`).
    private(set) var tokens: [String: String] = [:]

    init(extraYAML: String = "", http: Bool = false) throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        keyFolder = folder + "/keys"
        authorizedFolder = folder + "/authorized"
        try FileManager.default.createDirectory(atPath: authorizedFolder, withIntermediateDirectories: true)
        let server = try KeyGenerator.generate(name: "server", role: nil, directory: keyFolder)
        serverPublicKey = try #require(ZMQCurve.decode(server.publicKey))
        for (name, role) in Self.clients {
            let made = try KeyGenerator.generate(name: name, role: role, directory: keyFolder)
            tokens[name] = made.token
            try FileManager.default.copyItem(atPath: made.publicKeyFile, toPath: "\(authorizedFolder)/\(name).key")
        }
        daemon = try DaemonProcess(extraYAML: """
            security:
              server_secret_key: \(server.secretKeyFile)
              authorized_keys: \(authorizedFolder)
            \(extraYAML)
            """, folder: folder, http: http)
        daemon.startupKeys = try keys(for: "root")
    }

    func keys(for name: String) throws -> ZMQCurveClientKeys {
        try ClientKeyFiles.load(serverKey: "\(keyFolder)/server.key", clientKey: "\(keyFolder)/\(name).key_secret").keys
    }

    /// Keys of a client the daemon has never heard of (a fresh pair).
    func strangerKeys() throws -> ZMQCurveClientKeys {
        let pair = try ZMQCurve.generateKeyPair()
        return ZMQCurveClientKeys(serverPublicKey: serverPublicKey, publicKey: try #require(ZMQCurve.decode(pair.publicKey)),
                                  secretKey: try #require(ZMQCurve.decode(pair.secretKey)))
    }

    func client(_ keys: ZMQCurveClientKeys, timeout: Double = 30) throws -> ProbattnClient {
        try ProbattnClient(endpoint: daemon.requests, timeout: timeout, curve: keys)
    }

    func subscriber(_ keys: ZMQCurveClientKeys, imageID: String?) throws -> ProbattnSubscriber {
        let subscriber = try ProbattnSubscriber(endpoint: daemon.results, curve: keys)
        try subscriber.subscribe(imageID: imageID)
        return subscriber
    }
}

/// Versions of the updates a subscriber has received so far (without waiting).
private func pendingVersions(_ subscriber: ProbattnSubscriber) -> [Int] {
    var versions: [Int] = []
    while let update = try? subscriber.receive(timeout: 0) { versions.append(update.header["version"]?.intValue ?? -1) }
    return versions
}

/// Clicks as `annotator` until `subscriber` receives the update of one of those clicks (each click makes a new
/// version; a subscriber that is still connecting misses the first ones). Returns that version.
private func clickUntilDelivered(_ client: ProbattnClient, image: String, annotator: String,
                                 subscriber: ProbattnSubscriber, deadline: Double = 20) throws -> Int {
    let end = Date().addingTimeInterval(deadline)
    var x = 40
    while Date() < end {
        let reply = try client.feedback(image, annotator: annotator, clicks: [WireClick(x: x, y: 40, className: "object")])
            .checked()
        let version = try #require(reply.version)
        x = x % 150 + 1
        let wait = Date().addingTimeInterval(0.5)
        while Date() < wait, let update = try? subscriber.receive(timeout: 0.1) {
            if let received = update.header["version"]?.intValue, received >= version { return received }
        }
    }
    throw HarnessError("no update reached the subscriber within \(deadline) s")
}

@Suite("Security over CURVE")
struct SecurityTests {
    @Test func keysRolesAndTheResultsSocket() throws {
        let secured = try SecuredDaemon()
        try secured.daemon.start()
        defer { secured.daemon.stop() }
        #expect(secured.daemon.log.contains("Security on"))
        #expect(!secured.daemon.log.contains("Running open"))
        let alice = try secured.client(secured.keys(for: "alice"))
        let bob = try secured.client(secured.keys(for: "bob"))
        let vera = try secured.client(secured.keys(for: "vera"))
        let root = try secured.client(secured.keys(for: "root"))

        // An unknown key: the handshake is refused, so the request is never read and nothing comes back.
        let strangerKeys = try secured.strangerKeys()
        let stranger = try secured.client(strangerKeys, timeout: 1)
        try stranger.send("health")
        #expect(secured.daemon.waitForLog("Handshake refused"), "the refusal is logged")
        #expect(throws: ProbattnClientError.self) { try stranger.receive(timeout: 1) }
        let strangerSubscriber = try secured.subscriber(strangerKeys, imageID: nil)
        let aliceSubscriber = try secured.subscriber(secured.keys(for: "alice"), imageID: "img")

        let png = try TestImages.png()
        let opened = try alice.openImage("img", bytes: png).checked()
        #expect(opened.version == 0)
        #expect(try root.request("list_sessions").checked()["sessions"]?.arrayValue?.first?["opened_by"] == "alice",
                "the opener is the key's identity")
        let object = [WireClick(x: 80, y: 60, className: "object")]

        // view: masks yes, clicks, undo, open, close and plugins no.
        #expect(try vera.feedback("img", annotator: "vera", clicks: object).errorCode == "forbidden")
        #expect(try vera.undo("img", annotator: "vera").errorCode == "forbidden")
        #expect(try vera.openImage("vera-img", bytes: png).errorCode == "forbidden")
        #expect(try vera.closeImage("img").errorCode == "forbidden")
        #expect(try vera.request("list_plugins").errorCode == "forbidden")
        #expect(try vera.getMask("img").checked().version == 0)

        // annotate: acts only as itself.
        #expect(try alice.feedback("img", annotator: "bob", clicks: object).errorCode == "forbidden",
                "alice writing as bob")
        let first = try alice.feedback("img", annotator: "alice", clicks: object).checked()
        #expect(first.version == 1)
        try bob.feedback("img", annotator: "bob", clicks: [WireClick(x: 10, y: 10, className: "background")]).checked()
        #expect(try bob.undo("img", annotator: "alice").errorCode == "forbidden", "bob cannot undo alice's click")
        #expect(try bob.closeImage("img").errorCode == "forbidden", "bob did not open img")
        #expect(try alice.getMask("img").checked().version == 2, "nothing denied changed the mask")
        let undone = try bob.undo("img", annotator: "bob").checked()
        #expect(undone["undone"]?["annotator"] == "bob")

        // list_sessions: each sees the sessions it opened or clicked in; admin sees all.
        try bob.openImage("bobs", bytes: png).checked()
        func listed(_ client: ProbattnClient) throws -> [String] {
            try client.request("list_sessions").checked()["sessions"]?.arrayValue?.compactMap { $0["image_id"]?.stringValue } ?? []
        }
        #expect(try listed(vera) == [])
        #expect(try listed(alice) == ["img"])
        #expect(try listed(bob) == ["bobs", "img"])
        #expect(try listed(root) == ["bobs", "img"])

        // The results socket: alice's subscriber gets img's updates, the stranger's gets nothing.
        let delivered = try clickUntilDelivered(alice, image: "img", annotator: "alice", subscriber: aliceSubscriber)
        #expect(delivered >= 4)
        #expect(throws: ProbattnClientError.self) { try strangerSubscriber.receive(timeout: 0.3) }

        // close: the opener and admin only.
        #expect(try root.closeImage("bobs").checked().version == 0)
        #expect(try alice.closeImage("img").ok)
        let refusals = secured.daemon.log.components(separatedBy: "\n")
            .filter { $0.contains("Handshake refused") && $0.contains(ZMQCurve.encode(strangerKeys.publicKey) ?? "?") }
        #expect(refusals.count == 1, "one log line per key per minute, however often the stranger retries")
    }

    @Test func aKeyRemovedByAReloadIsRefusedOnItsOpenConnection() throws {
        let secured = try SecuredDaemon()
        try secured.daemon.start()
        defer { secured.daemon.stop() }
        let alice = try secured.client(secured.keys(for: "alice"))
        let bob = try secured.client(secured.keys(for: "bob"))
        let aliceSubscriber = try secured.subscriber(secured.keys(for: "alice"), imageID: "img")
        let bobSubscriber = try secured.subscriber(secured.keys(for: "bob"), imageID: "img")
        try alice.openImage("img", bytes: TestImages.png()).checked()
        try bob.request("health").checked()
        _ = try clickUntilDelivered(alice, image: "img", annotator: "alice", subscriber: bobSubscriber)

        try FileManager.default.removeItem(atPath: "\(secured.authorizedFolder)/bob.key")
        let before = try alice.getMask("img").checked().version ?? 0
        secured.daemon.signal(SIGHUP)
        #expect(secured.daemon.waitForLog("Results socket bound again"), "a reload that removed a key re-binds")
        #expect(secured.daemon.log.contains("removed=1"))

        // The same connection, opened while bob was admitted: refused at once.
        let refused = try bob.request("health")
        #expect(refused.errorCode == "forbidden")
        #expect(try bob.feedback("img", annotator: "bob", clicks: [WireClick(x: 5, y: 5, className: "background")])
            .errorCode == "forbidden")
        #expect(try alice.request("health").ok, "other keys are unaffected")

        // Subscribers reconnect through a new handshake: alice's gets updates again, bob's gets none after the reload.
        let delivered = try clickUntilDelivered(alice, image: "img", annotator: "alice", subscriber: aliceSubscriber)
        #expect(delivered > before)
        #expect(throws: ProbattnClientError.self) {
            while true {
                let update = try bobSubscriber.receive(timeout: 0.3)
                if (update.header["version"]?.intValue ?? 0) > before { break }  // an update after the reload: fail
            }
        }
        #expect(pendingVersions(bobSubscriber).allSatisfy { $0 <= before })
    }

    @Test func anOpenDaemonWarnsAtStart() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        #expect(daemon.waitForLog("Running open"))
    }
}

/// HTTP requests with credentials.
private func send(_ http: HTTPConnection, _ method: String, _ target: String, token: String?,
                  authorization: String? = nil, json: JSONValue? = nil) throws -> HTTPClientResponse {
    var headers: [(String, String)] = []
    if let token { headers.append(("Authorization", "Bearer \(token)")) }
    if let authorization { headers.append(("Authorization", authorization)) }
    if json != nil { headers.append(("Content-Type", "application/json")) }
    return try http.request(method, target, headers: headers, body: json?.serialized() ?? [])
}

private func errorCode(_ response: HTTPClientResponse) -> String? {
    JSONValue.parse(response.body)?["error"]?["code"]?.stringValue
}

@Suite("Security over HTTP")
struct HTTPSecurityTests {
    @Test func tokensOnRoutesAndWebSockets() throws {
        let secured = try SecuredDaemon(http: true)
        try secured.daemon.start()
        defer { secured.daemon.stop() }
        let http = try secured.daemon.httpConnection()
        let alice = try #require(secured.tokens["alice"]), vera = try #require(secured.tokens["vera"])

        let none = try send(http, "GET", "/api/v1/health", token: nil)
        #expect(none.status == 401 && errorCode(none) == "unauthorized")
        #expect(none.header("www-authenticate")?.hasPrefix("Bearer") == true)
        #expect(try send(http, "GET", "/metrics", token: nil).status == 401, "every route")
        #expect(try send(http, "GET", "/api/v1/folder", token: nil).status == 401)
        let page = try send(http, "GET", "/", token: nil)
        #expect(page.status == 200, "the web annotator's own files need no token (they hold no data)")
        #expect(String(decoding: page.body, as: UTF8.self).contains("token-modal"), "the page can ask for a token")
        #expect(try send(http, "GET", "/api/v1/health", token: String(repeating: "ab", count: 32)).status == 401)
        #expect(try send(http, "GET", "/api/v1/health", token: alice).status == 200)
        let whoami = JSONValue.parse(try send(http, "GET", "/api/v1/whoami", token: vera).body)
        #expect(whoami?["identity"] == "vera" && whoami?["role"] == "view" && whoami?["security"] == true)

        // Open as alice (the identity is the token's), then a viewer's click is 403 and alice cannot write as bob.
        let form = HTTPConnection.multipart([(name: "header", contentType: "application/json",
                                              body: JSONValue.object(["image_id": "img"]).serialized()),
                                             (name: "image", contentType: "image/png", body: try TestImages.png())])
        let opened = try http.request("POST", "/api/v1/images",
                                      headers: [("Authorization", "Bearer \(alice)"), ("Content-Type", form.contentType)],
                                      body: form.body)
        #expect(opened.status == 201)
        func click(_ annotator: String) -> JSONValue {
            ["annotator": .string(annotator), "clicks": [["x": 80, "y": 60, "class": "object"]]]
        }
        let viewerClick = try send(http, "POST", "/api/v1/images/img/feedback", token: vera, json: click("vera"))
        #expect(viewerClick.status == 403 && errorCode(viewerClick) == "forbidden")
        #expect(try send(http, "POST", "/api/v1/images/img/feedback", token: alice, json: click("bob")).status == 403)
        #expect(try send(http, "POST", "/api/v1/images/img/feedback", token: alice, json: click("alice")).status == 200)

        // Label Studio's ML backend connection: Basic with the token as the password, on /label-studio/* only.
        let basic = "Basic " + Data("probattn:\(alice)".utf8).base64EncodedString()
        let labelStudio = try send(http, "POST", "/label-studio/predict", token: nil, authorization: basic, json: [:])
        #expect(labelStudio.status != 401, "Basic is accepted on /label-studio/*")
        let challenged = try send(http, "POST", "/label-studio/predict", token: nil, json: [:])
        #expect(challenged.status == 401)
        #expect(challenged.headers.contains { $0.name == "www-authenticate" && $0.value.hasPrefix("Basic") })
        #expect(try send(http, "GET", "/api/v1/health", token: nil, authorization: basic).status == 401,
                "Basic is not accepted elsewhere")

        // WebSocket: the token travels as a subprotocol; without one the upgrade is refused.
        let endpoint = secured.daemon.httpEndpoint
        #expect(throws: HTTPClientError.self) {
            try WebSocketConnection(endpoint: endpoint, target: "/api/v1/images/img/ws", timeout: 10)
        }
        #expect(throws: HTTPClientError.self) {
            try WebSocketConnection(endpoint: endpoint, target: "/api/v1/images/img/ws", timeout: 10,
                                    protocols: ["probattn.v1", "bearer." + String(repeating: "0", count: 64)])
        }
        #expect(throws: HTTPClientError.self, "a viewer cannot name another annotator") {
            try WebSocketConnection(endpoint: endpoint, target: "/api/v1/images/img/ws?annotator=alice", timeout: 10,
                                    protocols: ["probattn.v1", "bearer.\(vera)"])
        }
        let ws = try WebSocketConnection(endpoint: endpoint, target: "/api/v1/images/img/ws", timeout: 10,
                                         protocols: ["probattn.v1", "bearer.\(vera)"])
        defer { ws.close() }
        #expect(ws.acceptedProtocol == "probattn.v1")
        let presence = try nextMessage(ws) { $0["kind"] == "presence" }
        #expect(presence["annotators"]?.arrayValue?.contains("vera") == true, "the token's identity is the annotator")
        try ws.sendText(#"{"protocol": 1, "request_id": "w1", "kind": "get_mask"}"#)
        #expect(try nextMessage(ws) { $0["request_id"] == "w1" }["ok"] == true)
        try ws.sendText(#"{"protocol": 1, "request_id": "w2", "kind": "feedback", "annotator": "vera", "clicks": [{"x": 1, "y": 1, "class": "object"}]}"#)
        #expect(try nextMessage(ws) { $0["request_id"] == "w2" }["error"]?["code"] == "forbidden")

        // A reload that removes vera's key: her token is refused at once, and her open WebSocket is closed.
        try FileManager.default.removeItem(atPath: "\(secured.authorizedFolder)/vera.key")
        secured.daemon.signal(SIGHUP)
        #expect(secured.daemon.waitForLog("Client keys reloaded"))
        #expect(try send(http, "GET", "/api/v1/health", token: vera).status == 401)
        #expect(try send(http, "GET", "/api/v1/health", token: alice).status == 200)
        var closedWith: Int?
        let end = Date().addingTimeInterval(10)
        while closedWith == nil, Date() < end {
            if case .close(let code, _) = try ws.receive(timeout: 10) { closedWith = code }
        }
        #expect(closedWith == 4403)
    }
}
