// Options of attention variants: the specs a plugin registers, the typed values the host passes, and the strict
// resolution of a config's option map against the specs.

import Foundation

/// The type of one variant option (the C `probattn_option_type`, by name).
public enum PluginOptionType: String, Sendable, CaseIterable {
    case int, float, bool, string
}

/// One option a variant accepts, as its plugin registered it.
public struct PluginOptionSpec: Sendable {
    /// lower_snake_case, unique within the variant.
    public let name: String
    public let type: PluginOptionType
    /// The default written as in YAML ("0.5", "true", "3", "textbook").
    public let defaultValue: String
    /// One line for operators.
    public let meaning: String

    public init(name: String, type: PluginOptionType, defaultValue: String, meaning: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.meaning = meaning
    }

    /// The default parsed as the option's type; nil when the text does not parse (the loader refuses such a variant).
    public var parsedDefault: PluginOptionValue? {
        PluginOptionValue.parse(defaultValue, as: type)
    }
}

/// A typed option value, as a config or command gives it and as the host passes it to a plugin.
public enum PluginOptionValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)

    /// The name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .int: return "int"
        case .float: return "float"
        case .bool: return "bool"
        case .string: return "string"
        }
    }

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let v): return v ? "true" : "false"
        case .string(let v): return v
        }
    }

    /// Parses `text` as a value of `type` (YAML spelling: "3", "0.5", "true"/"false", any text for strings).
    /// Returns nil when the text is not a value of that type.
    public static func parse(_ text: String, as type: PluginOptionType) -> PluginOptionValue? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        switch type {
        case .int:
            return Int64(trimmed).map { .int($0) }
        case .float:
            switch trimmed.lowercased() {
            case ".inf", "+.inf", "inf", "+inf": return .float(.infinity)
            case "-.inf", "-inf": return .float(-.infinity)
            case ".nan", "nan": return .float(.nan)
            default: return Double(trimmed).map { .float($0) }
            }
        case .bool:
            switch trimmed.lowercased() {
            case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: return nil
            }
        case .string:
            return .string(text)
        }
    }

    public static func == (lhs: PluginOptionValue, rhs: PluginOptionValue) -> Bool {
        switch (lhs, rhs) {
        case let (.int(a), .int(b)): return a == b
        case let (.float(a), .float(b)): return a == b || (a.isNaN && b.isNaN)
        case let (.bool(a), .bool(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        default: return false
        }
    }
}

/// Every option of one variant with its value: the given ones, type-checked, and the defaults for the rest.
/// Made only by `AttentionVariant.resolveOptions`, so a value is always of its spec's type.
public struct ResolvedOptions: Sendable {
    /// The variant these options were resolved for.
    public let variantName: String
    /// In the order the variant's specs list them (the order the plugin receives them).
    public let entries: [(spec: PluginOptionSpec, value: PluginOptionValue)]

    init(variantName: String, entries: [(spec: PluginOptionSpec, value: PluginOptionValue)]) {
        self.variantName = variantName
        self.entries = entries
    }

    /// The value of the option `name`, nil when the variant has no such option.
    public subscript(name: String) -> PluginOptionValue? {
        entries.first { $0.spec.name == name }?.value
    }

    /// Option names and values as a dictionary (for logging and cache keys).
    public var dictionary: [String: PluginOptionValue] {
        Dictionary(entries.map { ($0.spec.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }
}
