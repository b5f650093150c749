// Errors the plugin host throws to its callers (config validation, commands, the adapter stage).

/// Why a variant could not be found, configured or run. `description` is the one-line message for operators;
/// `code` is a stable machine-readable name (for protocol error replies).
public enum PluginHostError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A config or command named a variant that is not loaded.
    case unknownVariant(name: String, loaded: [String], directory: String)
    /// An option name the variant does not declare.
    case unknownOption(variant: String, option: String, valid: [String])
    /// An option value of the wrong type.
    case optionType(variant: String, option: String, expected: PluginOptionType, given: String)
    /// The inputs do not have the shapes the contract requires, or miss what the variant needs (grid, M == H).
    case invalidInput(variant: String, reason: String)
    /// The plugin's `attend` returned a failure; `message` is its error text.
    case pluginFailed(variant: String, message: String)
    /// The plugin's `validate_options` refused the option values; `reason` is its one-line message.
    case invalidOption(variant: String, reason: String)

    public var code: String {
        switch self {
        case .unknownVariant: return "unknown_variant"
        case .unknownOption: return "unknown_option"
        case .optionType: return "option_type"
        case .invalidInput: return "invalid_input"
        case .pluginFailed: return "plugin_failed"
        case .invalidOption: return "invalid_option"
        }
    }

    public var description: String {
        switch self {
        case let .unknownVariant(name, loaded, directory):
            let list = loaded.isEmpty ? "none" : loaded.joined(separator: ", ")
            return "unknown attention variant '\(name)'; loaded variants (from \(directory)): \(list)"
        case let .unknownOption(variant, option, valid):
            let list = valid.isEmpty ? "it takes no options" : "valid options: " + valid.joined(separator: ", ")
            return "attention variant '\(variant)' has no option '\(option)'; \(list)"
        case let .optionType(variant, option, expected, given):
            return "option '\(option)' of attention variant '\(variant)' must be \(expected.rawValue), got \(given)"
        case let .invalidInput(variant, reason):
            return "attention variant '\(variant)': invalid input: \(reason)"
        case let .pluginFailed(variant, message):
            return "attention variant '\(variant)' failed: \(message)"
        case let .invalidOption(variant, reason):
            return "attention variant '\(variant)': \(reason)"
        }
    }
}
