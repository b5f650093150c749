/// The stable error codes of the wire protocol (docs/PROTOCOL.md §1.4).
public enum ErrorCode: String, Sendable, CaseIterable {
    case badHeader = "bad_header"
    case badRequest = "bad_request"
    case unknownKind = "unknown_kind"
    case unsupportedProtocol = "unsupported_protocol"
    case unknownImage = "unknown_image"
    case imageExists = "image_exists"
    case outOfBounds = "out_of_bounds"
    case unknownClass = "unknown_class"
    case nothingToUndo = "nothing_to_undo"
    case badImage = "bad_image"
    case imageTooLarge = "image_too_large"
    case messageTooLarge = "message_too_large"
    case tooManyFrames = "too_many_frames"
    case forbidden
    case busy
    case shuttingDown = "shutting_down"
    case `internal`
}

/// An error answered to a client: a stable code and a message for humans.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

}
