import Foundation

extension DaemonConfig {
    /// Where the Label Studio ML backend (`/label-studio/` on the HTTP gateway, docs/INTEGRATIONS.md) downloads task
    /// images from. YAML `label_studio`. Each of `url` and `api_key` may also come from Label Studio's `/setup` call
    /// or from the environment (`LABEL_STUDIO_URL`, `LABEL_STUDIO_API_KEY`); the config wins, then `/setup`, then the
    /// environment.
    public struct LabelStudio: Sendable, Equatable {
        /// Label Studio's base URL (`http://host:port`), the only host images are fetched from. YAML `url`.
        public var url: String?
        /// A Label Studio token: a legacy token (sent as `Token …`) or a personal access token (a JWT refresh token,
        /// exchanged for access tokens). YAML `api_key`.
        public var apiKey: String?
        /// Timeout of one image download (and of a token refresh), in seconds. YAML `fetch_timeout_s`.
        public var fetchTimeoutSeconds: Double = 10
        public init() {}
    }

    static func decodeLabelStudio(_ node: ConfigNode) throws -> LabelStudio {
        var settings = LabelStudio()
        if node.isNull { return settings }
        let keys = try node.mapping(allowed: ["url", "api_key", "fetch_timeout_s"])
        if let value = keys["url"], !value.isNull {
            let text = try value.nonEmptyString()
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  url.host != nil else {
                throw value.invalidValue("must be an http:// or https:// URL with a host, found '\(text)'")
            }
            settings.url = text
        }
        if let value = keys["api_key"], !value.isNull { settings.apiKey = try value.nonEmptyString() }
        if let value = keys["fetch_timeout_s"] {
            let seconds: Double
            switch try value.configValue() {
            case .int(let v): seconds = Double(v)
            case .double(let v): seconds = v
            default: throw value.wrongType("a number of seconds")
            }
            guard seconds > 0, seconds <= 3600 else { throw value.invalidValue("must be in (0, 3600] seconds") }
            settings.fetchTimeoutSeconds = seconds
        }
        return settings
    }
}
