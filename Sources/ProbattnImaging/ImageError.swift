/// Why an image could not be decoded or encoded. Every case has a stable `code` (for the daemon's error replies and
/// the CLI) and a human-readable `description`.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not PNG, JPEG or BMP, or are a variant of those this decoder does not handle.
    case unsupportedFormat(String)
    /// The file claims a supported format but its content is invalid or truncated.
    case corrupt(String)
    /// The header's dimensions exceed the pixel limit; detected before the pixels are allocated.
    case tooLarge(width: Int, height: Int, limit: Int)
    /// Memory for the pixels could not be allocated.
    case outOfMemory
    /// An encoder was given an image it cannot write (for example an empty buffer or an out-of-range quality).
    case invalidArgument(String)
    /// A file could not be read or written.
    case io(String)

    /// A short machine-readable identifier of the case.
    public var code: String {
        switch self {
        case .unsupportedFormat: return "unsupported_image_format"
        case .corrupt: return "corrupt_image"
        case .tooLarge: return "image_too_large"
        case .outOfMemory: return "out_of_memory"
        case .invalidArgument: return "invalid_image_argument"
        case .io: return "image_io_error"
        }
    }

    public var description: String {
        switch self {
        case .unsupportedFormat(let why): return "unsupported image format: \(why)"
        case .corrupt(let why): return "corrupt image: \(why)"
        case .tooLarge(let width, let height, let limit):
            return "image too large: \(width)x\(height) = \(width * height) pixels exceeds the limit of \(limit)"
        case .outOfMemory: return "out of memory while decoding the image"
        case .invalidArgument(let why): return "invalid image: \(why)"
        case .io(let why): return "image I/O error: \(why)"
        }
    }
}
