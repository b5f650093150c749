/// Why a configuration file was rejected. `description` is one line that names the offending key path (and the YAML
/// line when known) and, for unknown names, lists the valid ones, so an operator can fix the file from the message
/// alone. Thrown by `DaemonConfig.load`, `DaemonConfig.decode` and `DaemonConfig.validate`.
///
/// A line is at most `maxMessageLength` characters: values quoted in a message are cut to `excerpt` length where
/// they are quoted, and a message still longer (a long library message, a long file path) loses its middle, so the
/// key path at the start and the line number at the end stay.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What kind of mistake it is; stable for tests and scripts.
    public enum Code: String, Sendable {
        /// The file could not be read.
        case unreadable = "unreadable"
        /// The text is not YAML.
        case syntax = "syntax"
        /// A mapping has a key no field consumes.
        case unknownKey = "unknown_key"
        /// A required key (a stage's `role` or `type`) is absent.
        case missingKey = "missing_key"
        /// A value has the wrong YAML type (a list where a number belongs, a word where a number belongs, ...).
        case wrongType = "wrong_type"
        /// A value has the right type but is out of range or not one of the allowed words.
        case invalidValue = "invalid_value"
        /// A pipeline stage names an implementation (`type:`) that does not exist.
        case unknownStageType = "unknown_stage_type"
        /// The pipeline's stages do not form encoder → adapter → propagator (→ writer).
        case invalidPipeline = "invalid_pipeline"
        /// The file is larger than `DaemonConfig.maxFileBytes`, or its YAML expands to more than `ConfigNode.maxNodes`
        /// nodes.
        case tooLarge = "too_large"
    }

    /// Longest message, in characters.
    public static let maxMessageLength = 400
    /// Longest quoted value inside a message, in characters (longer ones end in "…").
    public static let maxExcerptLength = 80

    /// `text` for quoting in a message: its first `maxExcerptLength` characters, then "…" when it is longer;
    /// newlines become spaces.
    public static func excerpt(_ text: String) -> String {
        let flat = text.count > maxExcerptLength ? String(text.prefix(maxExcerptLength)) + "…" : text
        return flat.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    public let code: Code
    /// Dotted key path of the offending node, e.g. `limits.max_frames` or `pipeline[1].type`; empty for the file.
    public let path: String
    /// The full one-line message.
    public let message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        // Errors are printed as one line: fold any newline that came from a library message, then cut the middle of an
        // over-long line (the path comes first and the line number last).
        let line = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        if line.count > Self.maxMessageLength {
            let tail = Self.maxMessageLength / 3
            self.message = String(line.prefix(Self.maxMessageLength - tail - 1)) + "…" + String(line.suffix(tail))
        } else {
            self.message = line
        }
    }

    public var description: String { message }
}
