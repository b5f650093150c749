import Foundation
import ProbattnSession
import ProbattnZMQ

/// The clients a secured daemon admits: every `NAME.key` file of the `security.authorized_keys` folder (other files,
/// such as `.key_secret` and `.token`, and hidden files are ignored). Loaded at start and on every SIGHUP; the ZAP
/// handler admits a CURVE handshake only for a public key in the set, each request is checked against the set as it
/// is then, and each HTTP token is looked up by its SHA-256.
public struct AuthorizedKeys: Sendable, Equatable {
    /// One admitted client.
    public struct Entry: Sendable, Equatable {
        public var principal: Principal
        /// Z85.
        public var publicKey: String
        public var tokenSHA256: String?
        /// The file it was read from (for `probattn keys list` and logs).
        public var file: String
    }

    public private(set) var entries: [Entry]
    private var byPublicKey: [String: Int]
    private var byTokenHash: [String: Int]

    public init(entries: [Entry]) throws {
        self.entries = entries
        byPublicKey = [:]
        byTokenHash = [:]
        var names: [String: String] = [:]
        for (index, entry) in entries.enumerated() {
            if let other = byPublicKey[entry.publicKey] {
                throw KeyError("\(entry.file): the same public key as \(entries[other].file)")
            }
            if let other = names[entry.principal.identity] {
                throw KeyError("\(entry.file): annotator '\(entry.principal.identity)' already has a key (\(other)); one key per annotator")
            }
            byPublicKey[entry.publicKey] = index
            names[entry.principal.identity] = entry.file
            if let hash = entry.tokenSHA256 {
                if let other = byTokenHash[hash] {
                    throw KeyError("\(entry.file): the same token as \(entries[other].file)")
                }
                byTokenHash[hash] = index
            }
        }
    }

    /// Reads every `*.key` file of `directory`, in name order. Every one must be a client key (with `annotator` and
    /// `role`); public keys, annotators and tokens must be distinct. Throws the first problem, naming the file.
    public static func load(directory: String) throws -> AuthorizedKeys {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw KeyError("authorized_keys folder \(directory) does not exist")
        }
        guard isDirectory.boolValue else { throw KeyError("authorized_keys \(directory) is not a folder") }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw KeyError("authorized_keys folder \(directory) cannot be read: \(error.localizedDescription)")
        }
        var entries: [Entry] = []
        for name in names.sorted() where !name.hasPrefix(".") && name.hasSuffix("." + PublicKeyFile.fileExtension) {
            let path = (directory as NSString).appendingPathComponent(name)
            let file = try PublicKeyFile.load(path: path)
            guard let annotator = file.annotator, let role = file.role else {
                throw KeyError("\(path): a server key (no annotator, no role) does not belong in authorized_keys")
            }
            entries.append(Entry(principal: Principal(identity: annotator, role: role), publicKey: file.publicKey,
                                 tokenSHA256: file.tokenSHA256, file: path))
        }
        return try AuthorizedKeys(entries: entries)
    }

    /// The client with this public key (Z85), if admitted.
    public func entry(publicKey: String) -> Entry? { byPublicKey[publicKey].map { entries[$0] } }

    /// Who sends with this public key (Z85); nil when the key is not in the set.
    public func principal(publicKey: String) -> Principal? { entry(publicKey: publicKey)?.principal }

    /// Whose HTTP token this is; nil for an unknown token.
    public func principal(token: String) -> Principal? {
        byTokenHash[HTTPToken.hash(token)].map { entries[$0].principal }
    }

    /// Every public key (Z85) in the set.
    public var publicKeys: Set<String> { Set(byPublicKey.keys) }
}

/// `probattn keys generate`: writes a new key pair (and, for a client, a token) into a folder.
public enum KeyGenerator {
    /// What was written.
    public struct Generated: Sendable {
        public var publicKeyFile: String
        public var secretKeyFile: String
        /// nil for a server key.
        public var tokenFile: String?
        public var token: String?
        public var publicKey: String
    }

    /// Writes `NAME.key_secret` (0600), `NAME.key` (0644) and, unless `role` is nil (a server key), `NAME.token`
    /// (0600) into `directory`, which is created (0700) when missing. Refuses to overwrite any existing file.
    public static func generate(name: String, role: Principal.Role?, directory: String) throws -> Generated {
        try KeyName.validate(name)
        guard ZMQCurve.isAvailable else {
            throw KeyError("this libzmq was built without CURVE (zmq_has(\"curve\") is false): no keys can be made")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw KeyError("cannot create \(directory): \(error.localizedDescription)")
        }
        func path(_ ext: String) -> String { (directory as NSString).appendingPathComponent("\(name).\(ext)") }
        let secretPath = path(SecretKeyFile.fileExtension), publicPath = path(PublicKeyFile.fileExtension)
        let tokenPath = role == nil ? nil : path("token")
        for existing in [secretPath, publicPath, tokenPath].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: existing) {
            throw KeyError("\(existing) exists; remove it first (keys are never overwritten)")
        }
        let pair = try ZMQCurve.generateKeyPair()
        let token = role == nil ? nil : HTTPToken.generate()
        let annotator = role == nil ? nil : name
        try writeFile(SecretKeyFile(publicKey: pair.publicKey, secretKey: pair.secretKey, annotator: annotator).render(),
                  to: secretPath, mode: 0o600)
        if let tokenPath, let token { try writeFile(token + "\n", to: tokenPath, mode: 0o600) }
        try writeFile(PublicKeyFile(publicKey: pair.publicKey, annotator: annotator, role: role,
                                tokenSHA256: token.map(HTTPToken.hash)).render(),
                  to: publicPath, mode: 0o644)
        return Generated(publicKeyFile: publicPath, secretKeyFile: secretPath, tokenFile: tokenPath, token: token,
                         publicKey: pair.publicKey)
    }

    /// Creates `path` (never replacing a file or following a link) with exactly `mode`, and writes `text`.
    static func writeFile(_ text: String, to path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw KeyError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw KeyError("cannot set the mode of \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw KeyError("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }
}

/// A token file (`NAME.token`): the token on its first line.
public enum TokenFile {
    public static func load(path: String) throws -> String {
        let token = try KeyText.read(path).trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count == 64, token.allSatisfy(\.isHexDigit) else {
            throw KeyError("\(path): not a probattn token (64 hex digits)")
        }
        return token
    }
}

/// The keys a client tool connects to a secured daemon with (`--server-key FILE --client-key FILE`).
public enum ClientKeyFiles {
    /// `serverKey`: the daemon's public `.key` file; `clientKey`: the client's `.key_secret` file. Returns the CURVE
    /// settings and the annotator the client key names (nil for a key without one).
    public static func load(serverKey: String, clientKey: String) throws
        -> (keys: ZMQCurveClientKeys, annotator: String?) {
        guard ZMQCurve.isAvailable else {
            throw KeyError("this libzmq was built without CURVE (zmq_has(\"curve\") is false)")
        }
        let server = try PublicKeyFile.load(path: serverKey)
        let client = try SecretKeyFile.load(path: clientKey)
        guard let serverBytes = ZMQCurve.decode(server.publicKey) else { throw KeyError("\(serverKey): bad public_key") }
        return (ZMQCurveClientKeys(serverPublicKey: serverBytes, publicKey: client.publicKeyBytes,
                                   secretKey: client.secretKeyBytes), client.annotator)
    }
}
