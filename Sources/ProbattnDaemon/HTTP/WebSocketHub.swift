import Foundation
import ProbattnJSON
import ProbattnSession
import ProbattnWire
import Synchronization

/// The WebSocket connections of every image and what goes out on them, in order: replies, mask updates and presence.
/// Each connection has one outbound queue (an `AsyncStream` its writer task drains), so one image's updates reach a
/// connection in version order and a reply before the update it caused (the dispatcher calls a request's completion
/// before its update listeners, on the same worker).
///
/// Called from worker threads (replies, `publish`) and from the connections' tasks (`join`, `leave`); everything is
/// under one lock, which is held only to enqueue.
final class WebSocketHub: Sendable {
    /// One message to a client: a text frame (JSON) or a binary frame (a PNG).
    enum Outbound: Sendable {
        case text(String)
        case binary([UInt8])
    }

    /// One client connected to one image.
    final class Connection: Sendable {
        let id: Int
        let imageID: String
        /// The name the client gave (`?annotator=` on the URL); nil for an anonymous watcher.
        let annotator: String?
        fileprivate let continuation: AsyncStream<Outbound>.Continuation
        /// Set (under the hub's lock) when the client fell more than `queueLimit` messages behind; the connection is
        /// then closed.
        fileprivate let overflowed = Atomic(false)
        /// The token the client authenticated with (a secured daemon); nil on an open one.
        let token: String?
        /// Set (under the hub's lock) by `revoke` when the token is no longer admitted; the connection is then closed.
        fileprivate let revoked = Atomic(false)

        fileprivate init(id: Int, imageID: String, annotator: String?, token: String?,
                         continuation: AsyncStream<Outbound>.Continuation) {
            self.id = id
            self.imageID = imageID
            self.annotator = annotator
            self.token = token
            self.continuation = continuation
        }

        var wasOverflowed: Bool { overflowed.load(ordering: .acquiring) }
        var wasRevoked: Bool { revoked.load(ordering: .acquiring) }
    }

    /// Messages a connection may have queued before it counts as too slow and is closed.
    static let queueLimit = 4096

    private struct State {
        var images: [String: [Int: Connection]] = [:]
        var nextID = 0
        var total = 0
    }

    private let state = Mutex(State())

    /// Registers a client of `imageID` and sends everyone on the image (the new client included) the presence
    /// message. Returns the connection and the stream its writer task must send, in order.
    func join(imageID: String, annotator: String?, token: String? = nil) -> (Connection, AsyncStream<Outbound>) {
        let (stream, continuation) = AsyncStream<Outbound>.makeStream(
            bufferingPolicy: .bufferingOldest(Self.queueLimit))
        let connection = state.withLock { state in
            state.nextID += 1
            state.total += 1
            let connection = Connection(id: state.nextID, imageID: imageID, annotator: annotator, token: token,
                                        continuation: continuation)
            state.images[imageID, default: [:]][connection.id] = connection
            Self.broadcastPresence(imageID, in: state)
            return connection
        }
        return (connection, stream)
    }

    /// Removes a client (when its socket closed), ends its stream, and tells the others of the image.
    func leave(_ connection: Connection) {
        state.withLock { state in
            guard state.images[connection.imageID]?.removeValue(forKey: connection.id) != nil else { return }
            state.total -= 1
            connection.continuation.finish()
            if state.images[connection.imageID]?.isEmpty == true {
                state.images[connection.imageID] = nil
            } else {
                Self.broadcastPresence(connection.imageID, in: state)
            }
        }
    }

    /// Queues messages for one connection (a reply: its JSON, then any PNG).
    func send(_ connection: Connection, _ messages: [Outbound]) {
        state.withLock { _ in Self.enqueue(messages, on: connection) }
    }

    /// Queues a mask update for every client of its image: the update's JSON (as on the PUB socket), then its PNG
    /// when the session publishes one. Called by the dispatcher's update listener, in version order per image.
    func publish(_ update: MaskUpdate) {
        state.withLock { state in
            guard let connections = state.images[update.imageID], !connections.isEmpty else { return }
            var messages: [Outbound] = [.text(String(decoding: WireEncoding.update(update).serialized(), as: UTF8.self))]
            if let png = update.png { messages.append(.binary(png)) }
            for connection in connections.values { Self.enqueue(messages, on: connection) }
        }
    }

    /// Ends the queues of the connections whose token `isRevoked` says is no longer admitted (after a reload of the
    /// keys); their writer tasks then close them. Returns how many were revoked.
    @discardableResult
    func revoke(_ isRevoked: (String) -> Bool) -> Int {
        state.withLock { state in
            var count = 0
            for connection in state.images.values.flatMap(\.values) {
                guard let token = connection.token, !connection.wasRevoked, isRevoked(token) else { continue }
                connection.revoked.store(true, ordering: .releasing)
                connection.continuation.finish()
                count += 1
            }
            return count
        }
    }

    /// Clients connected now, over all images.
    var connectionCount: Int { state.withLock { $0.total } }

    /// The presence message of an image: who is connected to its WebSocket.
    static func presence(imageID: String, connections: [Connection]) -> JSONValue {
        let names = Set(connections.compactMap(\.annotator)).sorted()
        return ["protocol": .int(probattnProtocolVersion), "kind": "presence", "image_id": .string(imageID),
                "annotators": .array(names.map(JSONValue.string)), "connections": .int(connections.count)]
    }

    // MARK: under the lock

    private static func broadcastPresence(_ imageID: String, in state: State) {
        let connections = Array((state.images[imageID] ?? [:]).values).sorted { $0.id < $1.id }
        let text = String(decoding: presence(imageID: imageID, connections: connections).serialized(),
                          as: UTF8.self)
        for connection in connections { enqueue([.text(text)], on: connection) }
    }

    private static func enqueue(_ messages: [Outbound], on connection: Connection) {
        guard !connection.wasOverflowed, !connection.wasRevoked else { return }
        for message in messages {
            if case .dropped = connection.continuation.yield(message) {
                connection.overflowed.store(true, ordering: .releasing)
                connection.continuation.finish()
                return
            }
        }
    }
}
