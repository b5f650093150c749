import CZeroMQ
import Foundation

/// A libzmq failure: the call that failed, errno and libzmq's own text (`zmq_strerror`).
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let errno: Int32
    public var message: String { String(cString: zmq_strerror(errno)) }

    public init(_ operation: String, errno: Int32 = zmq_errno()) {
        self.operation = operation
        self.errno = errno
    }

    /// True when the call timed out or would have blocked (EAGAIN).
    public var isTimeout: Bool { errno == EAGAIN }
    /// True when the context was terminated under the socket (ETERM).
    public var isTerminated: Bool { errno == ETERM }
    public var description: String { "\(operation): \(message) (errno \(errno))" }
}

/// A ZeroMQ context: thread-safe, owns the I/O threads. Create one per process (or per test) and keep it alive as long
/// as its sockets; `deinit` terminates it, which waits for sockets to close.
/// Unchecked `Sendable`: a libzmq context is thread-safe (zmq_ctx_* may be called from any thread); the handle is a
/// `let`.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        guard let handle = zmq_ctx_new() else { throw ZMQError("zmq_ctx_new") }
        self.handle = handle
    }

    deinit { zmq_ctx_term(handle) }

    /// Creates a socket. Sockets are NOT thread-safe: use each one from one thread only.
    public func socket(_ type: ZMQSocketType) throws -> ZMQSocket {
        guard let raw = zmq_socket(handle, type.rawValue) else { throw ZMQError("zmq_socket(\(type))") }
        return ZMQSocket(handle: raw, type: type, context: self)
    }

    /// libzmq's version, e.g. "4.3.4".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}

/// The socket patterns this project uses.
public enum ZMQSocketType: Int32, Sendable, CustomStringConvertible {
    case pair = 0, pub = 1, sub = 2, req = 3, rep = 4, dealer = 5, router = 6, pull = 7, push = 8

    public var description: String {
        switch self {
        case .pair: return "PAIR"
        case .pub: return "PUB"
        case .sub: return "SUB"
        case .req: return "REQ"
        case .rep: return "REP"
        case .dealer: return "DEALER"
        case .router: return "ROUTER"
        case .pull: return "PULL"
        case .push: return "PUSH"
        }
    }
}

/// One ZeroMQ socket. Not thread-safe: create, use and close it on one thread (the class is `@unchecked Sendable`
/// only so that it can be handed to the thread that will own it). Closed on `deinit` or `close()`.
public final class ZMQSocket: @unchecked Sendable {
    public let type: ZMQSocketType
    private var handle: UnsafeMutableRawPointer?
    // Keeps the context alive while the socket is open (zmq_ctx_term would block otherwise).
    private let context: ZMQContext

    init(handle: UnsafeMutableRawPointer, type: ZMQSocketType, context: ZMQContext) {
        self.handle = handle
        self.type = type
        self.context = context
    }

    deinit { close() }

    /// Closes the socket; later calls throw ENOTSOCK. Idempotent.
    public func close() {
        if let h = handle { zmq_close(h) }
        handle = nil
    }

    func live(_ operation: String) throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZMQError(operation, errno: ENOTSOCK) }
        return h
    }

    // MARK: endpoints

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(try live("bind"), endpoint) == 0 else { throw ZMQError("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(try live("connect"), endpoint) == 0 else { throw ZMQError("connect \(endpoint)") }
    }

    /// The endpoint actually bound last (resolves `tcp://127.0.0.1:*` to the chosen port).
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        guard zmq_getsockopt(try live("getsockopt"), ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
            throw ZMQError("getsockopt ZMQ_LAST_ENDPOINT")
        }
        return String(nulTerminated: buffer)
    }

    // MARK: options

    func set(_ option: Int32, _ name: String, int value: Int32) throws {
        var v = value
        guard zmq_setsockopt(try live("setsockopt"), option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError("setsockopt \(name)")
        }
    }

    /// Milliseconds to keep unsent messages after close (0 = drop at once, -1 = forever).
    public func setLinger(_ milliseconds: Int32) throws { try set(ZMQ_LINGER, "ZMQ_LINGER", int: milliseconds) }
    /// Largest inbound frame in bytes; a peer sending a bigger one is disconnected (-1 = no limit).
    public func setMaxMessageSize(_ bytes: Int64) throws {
        var v = bytes
        guard zmq_setsockopt(try live("setsockopt"), ZMQ_MAXMSGSIZE, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError("setsockopt ZMQ_MAXMSGSIZE")
        }
    }
    public func setSendHighWaterMark(_ messages: Int32) throws { try set(ZMQ_SNDHWM, "ZMQ_SNDHWM", int: messages) }
    public func setReceiveHighWaterMark(_ messages: Int32) throws { try set(ZMQ_RCVHWM, "ZMQ_RCVHWM", int: messages) }
    /// ROUTER only: fail with EHOSTUNREACH instead of silently dropping a message for an unknown peer.
    public func setRouterMandatory(_ on: Bool) throws {
        try set(ZMQ_ROUTER_MANDATORY, "ZMQ_ROUTER_MANDATORY", int: on ? 1 : 0)
    }
    /// Receive timeout in milliseconds (-1 = block forever); a timed-out receive throws a `ZMQError` with `isTimeout`.
    public func setReceiveTimeout(_ milliseconds: Int32) throws {
        try set(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO", int: milliseconds)
    }
    public func setSendTimeout(_ milliseconds: Int32) throws { try set(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO", int: milliseconds) }

    /// REQ only: put a request-id frame (and the delimiter) in front of every request and accept only the reply that
    /// carries it back (`ZMQ_REQ_CORRELATE`); usually together with `setRequestRelaxed`.
    public func setRequestCorrelate(_ on: Bool) throws {
        try set(ZMQ_REQ_CORRELATE, "ZMQ_REQ_CORRELATE", int: on ? 1 : 0)
    }
    /// REQ only: allow a new request before the previous reply arrived (`ZMQ_REQ_RELAXED`).
    public func setRequestRelaxed(_ on: Bool) throws {
        try set(ZMQ_REQ_RELAXED, "ZMQ_REQ_RELAXED", int: on ? 1 : 0)
    }

    /// SUB only: receive messages whose first frame starts with `prefix` (empty = everything).
    public func subscribe(_ prefix: [UInt8]) throws {
        guard zmq_setsockopt(try live("setsockopt"), ZMQ_SUBSCRIBE, prefix, prefix.count) == 0 else {
            throw ZMQError("setsockopt ZMQ_SUBSCRIBE")
        }
    }

    public func unsubscribe(_ prefix: [UInt8]) throws {
        guard zmq_setsockopt(try live("setsockopt"), ZMQ_UNSUBSCRIBE, prefix, prefix.count) == 0 else {
            throw ZMQError("setsockopt ZMQ_UNSUBSCRIBE")
        }
    }

    // MARK: messages

    /// Sends the frames as one atomic multipart message. `dontWait` makes a full queue throw EAGAIN instead of
    /// blocking. An empty array sends nothing.
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws {
        let h = try live("send")
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = i + 1 < frames.count ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            let rc = frame.withUnsafeBytes { zmq_send(h, $0.baseAddress, $0.count, flags) }
            guard rc >= 0 else { throw ZMQError("send") }
        }
    }

    /// Sends the buffers as one multipart message without copying them (`zmq_msg_init_data` without a free
    /// function): for large payloads sent many times. The caller keeps every buffer alive and unchanged until the
    /// socket's context has terminated, since libzmq may still be writing them after this returns.
    public func send(unownedFrames frames: [UnsafeRawBufferPointer], dontWait: Bool = false) throws {
        let h = try live("send")
        for (i, frame) in frames.enumerated() {
            var message = zmq_msg_t()
            guard zmq_msg_init_data(&message, UnsafeMutableRawPointer(mutating: frame.baseAddress), frame.count,
                                    nil, nil) == 0 else { throw ZMQError("zmq_msg_init_data") }
            var flags: Int32 = i + 1 < frames.count ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            guard zmq_msg_send(&message, h, flags) >= 0 else {
                let error = ZMQError("send")
                zmq_msg_close(&message)
                throw error
            }
        }
    }

    /// Receives one whole multipart message (every frame). Throws a timeout error (`isTimeout`) when nothing arrives
    /// within the receive timeout, or at once with `dontWait`.
    public func receive(dontWait: Bool = false) throws -> [[UInt8]] {
        let h = try live("receive")
        var frames: [[UInt8]] = []
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        while true {
            let rc = zmq_msg_recv(&message, h, frames.isEmpty && dontWait ? ZMQ_DONTWAIT : 0)
            guard rc >= 0 else { throw ZMQError("receive") }
            let size = zmq_msg_size(&message)
            if size > 0, let data = zmq_msg_data(&message) {
                frames.append([UInt8](UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
            if zmq_msg_more(&message) == 0 { break }
        }
        return frames
    }

    /// Waits up to `timeoutMilliseconds` (-1 = forever) for a message to read; true when one is ready.
    public func waitReadable(timeoutMilliseconds: Int) throws -> Bool {
        try ZMQPoller.poll([.init(socket: self)], timeoutMilliseconds: timeoutMilliseconds).first ?? false
    }

    fileprivate var rawHandle: UnsafeMutableRawPointer? { handle }
}

/// `zmq_poll` over sockets and plain file descriptors, for readability.
public enum ZMQPoller {
    public struct Item {
        public var socket: ZMQSocket?
        public var fileDescriptor: Int32
        public init(socket: ZMQSocket) { self.socket = socket; self.fileDescriptor = -1 }
        public init(fileDescriptor: Int32) { self.socket = nil; self.fileDescriptor = fileDescriptor }
    }

    /// Waits until one of the items is readable or the timeout passes; returns one flag per item.
    /// EINTR (a signal arrived) counts as "nothing ready".
    public static func poll(_ items: [Item], timeoutMilliseconds: Int) throws -> [Bool] {
        var raw = items.map { item in
            zmq_pollitem_t(socket: item.socket?.rawHandle, fd: item.fileDescriptor, events: Int16(ZMQ_POLLIN),
                           revents: 0)
        }
        let rc = zmq_poll(&raw, Int32(raw.count), timeoutMilliseconds)
        if rc < 0 {
            if zmq_errno() == EINTR { return Array(repeating: false, count: items.count) }
            throw ZMQError("zmq_poll")
        }
        return raw.map { ($0.revents & Int16(ZMQ_POLLIN)) != 0 }
    }
}

/// `zmq_proxy_steerable`: forwards every message between two sockets, in both directions.
public enum ZMQProxy {
    /// Runs on the calling thread until `control` (a socket connected to one the caller keeps) receives
    /// `TERMINATE`, or the context is terminated. A ROUTER frontend and a DEALER backend make the broker of
    /// ZeroMQ's "extended request-reply" pattern: each message crosses it with the client's routing id in front.
    public static func run(frontend: ZMQSocket, backend: ZMQSocket, control: ZMQSocket) throws {
        guard let f = frontend.rawHandle, let b = backend.rawHandle, let c = control.rawHandle else {
            throw ZMQError("zmq_proxy_steerable", errno: ENOTSOCK)
        }
        guard zmq_proxy_steerable(f, b, nil, c) == 0 else {
            if zmq_errno() == ETERM { return }
            throw ZMQError("zmq_proxy_steerable")
        }
    }
}

extension String {
    /// The text of a NUL-terminated C string that libzmq wrote into `chars` (up to the first NUL, UTF-8).
    init(nulTerminated chars: [CChar]) {
        self.init(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
