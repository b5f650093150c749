import Foundation
import ProbattnConfig
import ProbattnKeys
import ProbattnSession
import ProbattnZMQ
import Synchronization

/// A secured daemon's keys: its own CURVE key pair (fixed until restart) and the admitted clients (replaced on every
/// SIGHUP). Shared by the ZAP handler and the request check on the socket thread, the HTTP gateway's token check and
/// the reload; every lookup sees the set as it is at that moment.
final class AccessControl: Sendable {
    /// The daemon's key pair (from `security.server_secret_key`).
    let serverKey: SecretKeyFile
    private let keys: Mutex<AuthorizedKeys>
    private let refusals = Mutex(RefusalThrottle(interval: 60))

    init(serverKey: SecretKeyFile, keys: AuthorizedKeys) {
        self.serverKey = serverKey
        self.keys = Mutex(keys)
    }

    /// The keys of a secured config, read and checked; nil when the config runs open. Throws a one-line reason:
    /// libzmq without CURVE, an unreadable or malformed key file, duplicate keys. What `probattnd validate`, the
    /// start and every reload call.
    static func load(_ security: DaemonConfig.Security) throws -> AccessControl? {
        guard security.isEnabled, let secretPath = security.serverSecretKey, let folder = security.authorizedKeys else {
            return nil
        }
        guard ZMQCurve.isAvailable else {
            throw KeyError("security is configured but this libzmq \(ZMQContext.version) was built without CURVE (zmq_has(\"curve\") is false); install a libzmq built with libsodium (Debian's libzmq5 is)")
        }
        let serverKey = try SecretKeyFile.load(path: secretPath)
        return AccessControl(serverKey: serverKey, keys: try AuthorizedKeys.load(directory: folder))
    }

    /// The current client set.
    var current: AuthorizedKeys { keys.withLock { $0 } }

    /// Who sends with this public key (Z85) now; nil when it is not (or no longer) admitted.
    func principal(publicKey: String) -> Principal? { keys.withLock { $0.principal(publicKey: publicKey) } }

    /// Whose HTTP token this is now; nil for an unknown token.
    func principal(token: String) -> Principal? { keys.withLock { $0.principal(token: token) } }

    /// Installs a reloaded set; returns the public keys that were admitted before and are not any more.
    @discardableResult
    func replace(with new: AuthorizedKeys) -> Set<String> {
        keys.withLock { keys in
            let removed = keys.publicKeys.subtracting(new.publicKeys)
            keys = new
            return removed
        }
    }

    /// True when a refused handshake of `key` should be logged now: at most once per key per 60 s.
    func shouldLogRefusal(of key: String, now: Double = AccessControl.now()) -> Bool {
        refusals.withLock { $0.admit(key, now: now) }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// Lets one event per key through per `interval` seconds (for log lines a peer can cause at will). Remembers at most
/// `capacity` keys; when full, entries older than the interval are dropped, and if none are, the oldest half.
struct RefusalThrottle {
    let interval: Double
    var capacity = 10_000
    private var last: [String: Double] = [:]

    init(interval: Double) { self.interval = interval }

    /// True (and remembers `now`) when `key` was not let through within the last `interval` seconds.
    mutating func admit(_ key: String, now: Double) -> Bool {
        if let previous = last[key], now - previous < interval { return false }
        if last.count >= capacity {
            last = last.filter { now - $0.value < interval }
            if last.count >= capacity {
                let keep = last.sorted { $0.value > $1.value }.prefix(capacity / 2)
                last = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
            }
        }
        last[key] = now
        return true
    }

    var count: Int { last.count }
}
