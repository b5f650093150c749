import Foundation
import ProbattnZMQ
import ProbattnJSON
import ProbattnSession

/// Why a client call failed on the client side (the daemon's own error replies are `ProbattnReply`s with `ok ==
/// false`, not thrown).
public enum ProbattnClientError: Error, CustomStringConvertible, Sendable {
    case timeout(String)
    case malformedReply(String)
    case daemonError(code: String, message: String)

    public var description: String {
        switch self {
        case .timeout(let what): return "timed out waiting for \(what)"
        case .malformedReply(let why): return "malformed reply: \(why)"
        case .daemonError(let code, let message): return "\(code): \(message)"
        }
    }
}

/// A reply: the JSON header and any further frames (a PNG for `get_mask`).
public struct ProbattnReply: Sendable {
    public var header: JSONValue
    public var frames: [[UInt8]]
    public var ok: Bool { header["ok"]?.boolValue == true }
    public var requestID: String? { header["request_id"]?.stringValue }
    public var errorCode: String? { header["error"]?["code"]?.stringValue }
    public var errorMessage: String? { header["error"]?["message"]?.stringValue }
    public subscript(key: String) -> JSONValue? { header[key] }

    /// Self when `ok`, else throws the daemon's error.
    @discardableResult
    public func checked() throws -> ProbattnReply {
        guard ok else {
            throw ProbattnClientError.daemonError(code: errorCode ?? "?", message: errorMessage ?? "\(header)")
        }
        return self
    }
}

/// The client side of the protocol (docs/PROTOCOL.md) over a DEALER socket: one object per thread. Requests can be
/// pipelined with `send` + `receive`, or made one at a time with `request`. Used by `probattn segment`, the latency
/// benchmark and the integration tests.
/// Unchecked `Sendable`: a ZeroMQ socket with unguarded `timeout` and counter; safe because a client is used by one
/// thread at a time.
public final class ProbattnClient: @unchecked Sendable {
    public let socket: ZMQSocket
    private let context: ZMQContext
    /// Seconds to wait for a reply.
    public var timeout: Double
    private var counter = 0
    private let prefix = String(UInt64.random(in: 0..<UInt64.max), radix: 36)

    /// Connects a DEALER to `endpoint`; with `curve`, as a CURVE client (a secured daemon, docs/SECURITY.md).
    public init(endpoint: String, context: ZMQContext? = nil, timeout: Double = 30,
                curve: ZMQCurveClientKeys? = nil) throws {
        self.context = try context ?? ZMQContext()
        self.timeout = timeout
        socket = try self.context.socket(.dealer)
        try socket.setLinger(0)
        if let curve { try socket.setCurveClient(curve) }
        try socket.connect(endpoint)
    }

    /// A fresh request id.
    public func nextRequestID() -> String {
        counter += 1
        return "\(prefix)-\(counter)"
    }

    /// Sends one request without waiting; returns its request id.
    @discardableResult
    public func send(_ kind: String, _ fields: [String: JSONValue] = [:], payloads: [[UInt8]] = [],
                     requestID: String? = nil) throws -> String {
        let id = requestID ?? nextRequestID()
        var header = fields
        header["protocol"] = header["protocol"] ?? .int(probattnProtocolVersion)
        header["request_id"] = .string(id)
        header["kind"] = .string(kind)
        try socket.send([JSONValue.object(header).serialized()] + payloads)
        return id
    }

    /// Sends raw frames as they are (for tests of malformed requests).
    public func sendRaw(_ frames: [[UInt8]]) throws { try socket.send(frames) }

    /// Receives the next reply, whatever its request id.
    public func receive(timeout: Double? = nil) throws -> ProbattnReply {
        let wait = timeout ?? self.timeout
        guard try socket.waitReadable(timeoutMilliseconds: Int(wait * 1000)) else {
            throw ProbattnClientError.timeout("a reply (\(wait) s)")
        }
        let frames = try socket.receive()
        guard let first = frames.first, let header = JSONValue.parse(first), header.objectValue != nil else {
            throw ProbattnClientError.malformedReply("the first frame is not a JSON object")
        }
        return ProbattnReply(header: header, frames: Array(frames.dropFirst()))
    }

    /// Sends a request and waits for its reply (replies to other ids arriving meanwhile are an error: use `send` and
    /// `receive` to pipeline).
    public func request(_ kind: String, _ fields: [String: JSONValue] = [:], payloads: [[UInt8]] = [],
                        timeout: Double? = nil) throws -> ProbattnReply {
        let id = try send(kind, fields, payloads: payloads)
        let reply = try receive(timeout: timeout)
        guard reply.requestID == id else {
            throw ProbattnClientError.malformedReply("expected the reply to \(id), got one to \(reply.requestID ?? "null")")
        }
        return reply
    }

    // MARK: typed helpers

    public func openImage(_ imageID: String, bytes: [UInt8], classes: [String]? = nil, annotator: String? = nil,
                          publishPNG: Bool = false) throws -> ProbattnReply {
        var fields: [String: JSONValue] = ["image_id": .string(imageID)]
        if let classes { fields["classes"] = .array(classes.map(JSONValue.string)) }
        if let annotator { fields["annotator"] = .string(annotator) }
        if publishPNG { fields["publish_png"] = true }
        return try request("open_image", fields, payloads: [bytes])
    }

    public func feedback(_ imageID: String, annotator: String, clicks: [WireClick]) throws -> ProbattnReply {
        try request("feedback", Self.feedbackFields(imageID, annotator: annotator, clicks: clicks))
    }

    public static func feedbackFields(_ imageID: String, annotator: String, clicks: [WireClick])
        -> [String: JSONValue] {
        ["image_id": .string(imageID), "annotator": .string(annotator),
         "clicks": .array(clicks.map { ["x": .int($0.x), "y": .int($0.y), "class": .string($0.className)] })]
    }

    public func undo(_ imageID: String, annotator: String) throws -> ProbattnReply {
        try request("undo", ["image_id": .string(imageID), "annotator": .string(annotator)])
    }

    public func getMask(_ imageID: String, format: MaskFormat = .rle) throws -> ProbattnReply {
        try request("get_mask", ["image_id": .string(imageID), "format": .string(format.rawValue)])
    }

    public func closeImage(_ imageID: String) throws -> ProbattnReply {
        try request("close_image", ["image_id": .string(imageID)])
    }
}

/// A subscriber to mask updates (the PUB socket).
public final class ProbattnSubscriber: Sendable {
    public let socket: ZMQSocket
    private let context: ZMQContext

    /// Connects a SUB to `endpoint`; with `curve`, as a CURVE client.
    public init(endpoint: String, context: ZMQContext? = nil, curve: ZMQCurveClientKeys? = nil) throws {
        self.context = try context ?? ZMQContext()
        socket = try self.context.socket(.sub)
        try socket.setLinger(0)
        if let curve { try socket.setCurveClient(curve) }
        try socket.connect(endpoint)
    }

    /// Subscribes to one image's updates exactly (`"mask/" + id + NUL`), or to every image with nil.
    public func subscribe(imageID: String?) throws {
        try socket.subscribe(imageID.map { Array("mask/\($0)".utf8) + [0] } ?? Array("mask/".utf8))
    }

    /// The next update: topic, JSON header, optional PNG. Throws a timeout when none arrives in time.
    public func receive(timeout: Double) throws -> (topic: [UInt8], header: JSONValue, png: [UInt8]?) {
        guard try socket.waitReadable(timeoutMilliseconds: Int(timeout * 1000)) else {
            throw ProbattnClientError.timeout("a mask update (\(timeout) s)")
        }
        let frames = try socket.receive()
        guard frames.count >= 2, let header = JSONValue.parse(frames[1]) else {
            throw ProbattnClientError.malformedReply("an update needs a topic and a JSON header frame")
        }
        return (frames[0], header, frames.count > 2 ? frames[2] : nil)
    }
}
