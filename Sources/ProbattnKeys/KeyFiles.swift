import Foundation
import ProbattnSession
import ProbattnZMQ

/// Why a key file, a key folder or a token could not be used: one line naming the file (and line) and what is wrong.
public struct KeyError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The text format every key file uses (docs/SECURITY.md): one `field: value` per line; blank lines and lines
/// starting with `#` are ignored. Every field is known and appears once.
enum KeyText {
    /// The fields of `text`, read strictly; `file` names the file in errors.
    static func fields(_ text: String, file: String, allowed: [String]) throws -> [String: String] {
        var fields: [String: String] = [:]
        // Split on every line end: a CRLF is one Character, which a split on "\n" alone would not cut.
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw KeyError("\(file) line \(index + 1): expected 'field: value'")
            }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard allowed.contains(key) else {
                throw KeyError("\(file) line \(index + 1): unknown field '\(key.prefix(40))'; fields: \(allowed.joined(separator: ", "))")
            }
            guard fields[key] == nil else { throw KeyError("\(file) line \(index + 1): '\(key)' appears twice") }
            guard !value.isEmpty else { throw KeyError("\(file) line \(index + 1): '\(key)' has no value") }
            fields[key] = value
        }
        return fields
    }

    /// A file's text; key files are small, so anything over 64 KiB is refused.
    static func read(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KeyError("\(path): no such file")
        }
        guard !isDirectory.boolValue else { throw KeyError("\(path): is a folder, not a key file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyError("\(path): cannot be read (permission denied?)")
        }
        guard data.count <= 65_536 else { throw KeyError("\(path): \(data.count) bytes is too large for a key file") }
        guard let text = String(data: data, encoding: .utf8) else { throw KeyError("\(path): not UTF-8 text") }
        return text
    }

    /// A Z85 key field as its 32 bytes.
    static func key(_ fields: [String: String], _ name: String, file: String) throws -> (z85: String, bytes: [UInt8]) {
        guard let text = fields[name] else { throw KeyError("\(file): missing '\(name)'") }
        guard let bytes = ZMQCurve.decode(text) else {
            throw KeyError("\(file): '\(name)' is not a CURVE key (40 characters of Z85)")
        }
        return (text, bytes)
    }
}

/// The names `probattn keys generate` accepts: they become file names and the annotator identity, so 1–64 of
/// `A–Z a–z 0–9 . _ -`, not starting with `.` or `-`.
public enum KeyName {
    public static func validate(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...64).contains(name.count), name.allSatisfy({ allowed.contains($0) }),
              let first = name.first, first != ".", first != "-" else {
            throw KeyError("'\(name.prefix(80))' is not a valid key name: use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
    }
}

/// `NAME.key`: a public key, shareable. For a client it names the annotator, its role and (for HTTP) the SHA-256 of
/// its token; the daemon admits the clients whose `.key` files are in `security.authorized_keys`. The daemon's own
/// `.key` (from `probattn keys generate NAME --server`) has only the public key: clients need it to connect.
public struct PublicKeyFile: Sendable, Equatable {
    public static let fileExtension = "key"
    public var publicKey: String
    public var annotator: String?
    public var role: Principal.Role?
    /// Lowercase hex SHA-256 of the HTTP token; nil when the key has no token.
    public var tokenSHA256: String?

    public init(publicKey: String, annotator: String?, role: Principal.Role?, tokenSHA256: String?) {
        self.publicKey = publicKey
        self.annotator = annotator
        self.role = role
        self.tokenSHA256 = tokenSHA256
    }

    /// Parses a `.key` file's text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws -> PublicKeyFile {
        let fields = try KeyText.fields(text, file: file, allowed: ["public_key", "annotator", "role", "token_sha256"])
        let key = try KeyText.key(fields, "public_key", file: file)
        var role: Principal.Role?
        if let word = fields["role"] {
            guard let parsed = Principal.Role(rawValue: word) else {
                throw KeyError("\(file): role '\(word.prefix(40))' is not one of: \(Principal.Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            role = parsed
        }
        if let annotator = fields["annotator"] {
            do { try KeyName.validate(annotator) } catch { throw KeyError("\(file): annotator: \(error)") }
        }
        guard (fields["annotator"] == nil) == (role == nil) else {
            throw KeyError("\(file): a client key needs both 'annotator' and 'role' (a server key has neither)")
        }
        if let hash = fields["token_sha256"] {
            guard hash.count == 64, hash.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw KeyError("\(file): token_sha256 must be 64 lowercase hex digits")
            }
        }
        return PublicKeyFile(publicKey: key.z85, annotator: fields["annotator"], role: role,
                             tokenSHA256: fields["token_sha256"])
    }

    public static func load(path: String) throws -> PublicKeyFile { try parse(try KeyText.read(path), file: path) }

    /// The file's text.
    public func render() -> String {
        var lines = annotator == nil
            ? ["# probattn server public key: clients connect with it (docs/SECURITY.md)"]
            : ["# probattn client public key: copy it into the daemon's security.authorized_keys folder (docs/SECURITY.md)"]
        lines.append("public_key: \(publicKey)")
        if let annotator { lines.append("annotator: \(annotator)") }
        if let role { lines.append("role: \(role.rawValue)") }
        if let tokenSHA256 { lines.append("token_sha256: \(tokenSHA256)") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `NAME.key_secret`: a key pair, private to its owner (mode 0600). A client connects with it; the daemon's is
/// `security.server_secret_key`.
public struct SecretKeyFile: Sendable, Equatable {
    public static let fileExtension = "key_secret"
    public var publicKey: String
    public var secretKey: String
    /// The annotator the key belongs to (nil for a server key): client tools act as this annotator.
    public var annotator: String?

    public init(publicKey: String, secretKey: String, annotator: String?) {
        self.publicKey = publicKey
        self.secretKey = secretKey
        self.annotator = annotator
    }

    public var publicKeyBytes: [UInt8] { ZMQCurve.decode(publicKey) ?? [] }
    public var secretKeyBytes: [UInt8] { ZMQCurve.decode(secretKey) ?? [] }

    /// Parses a `.key_secret` file's text; `public_key` is optional but, when given, must belong to `secret_key`.
    public static func parse(_ text: String, file: String) throws -> SecretKeyFile {
        let fields = try KeyText.fields(text, file: file, allowed: ["public_key", "secret_key", "annotator"])
        let secret = try KeyText.key(fields, "secret_key", file: file)
        guard let derived = ZMQCurve.publicKey(forSecretKey: secret.z85) else {
            throw KeyError("\(file): cannot derive the public key (libzmq without CURVE?)")
        }
        if fields["public_key"] != nil {
            let given = try KeyText.key(fields, "public_key", file: file)
            guard given.z85 == derived else {
                throw KeyError("\(file): public_key does not belong to secret_key")
            }
        }
        if let annotator = fields["annotator"] {
            do { try KeyName.validate(annotator) } catch { throw KeyError("\(file): annotator: \(error)") }
        }
        return SecretKeyFile(publicKey: derived, secretKey: secret.z85, annotator: fields["annotator"])
    }

    public static func load(path: String) throws -> SecretKeyFile { try parse(try KeyText.read(path), file: path) }

    public func render() -> String {
        var lines = ["# probattn secret key: keep it private (mode 0600); never copy it to the daemon's authorized_keys",
                     "public_key: \(publicKey)", "secret_key: \(secretKey)"]
        if let annotator { lines.append("annotator: \(annotator)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// True when group or others may read the file at `path` (a secret key should be 0600 or 0400).
    public static func isExposed(path: String) -> Bool {
        guard let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int else {
            return false
        }
        return mode & 0o077 != 0
    }
}

/// HTTP tokens: 32 random bytes as 64 lowercase hex digits. The daemon keeps only their SHA-256 (`token_sha256` in
/// the `.key` file), so a token is shown once, when it is generated.
public enum HTTPToken {
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// The lowercase hex SHA-256 of a token's text.
    public static func hash(_ token: String) -> String { SHA256.hex(Array(token.utf8)) }
}
