import Foundation
import ProbattnJSON
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why an HTTP or WebSocket client call failed on the client side (the daemon's own error replies are responses
/// with an error status, not thrown).
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A blocking TCP connection with a read buffer: the transport under `HTTPConnection` and `WebSocketConnection`.
/// Reads wait with `poll` up to a deadline; writes never raise SIGPIPE (a closed peer is an error).
/// Unchecked `Sendable`: the read buffer belongs to the one reading thread and writes go through `writeLock`;
/// `descriptor` changes only in `init` and `close` (a close from another thread is how a blocked reader is stopped: its
/// next poll or read fails).
final class SocketStream: @unchecked Sendable {
    private(set) var descriptor: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private let writeLock = NSLock()

    /// Connects to `host:port` (TCP, with TCP_NODELAY so that small requests go out at once).
    init(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw HTTPClientError("cannot resolve \(host):\(port): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0 {
                if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    descriptor = fd
                    return
                }
                lastError = String(cString: strerror(errno))
                Glibc.close(fd)
            }
            entry = info.pointee.ai_next
        }
        throw HTTPClientError("cannot connect to \(host):\(port): \(lastError)")
    }

    deinit { close() }

    var isOpen: Bool { descriptor >= 0 }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }

    /// Writes every byte (from any thread; writes do not interleave).
    func write(_ bytes: [UInt8]) throws {
        try writeLock.withLock {
            var offset = 0
            while offset < bytes.count {
                guard descriptor >= 0 else { throw HTTPClientError("the connection is closed") }
                let written = bytes.withUnsafeBytes { raw in
                    Glibc.send(descriptor, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    throw HTTPClientError("send failed: \(String(cString: strerror(errno)))")
                }
                offset += written
            }
        }
    }

    /// Bytes buffered and not yet consumed.
    private var available: Int { buffer.count - start }

    /// Reads more bytes into the buffer; false at the end of the stream. Throws on timeout.
    private func fill(deadline: Double) throws -> Bool {
        guard descriptor >= 0 else { return false }
        while true {
            let remaining = deadline - Self.now()
            guard remaining > 0 else { throw HTTPClientError("timed out waiting for data") }
            var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining * 1000, 60_000).rounded(.up)))
            if ready < 0 {
                if errno == EINTR { continue }
                throw HTTPClientError("poll failed: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { continue }
            if start > 0, start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { return false }
                throw HTTPClientError("recv failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return false }
            buffer.append(contentsOf: chunk[0..<count])
            return true
        }
    }

    /// Exactly `count` bytes; throws when the stream ends first.
    func read(exactly count: Int, deadline: Double) throws -> [UInt8] {
        while available < count {
            guard try fill(deadline: deadline) else {
                throw HTTPClientError("the connection closed after \(available) of \(count) bytes")
            }
        }
        let bytes = Array(buffer[start..<(start + count)])
        start += count
        return bytes
    }

    /// Everything up to and including `delimiter`; throws when the stream ends first.
    func read(through delimiter: [UInt8], deadline: Double, limit: Int = 1 << 20) throws -> [UInt8] {
        // Positions after `start` already ruled out (relative, since `fill` may move the buffered bytes).
        var scanned = 0
        while true {
            if available >= delimiter.count {
                let end = buffer.count - delimiter.count
                var index = start + scanned
                while index <= end {
                    if buffer[index] == delimiter[0], Array(buffer[index..<(index + delimiter.count)]) == delimiter {
                        let bytes = Array(buffer[start..<(index + delimiter.count)])
                        start = index + delimiter.count
                        return bytes
                    }
                    index += 1
                }
                scanned = end + 1 - start
            }
            guard available < limit else { throw HTTPClientError("no delimiter within \(limit) bytes") }
            guard try fill(deadline: deadline) else { throw HTTPClientError("the connection closed") }
        }
    }

    /// Everything until the peer closes.
    func readToEnd(deadline: Double) throws -> [UInt8] {
        while try fill(deadline: deadline) {}
        let bytes = Array(buffer[start...])
        start = buffer.count
        return bytes
    }

    /// Whether the peer has closed the connection (or data is waiting), without consuming anything.
    func waitReadable(timeout: Double) -> Bool {
        if available > 0 { return true }
        guard descriptor >= 0 else { return true }
        var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, Int32(timeout * 1000)) > 0
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// An HTTP response as the client received it.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    /// Header fields in order, names lowercased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }

    /// The body as JSON (nil when it is not JSON).
    public var json: JSONValue? { JSONValue.parse(body) }
    /// The error code of a JSON error body.
    public var errorCode: String? { json?["error"]?["code"]?.stringValue }
}

/// A blocking HTTP/1.1 client on one keep-alive connection to the daemon's gateway (`http://HOST:PORT`): what the
/// latency benchmark and the tests use. One request at a time; it reconnects when the daemon closed the connection.
/// Unchecked `Sendable`: `stream` and `timeout` are unguarded; safe because a connection is used by one thread at a
/// time.
public final class HTTPConnection: @unchecked Sendable {
    public let host: String
    public let port: Int
    public var timeout: Double
    private var stream: SocketStream?

    /// `endpoint` is `http://HOST:PORT` (a path is ignored). Connects at once.
    public init(endpoint: String, timeout: Double = 30) throws {
        (host, port) = try Self.hostAndPort(endpoint)
        self.timeout = timeout
        stream = try SocketStream(host: host, port: port)
    }

    /// HOST and PORT of `http://HOST:PORT` or `ws://HOST:PORT` (IPv6 in brackets).
    public static func hostAndPort(_ endpoint: String) throws -> (String, Int) {
        var rest = Substring(endpoint)
        for scheme in ["http://", "ws://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let host: Substring, port: Substring
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = rest[rest.index(after: rest.startIndex)..<close]
            port = rest[close...].dropFirst(2)
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            port = rest[rest.index(after: colon)...]
        } else {
            host = rest
            port = "80"
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else {
            throw HTTPClientError("'\(endpoint)' is not http://HOST:PORT")
        }
        return (String(host), number)
    }

    public func close() {
        stream?.close()
        stream = nil
    }

    /// Sends one request and reads its response. `target` is the path with any query, already percent-encoded.
    public func request(_ method: String, _ target: String, headers: [(String, String)] = [],
                        body: [UInt8] = [], timeout: Double? = nil) throws -> HTTPClientResponse {
        let message = Self.requestBytes(method, target, host: host, port: port, headers: headers, body: body)
        if stream?.isOpen != true { stream = try SocketStream(host: host, port: port) }
        do {
            try stream!.write(message)
        } catch {
            // The daemon may have closed an idle keep-alive connection: one fresh try.
            stream = try SocketStream(host: host, port: port)
            try stream!.write(message)
        }
        return try readResponse(timeout: timeout)
    }

    /// Sends raw bytes (for tests of partial or malformed requests).
    public func sendRaw(_ bytes: [UInt8]) throws {
        if stream?.isOpen != true { stream = try SocketStream(host: host, port: port) }
        try stream!.write(bytes)
    }

    /// Whether a response (or the end of the connection) is waiting to be read.
    public func responseWaiting(timeout: Double) -> Bool { stream?.waitReadable(timeout: timeout) ?? true }

    /// Reads one response.
    public func readResponse(timeout: Double? = nil) throws -> HTTPClientResponse {
        guard let stream else { throw HTTPClientError("not connected") }
        let deadline = SocketStream.now() + (timeout ?? self.timeout)
        let head = try stream.read(through: Array("\r\n\r\n".utf8), deadline: deadline)
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw HTTPClientError("malformed status line '\(lines[0])'")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = HTTPClientResponse(status: status, headers: headers, body: [])
        if let length = response.header("content-length").flatMap({ Int($0) }) {
            response.body = try stream.read(exactly: length, deadline: deadline)
        } else if response.header("transfer-encoding")?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = String(decoding: try stream.read(through: [13, 10], deadline: deadline), as: UTF8.self)
                guard let size = Int(sizeLine.trimmingCharacters(in: .whitespacesAndNewlines)
                    .split(separator: ";").first ?? "", radix: 16) else {
                    throw HTTPClientError("malformed chunk size '\(sizeLine)'")
                }
                if size == 0 {
                    _ = try stream.read(through: [13, 10], deadline: deadline)
                    break
                }
                response.body += try stream.read(exactly: size, deadline: deadline)
                _ = try stream.read(exactly: 2, deadline: deadline)
            }
        } else if status != 204, status != 304, status >= 200 {
            response.body = try stream.readToEnd(deadline: deadline)
        }
        if response.header("connection")?.lowercased() == "close" { close() }
        return response
    }

    /// The bytes of one request (Content-Length always set when there is a body or the method sends one).
    public static func requestBytes(_ method: String, _ target: String, host: String, port: Int,
                                    headers: [(String, String)], body: [UInt8]) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    /// A `multipart/form-data` body and its content type, from (name, content type, bytes) parts.
    public static func multipart(_ parts: [(name: String, contentType: String, body: [UInt8])])
        -> (contentType: String, body: [UInt8]) {
        let boundary = "probattn-\(UInt64.random(in: 0..<UInt64.max))"
        var body: [UInt8] = []
        for part in parts {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\"".utf8)
            if part.name == "image" { body += Array("; filename=\"image\"".utf8) }
            body += Array("\r\nContent-Type: \(part.contentType)\r\n\r\n".utf8)
            body += part.body
            body += [13, 10]
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ("multipart/form-data; boundary=\(boundary)", body)
    }

    /// Percent-encodes one path segment or query value (everything but unreserved characters).
    public static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// A blocking WebSocket client (RFC 6455, no extensions) for an image's `GET /api/v1/images/{id}/ws`. One thread may
/// read while another writes; pings are answered while reading.
public final class WebSocketConnection: Sendable {
    /// One message from the daemon.
    public enum Message: Sendable {
        case text(String)
        case binary([UInt8])
        /// The daemon closed the WebSocket (status code, reason).
        case close(Int, String)
    }

    private let stream: SocketStream
    private let readLock = NSLock()
    /// Set by the first close (ours or the daemon's), so that one close frame at most goes out.
    private let closed = Atomic(false)
    /// The subprotocol the daemon accepted (`Sec-WebSocket-Protocol` of its 101), if any.
    public let acceptedProtocol: String?

    /// Connects and upgrades `http://HOST:PORT` + `target` (a percent-encoded path with any query), offering
    /// `protocols` as `Sec-WebSocket-Protocol` (a secured daemon needs `probattn.v1, bearer.TOKEN`). Throws an
    /// `HTTPClientError` when the daemon answers without upgrading; `refusal` then holds its response.
    public init(endpoint: String, target: String, timeout: Double = 30, protocols: [String] = []) throws {
        let (host, port) = try HTTPConnection.hostAndPort(endpoint)
        stream = try SocketStream(host: host, port: port)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        try stream.write(HTTPConnection.requestBytes(
            "GET", target, host: host, port: port,
            headers: [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
                      ("Sec-WebSocket-Version", "13")]
                + (protocols.isEmpty ? [] : [("Sec-WebSocket-Protocol", protocols.joined(separator: ", "))]),
            body: []))
        let deadline = SocketStream.now() + timeout
        let head = String(decoding: try stream.read(through: Array("\r\n\r\n".utf8), deadline: deadline), as: UTF8.self)
        let statusLine = head.components(separatedBy: "\r\n").first ?? ""
        guard statusLine.split(separator: " ").dropFirst().first == "101" else {
            let length = head.components(separatedBy: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let body = (try? stream.read(exactly: length, deadline: deadline)) ?? []
            stream.close()
            throw HTTPClientError("no WebSocket upgrade: \(statusLine) \(String(decoding: body, as: UTF8.self))")
        }
        acceptedProtocol = head.components(separatedBy: "\r\n")
            .first { $0.lowercased().hasPrefix("sec-websocket-protocol:") }
            .map { String($0[$0.index(after: $0.firstIndex(of: ":")!)...]).trimmingCharacters(in: .whitespaces) }
    }

    public func sendText(_ text: String) throws { try send(opcode: 1, Array(text.utf8)) }
    public func sendBinary(_ bytes: [UInt8]) throws { try send(opcode: 2, bytes) }

    /// Sends a close frame and closes the socket.
    public func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            try? send(opcode: 8, [0x03, 0xE8])
        }
        stream.close()
    }

    /// Drops the connection without a close frame (as a crashed client would).
    public func abort() {
        closed.store(true, ordering: .releasing)
        stream.close()
    }

    private func send(opcode: UInt8, _ payload: [UInt8]) throws {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame.reserveCapacity(frame.count + payload.count)
        for (index, byte) in payload.enumerated() { frame.append(byte ^ mask[index & 3]) }
        try stream.write(frame)
    }

    /// The next text, binary or close message (fragments joined, pings answered). Throws on timeout or when the
    /// connection ends without a close frame.
    public func receive(timeout: Double) throws -> Message {
        try readLock.withLock {
            let deadline = SocketStream.now() + timeout
            var assembled: [UInt8] = []
            var messageOpcode: UInt8 = 0
            while true {
                let head = try stream.read(exactly: 2, deadline: assembled.isEmpty ? deadline : SocketStream.now() + 30)
                // Once a frame has begun, its rest is waited for (a timeout must not cut a frame in half).
                let deadline = SocketStream.now() + 30
                let fin = head[0] & 0x80 != 0
                let opcode = head[0] & 0x0F
                var length = Int(head[1] & 0x7F)
                if length == 126 {
                    let ext = try stream.read(exactly: 2, deadline: deadline)
                    length = Int(ext[0]) << 8 | Int(ext[1])
                } else if length == 127 {
                    length = try stream.read(exactly: 8, deadline: deadline).reduce(0) { $0 << 8 | Int($1) }
                }
                // Servers do not mask their frames, but a masked one is read correctly too.
                let mask = head[1] & 0x80 != 0 ? try stream.read(exactly: 4, deadline: deadline) : []
                var payload = try stream.read(exactly: length, deadline: deadline)
                if !mask.isEmpty { for index in payload.indices { payload[index] ^= mask[index & 3] } }
                switch opcode {
                case 8:
                    let code = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                    let reason = payload.count > 2 ? String(decoding: payload[2...], as: UTF8.self) : ""
                    if !closed.exchange(true, ordering: .acquiringAndReleasing) {
                        try? send(opcode: 8, Array(payload.prefix(2)))
                    }
                    return .close(code, reason)
                case 9:
                    try send(opcode: 10, payload)
                case 10:
                    break
                case 0, 1, 2:
                    if opcode != 0 { messageOpcode = opcode }
                    assembled += payload
                    if fin {
                        return messageOpcode == 1 ? .text(String(decoding: assembled, as: UTF8.self))
                            : .binary(assembled)
                    }
                default:
                    throw HTTPClientError("unknown WebSocket opcode \(opcode)")
                }
            }
        }
    }
}
