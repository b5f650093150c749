/// A `multipart/form-data` body (RFC 7578) split into its parts, for `POST /api/v1/images`. The body is already in
/// memory (bounded by `limits.max_message_bytes`), so this is a plain scan for the boundary; it never allocates more
/// than the parts' bytes.
struct MultipartForm {
    struct Part {
        /// The `name` parameter of the part's `Content-Disposition` header.
        var name: String?
        var contentType: String?
        var body: [UInt8]
    }

    var parts: [Part]

    /// The boundary parameter of a `multipart/form-data` content type, or nil when the type is another one.
    static func boundary(contentType: String?) -> String?? {
        guard let contentType else { return nil }
        let pieces = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let type = pieces.first, type.lowercased() == "multipart/form-data" else { return nil }
        for piece in pieces.dropFirst() where piece.lowercased().hasPrefix("boundary=") {
            var value = String(piece.dropFirst("boundary=".count))
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return .some(value.isEmpty ? nil : value)
        }
        return .some(nil)
    }

    /// Splits `body` at `--boundary` delimiters; throws a message saying what is malformed.
    init(body: [UInt8], boundary: String) throws(MultipartError) {
        let dashBoundary = Array("--\(boundary)".utf8)
        let delimiter = Array("\r\n--\(boundary)".utf8)
        guard var position = Self.find(dashBoundary, in: body, from: 0) else {
            throw MultipartError("the body has no '--\(boundary)' delimiter")
        }
        position += dashBoundary.count
        var parts: [Part] = []
        while true {
            guard position + 2 <= body.count else { throw MultipartError("the body ends without the closing delimiter") }
            if body[position] == UInt8(ascii: "-"), body[position + 1] == UInt8(ascii: "-") { break }
            // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
            while position < body.count, body[position] == 0x20 || body[position] == 0x09 { position += 1 }
            guard position + 2 <= body.count, body[position] == 13, body[position + 1] == 10 else {
                throw MultipartError("a delimiter is not followed by CRLF")
            }
            position += 2
            // headerEnd: where the CRLF CRLF ending the part's headers starts (a part without headers starts with
            // the blank line itself).
            let noHeaders = body[position...].starts(with: [13, 10])
            guard let headerEnd = noHeaders ? position - 2 : Self.find(Array("\r\n\r\n".utf8), in: body, from: position) else {
                throw MultipartError("part \(parts.count) has no end of headers")
            }
            var part = Part(name: nil, contentType: nil, body: [])
            let headerText = headerEnd > position ? String(decoding: body[position..<headerEnd], as: UTF8.self) : ""
            for line in headerText.split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let field = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if field == "content-type" { part.contentType = value }
                if field == "content-disposition" { part.name = Self.parameter("name", in: value) }
            }
            let bodyStart = headerEnd + 4
            guard let bodyEnd = Self.find(delimiter, in: body, from: bodyStart) else {
                throw MultipartError("part \(parts.count) ('\(part.name ?? "")') is not closed by a delimiter")
            }
            part.body = Array(body[bodyStart..<bodyEnd])
            parts.append(part)
            position = bodyEnd + delimiter.count
        }
        self.parts = parts
    }

    /// A `key=value` or `key="value"` parameter of a header value.
    static func parameter(_ key: String, in value: String) -> String? {
        for piece in value.split(separator: ";").dropFirst() {
            let trimmed = piece.trimmingCharacters(in: .whitespaces)
            guard let equals = trimmed.firstIndex(of: "="),
                  trimmed[..<equals].trimmingCharacters(in: .whitespaces).lowercased() == key else { continue }
            var v = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            return v
        }
        return nil
    }

    /// The first index at or after `start` where `needle` begins in `haystack`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, haystack.count - start >= needle.count else { return nil }
        var index = start
        let last = haystack.count - needle.count
        return haystack.withUnsafeBufferPointer { h -> Int? in
            while index <= last {
                if h[index] == first {
                    var matched = 1
                    while matched < needle.count, h[index + matched] == needle[matched] { matched += 1 }
                    if matched == needle.count { return index }
                }
                index += 1
            }
            return nil
        }
    }
}

/// Why a multipart body could not be split.
struct MultipartError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
