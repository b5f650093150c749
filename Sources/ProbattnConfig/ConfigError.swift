/// Why a configuration file was rejected. `description` is one line that names the offending key path (and the YAML
/// line when known) and, for unknown names, lists the valid ones, so an operator can fix the file from the message
/// alone. Thrown by `DaemonConfig.load`, `DaemonConfig.decode` and `DaemonConfig.validate`.
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
    }

    public let code: Code
    /// Dotted key path of the offending node, e.g. `limits.max_frames` or `pipeline[1].type`; empty for the file.
    public let path: String
    /// The full one-line message.
    public let message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        // Errors are printed as one line: fold any newline that came from a library message.
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    public var description: String { message }
}
