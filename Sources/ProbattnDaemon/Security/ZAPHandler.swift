import Foundation
import Logging
import ProbattnSession
import ProbattnZMQ

/// The daemon's ZAP handler (ZeroMQ RFC 27): libzmq asks it, for every CURVE handshake on the daemon's sockets,
/// whether the client's public key may connect. It is a REP socket bound at `inproc://zeromq.zap.01` in the sockets'
/// context, created and polled by the socket thread (before the request and results sockets are bound, so that no
/// handshake ever passes without it). A key in the current `AccessControl` set is admitted with status 200 and the
/// key itself (Z85) as the User-Id, which libzmq then attaches to every message of that connection; any other key
/// gets 400 and the handshake fails, so the peer receives nothing.
final class ZAPHandler {
    static let endpoint = "inproc://zeromq.zap.01"
    /// The ZAP domain the daemon's sockets send (`ZMQ_ZAP_DOMAIN`).
    static let domain = "probattn"

    let socket: ZMQSocket
    private let access: AccessControl
    private let logger: Logger

    init(context: ZMQContext, access: AccessControl, logger: Logger) throws {
        socket = try context.socket(.rep)
        try socket.setLinger(0)
        do { try socket.bind(Self.endpoint) } catch {
            throw ProtocolError(.internal, "cannot bind the ZAP handler at \(Self.endpoint): \(error)")
        }
        self.access = access
        self.logger = logger
    }

    /// Called by the socket thread when `socket` is readable: answers every request waiting.
    func answerPending() {
        while true {
            let request: [[UInt8]]
            do { request = try socket.receive(dontWait: true) } catch { return }
            let answer = Self.answer(request, lookup: access.principal(publicKey:))
            if let refused = answer.refused, access.shouldLogRefusal(of: refused.key) {
                logger.warning("Handshake refused: unknown key (logged once per key per 60 s)",
                               metadata: ["key": "\(refused.key)", "address": "\(refused.address)",
                                          "reason": "\(refused.reason)"])
            }
            do { try socket.send(answer.reply) } catch {
                logger.error("ZAP reply not sent", metadata: ["error": "\(error)"])
            }
        }
    }

    /// A refused handshake: the client's key (Z85, or a description when there is none), the peer's address and why.
    struct Refusal: Equatable {
        var key: String
        var address: String
        var reason: String
    }

    /// The reply frames to one ZAP request (`version "1.0"`, request id, domain, address, identity, mechanism,
    /// credentials…), given who holds each admitted key now. `refused` is set when the handshake is refused.
    static func answer(_ request: [[UInt8]], lookup: (String) -> Principal?) -> (reply: [[UInt8]], refused: Refusal?) {
        func text(_ frame: [UInt8]) -> String { String(decoding: frame, as: UTF8.self) }
        let version = Array("1.0".utf8)
        let requestID = request.count > 1 ? request[1] : []
        func reply(_ status: String, _ statusText: String, userID: String = "") -> [[UInt8]] {
            [version, requestID, Array(status.utf8), Array(statusText.utf8), Array(userID.utf8), []]
        }
        guard request.count >= 6, request[0] == version else {
            return (reply("500", "malformed ZAP request"), nil)
        }
        let address = text(request[3])
        let mechanism = text(request[5])
        guard mechanism == "CURVE", request.count == 7, let key = ZMQCurve.encode(request[6]) else {
            return (reply("400", "CURVE required"),
                    Refusal(key: "(mechanism \(mechanism.prefix(16)))", address: address, reason: "not CURVE"))
        }
        guard lookup(key) != nil else {
            return (reply("400", "key not authorized"), Refusal(key: key, address: address, reason: "not in authorized_keys"))
        }
        return (reply("200", "OK", userID: key), nil)
    }
}
