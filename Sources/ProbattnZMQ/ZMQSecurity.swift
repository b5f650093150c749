import CZeroMQ
import Foundation

/// CURVE keys (`zmq_curve(7)`): 32-byte Curve25519 keys, written as 40 characters of Z85 (`zmq_z85_encode`).
public enum ZMQCurve {
    /// True when this libzmq was built with CURVE (Debian's is, through libsodium): `zmq_has("curve")`.
    public static var isAvailable: Bool { zmq_has("curve") == 1 }

    /// The Z85 alphabet (ZeroMQ RFC 32).
    static let z85Alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")

    /// A fresh key pair, both halves in Z85. Throws when libzmq has no CURVE.
    public static func generateKeyPair() throws -> (publicKey: String, secretKey: String) {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw ZMQError("zmq_curve_keypair") }
        return (String(nulTerminated: publicKey), String(nulTerminated: secretKey))
    }

    /// The public key (Z85) of a secret key (Z85); nil when `secretKey` is not 40 characters of Z85.
    public static func publicKey(forSecretKey secretKey: String) -> String? {
        guard decode(secretKey) != nil else { return nil }
        var publicKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicKey, secretKey) == 0 else { return nil }
        return String(nulTerminated: publicKey)
    }

    /// The 32 bytes of a 40-character Z85 key; nil for anything else.
    public static func decode(_ z85: String) -> [UInt8]? {
        guard z85.count == 40, z85.allSatisfy({ z85Alphabet.contains($0) }) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&bytes, z85) != nil else { return nil }
        return bytes
    }

    /// The 40-character Z85 text of a 32-byte key; nil for another length.
    public static func encode(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, bytes, bytes.count) != nil else { return nil }
        return String(nulTerminated: text)
    }
}

/// What a CURVE client needs: the server's public key and its own key pair (32 bytes each).
public struct ZMQCurveClientKeys: Sendable, Equatable {
    public var serverPublicKey: [UInt8]
    public var publicKey: [UInt8]
    public var secretKey: [UInt8]

    public init(serverPublicKey: [UInt8], publicKey: [UInt8], secretKey: [UInt8]) {
        self.serverPublicKey = serverPublicKey
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

extension ZMQSocket {
    private func set(_ option: Int32, _ name: String, bytes: [UInt8]) throws {
        guard zmq_setsockopt(try live("setsockopt"), option, bytes, bytes.count) == 0 else {
            throw ZMQError("setsockopt \(name)")
        }
    }

    /// Makes this socket a CURVE server with `secretKey` (32 bytes). Call before `bind`; every peer must then
    /// handshake with CURVE, and the ZAP handler of the context (if one is bound) decides who is admitted.
    public func setCurveServer(secretKey: [UInt8]) throws {
        try set(ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", int: 1)
        try set(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", bytes: secretKey)
    }

    /// Makes this socket a CURVE client. Call before `connect`.
    public func setCurveClient(_ keys: ZMQCurveClientKeys) throws {
        try set(ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", bytes: keys.serverPublicKey)
        try set(ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", bytes: keys.publicKey)
        try set(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", bytes: keys.secretKey)
    }

    /// The ZAP domain this (server) socket sends in its authentication requests (`ZMQ_ZAP_DOMAIN`).
    public func setZAPDomain(_ domain: String) throws {
        try set(ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", bytes: Array(domain.utf8))
    }

    /// Stops listening on a bound endpoint (give the resolved one, `lastEndpoint()`, for a wildcard port). libzmq
    /// closes the listener and every connection it accepted asynchronously, on its I/O thread: the end is reported
    /// to a monitor as `ZMQ_EVENT_CLOSED`.
    public func unbind(_ endpoint: String) throws {
        guard zmq_unbind(try live("unbind"), endpoint) == 0 else { throw ZMQError("unbind \(endpoint)") }
    }

    /// Publishes this socket's events in `events` (a mask of `ZMQMonitorEvent` values) on a PAIR socket bound at the
    /// `inproc://` `endpoint`; connect a `.pair` socket of the same context there and read them with
    /// `ZMQMonitorEvent.receive(from:)`.
    public func monitor(endpoint: String, events: Int32) throws {
        guard zmq_socket_monitor(try live("monitor"), endpoint, events) == 0 else {
            throw ZMQError("zmq_socket_monitor \(endpoint)")
        }
    }

    /// Receives one whole multipart message, like `receive(dontWait:)`, together with the `User-Id` the context's
    /// ZAP handler gave the sending peer at its handshake (`zmq_msg_gets`); nil when the peer did not authenticate
    /// through ZAP.
    public func receiveWithUserID(dontWait: Bool = false) throws -> (frames: [[UInt8]], userID: String?) {
        let h = try live("receive")
        var frames: [[UInt8]] = []
        var userID: String?
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        while true {
            let rc = zmq_msg_recv(&message, h, frames.isEmpty && dontWait ? ZMQ_DONTWAIT : 0)
            guard rc >= 0 else { throw ZMQError("receive") }
            // A ROUTER's routing-id frame is made locally and carries no properties; the peer's frames do.
            if userID == nil, let property = zmq_msg_gets(&message, "User-Id") {
                userID = String(cString: property)
            }
            let size = zmq_msg_size(&message)
            if size > 0, let data = zmq_msg_data(&message) {
                frames.append([UInt8](UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
            if zmq_msg_more(&message) == 0 { break }
        }
        return (frames, userID)
    }
}

/// Socket events as a monitor reports them (`zmq_socket_monitor(3)`, version 1 format).
public enum ZMQMonitorEvent {
    public static let listening = Int32(ZMQ_EVENT_LISTENING)
    public static let closed = Int32(ZMQ_EVENT_CLOSED)
    public static let handshakeFailedAuth = Int32(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

    /// The next event on a connected monitor PAIR socket: its number and the endpoint it concerns. Throws a timeout
    /// (`isTimeout`) when none arrives within the socket's receive timeout.
    public static func receive(from monitor: ZMQSocket) throws -> (event: Int32, endpoint: String) {
        let frames = try monitor.receive()
        guard frames.count == 2, frames[0].count == 6 else { throw ZMQError("monitor event", errno: EPROTO) }
        let event = Int32(frames[0][0]) | Int32(frames[0][1]) << 8
        return (event, String(decoding: frames[1], as: UTF8.self))
    }
}
