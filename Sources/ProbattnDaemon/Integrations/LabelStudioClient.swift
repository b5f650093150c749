import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ProbattnConfig
import ProbattnJSON

/// A failure of the Label Studio side, with the HTTP status the ML backend answers it with.
struct IntegrationError: Error, CustomStringConvertible, Sendable {
    var status: Int
    var message: String
    init(_ status: Int, _ message: String) { self.status = status; self.message = message }
    var description: String { message }
}

/// Downloads task images from Label Studio, and only from it: the task's URL must be on Label Studio's host (same
/// scheme, host and port) or a relative `/data/...` path joined to it; anything else is refused before any
/// connection. Label Studio's base URL and token come from the config, then `/setup`, then the environment
/// (`LABEL_STUDIO_URL`, `LABEL_STUDIO_API_KEY`). A legacy token is sent as `Authorization: Token …`; a personal
/// access token (a JWT refresh token) is exchanged at `/api/token/refresh/` for an access token, sent as `Bearer …`
/// and renewed when it expires. Redirects are not followed. Thread-safe.
final class LabelStudioClient: Sendable {
    private let configured: DaemonConfig.LabelStudio
    private let environment: [String: String]
    private let maxBytes: Int
    private let session: URLSession
    /// What `/setup` sent.
    private let setup = Mutex<(url: String?, token: String?)>((nil, nil))
    /// The access token got for a personal access token, with its expiry (seconds since 1970).
    private let access = Mutex<(refresh: String, token: String, expires: Double)?>(nil)

    init(settings: DaemonConfig.LabelStudio, maxBytes: Int,
         environment: [String: String] = ProcessInfo.processInfo.environment) {
        configured = settings
        self.environment = environment
        self.maxBytes = maxBytes
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = settings.fetchTimeoutSeconds
        configuration.timeoutIntervalForResource = settings.fetchTimeoutSeconds
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpShouldSetCookies = false
        session = URLSession(configuration: configuration, delegate: NoRedirects(), delegateQueue: nil)
    }

    /// What `/setup` sent (`hostname`, `access_token`); used where the config gives none.
    func setUp(hostname: String?, token: String?) {
        setup.withLock { setup in
            if let hostname, !hostname.isEmpty { setup.url = hostname }
            if let token, !token.isEmpty { setup.token = token }
        }
    }

    var baseURL: String? {
        configured.url ?? setup.withLock { $0.url } ?? environment["LABEL_STUDIO_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    var token: String? {
        configured.apiKey ?? setup.withLock { $0.token }
            ?? environment["LABEL_STUDIO_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The absolute URL of a task's image, or why it may not be fetched (400).
    func resolve(_ taskURL: String) throws -> URL {
        guard let base = baseURL else {
            throw IntegrationError(400, "Label Studio's URL is unknown: set label_studio.url in the config or "
                                   + "LABEL_STUDIO_URL, or connect the backend from Label Studio (its /setup call sends it)")
        }
        guard let baseURL = URL(string: base), let baseHost = baseURL.host?.lowercased(),
              let baseScheme = baseURL.scheme?.lowercased(), baseScheme == "http" || baseScheme == "https" else {
            throw IntegrationError(400, "Label Studio's URL '\(base)' is not an http(s) URL with a host")
        }
        if taskURL.hasPrefix("/data/") {
            let root = base.hasSuffix("/") ? String(base.dropLast()) : base
            guard let url = URL(string: root + taskURL) else {
                throw IntegrationError(400, "the task's image path '\(taskURL)' is not a valid URL path")
            }
            return url
        }
        guard let url = URL(string: taskURL), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased()
        else {
            throw IntegrationError(400, "the task's image '\(taskURL)' is neither a URL on Label Studio's host "
                                   + "(\(base)) nor a /data/... path")
        }
        func port(_ u: URL, _ scheme: String) -> Int { u.port ?? (scheme == "https" ? 443 : 80) }
        guard scheme == baseScheme, host == baseHost, port(url, scheme) == port(baseURL, baseScheme) else {
            throw IntegrationError(400, "the task's image '\(taskURL)' is not on Label Studio's host (\(base)); "
                                   + "probattn fetches images only from Label Studio")
        }
        return url
    }

    /// The image bytes of a task URL.
    func download(_ taskURL: String) async throws -> [UInt8] {
        let url = try resolve(taskURL)
        var request = URLRequest(url: url)
        request.httpMethod = "GET"
        if let authorization = try await authorization() { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
        let (data, response) = try await fetch(request, what: "the task's image \(url.absoluteString)")
        guard response.statusCode == 200 else {
            throw IntegrationError(502, "Label Studio answered HTTP \(response.statusCode) for the task's image "
                                   + "\(url.absoluteString)" + (response.statusCode == 401
                                       ? " (the token is missing or not accepted)" : ""))
        }
        return [UInt8](data)
    }

    /// The Authorization header for Label Studio, or nil without a token.
    private func authorization() async throws -> String? {
        guard let token else { return nil }
        guard let claims = Self.jwtClaims(token) else { return "Token \(token)" }
        if claims["token_type"]?.stringValue != "refresh" { return "Bearer \(token)" }
        let now = Date().timeIntervalSince1970
        if let cached = access.withLock({ $0 }), cached.refresh == token, cached.expires > now + 5 {
            return "Bearer \(cached.token)"
        }
        guard let base = baseURL, let url = URL(string: (base.hasSuffix("/") ? String(base.dropLast()) : base)
                                                + "/api/token/refresh/") else {
            throw IntegrationError(400, "Label Studio's URL is unknown, so the personal access token cannot be used")
        }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(JSONValue.object(["refresh": .string(token)]).serialized())
        let (data, response) = try await fetch(request, what: "the token refresh at \(url.absoluteString)")
        guard response.statusCode == 200, let body = JSONValue.parse([UInt8](data)),
              let accessToken = body["access"]?.stringValue else {
            throw IntegrationError(502, "Label Studio refused the personal access token (HTTP \(response.statusCode) "
                                   + "from \(url.absoluteString))")
        }
        let expires = Self.jwtClaims(accessToken)?["exp"]?.doubleValue ?? now + 60
        access.withLock { $0 = (token, accessToken, expires) }
        return "Bearer \(accessToken)"
    }

    /// One request with the configured timeout and byte limit; connection failures and timeouts become 502/504.
    private func fetch(_ request: URLRequest, what: String) async throws -> (Data, HTTPURLResponse) {
        let limit = maxBytes
        let timeout = configured.fetchTimeoutSeconds
        let outcome: Result<(Data, HTTPURLResponse), IntegrationError> = await withCheckedContinuation { continuation in
            let task = session.dataTask(with: request) { data, response, error in
                if let error {
                    let ns = error as NSError
                    if ns.domain == NSURLErrorDomain, ns.code == NSURLErrorTimedOut {
                        continuation.resume(returning: .failure(IntegrationError(
                            504, "\(what) did not answer within fetch_timeout_s = \(timeout) s")))
                    } else {
                        continuation.resume(returning: .failure(IntegrationError(
                            502, "cannot fetch \(what): \(error.localizedDescription)")))
                    }
                    return
                }
                guard let http = response as? HTTPURLResponse else {
                    continuation.resume(returning: .failure(IntegrationError(502, "\(what): no HTTP response")))
                    return
                }
                let body = data ?? Data()
                guard body.count <= limit else {
                    continuation.resume(returning: .failure(IntegrationError(
                        413, "\(what) has \(body.count) bytes; at most \(limit) (limits.max_message_bytes) are accepted")))
                    return
                }
                continuation.resume(returning: .success((body, http)))
            }
            task.resume()
        }
        return try outcome.get()
    }

    /// The claims of a JWT (`header.payload.signature`, base64url), or nil when `token` is not one.
    static func jwtClaims(_ token: String) -> JSONValue? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var text = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        guard let data = Data(base64Encoded: text), let claims = JSONValue.parse([UInt8](data)),
              case .object = claims else { return nil }
        return claims
    }
}

/// Refuses every redirect (the 3xx answer is then the response): a redirect could lead off Label Studio's host.
/// Unchecked `Sendable`: it has no state (Foundation's `NSObject` is not `Sendable` on Linux).
private final class NoRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}

/// A bounded least-recently-used map from image URL to content hash, so that an image is downloaded once per URL
/// (while its preparation stays in the cache, later calls send only the hash). Thread-safe.
final class URLHashMemory: Sendable {
    private let capacity: Int
    private let state = Mutex<(entries: [String: (hash: String, lastUse: UInt64)], clock: UInt64)>(([:], 0))

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func hash(for url: String) -> String? {
        state.withLock { state in
            guard var entry = state.entries[url] else { return nil }
            state.clock += 1
            entry.lastUse = state.clock
            state.entries[url] = entry
            return entry.hash
        }
    }

    func remember(_ hash: String, for url: String) {
        state.withLock { state in
            state.clock += 1
            state.entries[url] = (hash, state.clock)
            if state.entries.count > capacity,
               let oldest = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                state.entries[oldest.key] = nil
            }
        }
    }

    func forget(_ url: String) { _ = state.withLock { $0.entries.removeValue(forKey: url) } }

    var count: Int { state.withLock { $0.entries.count } }
}
