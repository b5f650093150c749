import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DaemonConfig {
    /// The config with relative `security` paths made absolute, as `load(path:)` returns it: `server_secret_key`
    /// against `$CREDENTIALS_DIRECTORY` when set (systemd's `LoadCredential=`), else against `configFile`'s folder;
    /// `authorized_keys` against `configFile`'s folder.
    public func resolvingSecurityPaths(configFile: String,
                                       environment: [String: String] = ProcessInfo.processInfo.environment,
                                       currentDirectory: String = FileManager.default.currentDirectoryPath)
        -> DaemonConfig {
        var folder = (configFile as NSString).deletingLastPathComponent
        if !folder.hasPrefix("/") { folder = folder.isEmpty ? currentDirectory : Self.join(currentDirectory, folder) }
        folder = (folder as NSString).standardizingPath
        var resolved = self
        if let key = security.serverSecretKey, !key.hasPrefix("/") {
            let credentials = environment["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
            resolved.security.serverSecretKey = Self.join(credentials ?? folder, key)
        }
        if let keys = security.authorizedKeys, !keys.hasPrefix("/") {
            resolved.security.authorizedKeys = Self.join(folder, keys)
        }
        return resolved
    }

    /// `security` is complete (both key settings or neither), and an open daemon binds only local endpoints (and
    /// `http.listen` only a loopback host) unless `security.allow_insecure` is true. Called by `validateStructure`.
    func validateSecurity() throws {
        switch (security.serverSecretKey, security.authorizedKeys) {
        case (.some, nil):
            throw ConfigError(.missingKey, path: "security.authorized_keys",
                              "security.authorized_keys: required with security.server_secret_key (the folder of the clients' .key files)")
        case (nil, .some):
            throw ConfigError(.missingKey, path: "security.server_secret_key",
                              "security.server_secret_key: required with security.authorized_keys (the daemon's .key_secret file)")
        default:
            break
        }
        guard !security.isEnabled, !security.allowInsecure else { return }
        for (path, endpoint) in [("endpoints.requests", endpoints.requests), ("endpoints.results", endpoints.results)]
        where !Self.isLocalEndpoint(endpoint) {
            throw Self.openWide(path, endpoint)
        }
        if let http, !Self.isLoopbackHost(http.host) {
            throw Self.openWide("http.listen", http.listen)
        }
    }

    private static func openWide(_ path: String, _ address: String) -> ConfigError {
        ConfigError(.invalidValue, path: path,
                    "\(path): '\(address)' is not a loopback address, and without security anyone who reaches it can act as any annotator; configure security.server_secret_key and security.authorized_keys (docs/SECURITY.md), or set security.allow_insecure: true")
    }

    /// True for endpoints only this machine can reach: `ipc://` and `inproc://`, and `tcp://` on a loopback host.
    public static func isLocalEndpoint(_ endpoint: String) -> Bool {
        guard let separator = endpoint.range(of: "://") else { return false }
        let scheme = endpoint[..<separator.lowerBound]
        let address = String(endpoint[separator.upperBound...])
        switch scheme {
        case "ipc", "inproc":
            return true
        case "tcp":
            guard let colon = address.lastIndex(of: ":") else { return false }
            return isLoopbackHost(String(address[..<colon]))
        default:
            return false
        }
    }

    /// Loopback: an IPv4 address in 127.0.0.0/8, the IPv6 address ::1 (brackets allowed), or `localhost`. Anything
    /// else, `*`, `0.0.0.0`, `::` and interface names included, is not.
    public static func isLoopbackHost(_ host: String) -> Bool {
        var name = host
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
        return false
    }
}
