import Foundation

/// Errors of the segmentation stages and of `PipelineFactory`: a stable `code` for programs (the daemon forwards it
/// to clients) and a message for people.
public struct SegmentationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public enum Code: String, Sendable {
        /// A stage `type` that no registry entry provides.
        case unknownStageType = "unknown_stage_type"
        /// An option name the stage does not accept.
        case unknownOption = "unknown_option"
        /// An option value of the wrong type or out of range.
        case invalidOption = "invalid_option"
        /// The stage list itself is malformed (for example two encoders).
        case invalidStages = "invalid_stages"
        /// The attention variant is missing, refused its options, or failed.
        case attention = "attention_failed"
        /// Input data that cannot be processed (for example a click outside the image).
        case invalidInput = "invalid_input"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension SegmentationError: LocalizedError {
    public var errorDescription: String? { description }
}
