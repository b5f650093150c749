// Exporting attention variants from a Swift plugin: the option specs and variant table, copied into the C structs of
// probattn_plugin.h and handed to the host's registrar.
//
// A Swift plugin is one file:
//
//     import CProbattnPlugin
//     import ProbattnPluginKit
//
//     let myVariant = VariantDefinition(name: "my_variant", summary: "…", options: [.float("scale", "0", "…")],
//                                       capabilities: [.propagationNeedsUnitsEqualTokens],
//                                       attend: { input, output in runAttend(input, output) { call in … } })
//
//     @_cdecl("probattn_plugin_register")
//     public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
//         registerVariants([myVariant], with: registrar)
//     }
//
// The exported ABI version symbol comes from the CProbattnPlugin dependency (see probattn_plugin.c).

import CProbattnPlugin
#if canImport(Glibc)
import Glibc
#endif

/// The C signature of a variant's attend function.
public typealias AttendEntry = @convention(c) (UnsafePointer<probattn_attend_input>?,
                                               UnsafeMutablePointer<probattn_attend_output>?) -> Int32

/// One option a variant declares (shown by `plugins` commands; the host checks values against it).
public struct OptionDefinition: Sendable {
    public let name: String
    public let type: OptionKind
    public let defaultValue: String
    public let meaning: String

    /// The option types of the ABI.
    public enum OptionKind: Sendable {
        case int, float, bool, string

        var cType: probattn_option_type {
            switch self {
            case .int: return PROBATTN_OPTION_INT
            case .float: return PROBATTN_OPTION_FLOAT
            case .bool: return PROBATTN_OPTION_BOOL
            case .string: return PROBATTN_OPTION_STRING
            }
        }
    }

    public static func int(_ name: String, _ defaultValue: String, _ meaning: String) -> OptionDefinition {
        OptionDefinition(name: name, type: .int, defaultValue: defaultValue, meaning: meaning)
    }

    public static func float(_ name: String, _ defaultValue: String, _ meaning: String) -> OptionDefinition {
        OptionDefinition(name: name, type: .float, defaultValue: defaultValue, meaning: meaning)
    }

    public static func bool(_ name: String, _ defaultValue: String, _ meaning: String) -> OptionDefinition {
        OptionDefinition(name: name, type: .bool, defaultValue: defaultValue, meaning: meaning)
    }

    public static func string(_ name: String, _ defaultValue: String, _ meaning: String) -> OptionDefinition {
        OptionDefinition(name: name, type: .string, defaultValue: defaultValue, meaning: meaning)
    }
}

/// What a variant needs from its inputs (probattn_plugin.h's PROBATTN_NEEDS_*).
public struct VariantRequirements: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The token grid (grid_rows × grid_cols).
    public static let grid = VariantRequirements(rawValue: UInt32(PROBATTN_NEEDS_GRID))
    /// M == H: unit j sits at token j.
    public static let unitsEqualTokens = VariantRequirements(rawValue: UInt32(PROBATTN_NEEDS_UNITS_EQUAL_TOKENS))
}

/// What a variant is (probattn_plugin.h's capability flags, ABI ≥ 3): the host runs it by these, never by its name.
public struct VariantCapability: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Value propagation puts unit j at token j (label propagation): the adapter uses one unit per token.
    public static let propagationNeedsUnitsEqualTokens =
        VariantCapability(rawValue: UInt32(PROBATTN_PROPAGATION_NEEDS_UNITS_EQUAL_TOKENS))
    /// Similarity from query–key distances (RBF), not dot products.
    public static let comparesByDistance = VariantCapability(rawValue: UInt32(PROBATTN_COMPARES_BY_DISTANCE))
    /// Can write its token-to-unit weights W when the host asks.
    public static let givesWeights = VariantCapability(rawValue: UInt32(PROBATTN_GIVES_WEIGHTS))
}

/// The C signature of a variant's option check (`validate_options`).
public typealias ValidateOptionsEntry = @convention(c) (UnsafePointer<probattn_option_value>?, Int64,
                                                        UnsafeMutablePointer<CChar>?, Int64) -> Int32

/// One variant a Swift plugin exports.
public struct VariantDefinition: Sendable {
    public let name: String
    public let summary: String
    public let options: [OptionDefinition]
    public let requirements: VariantRequirements
    public let capabilities: VariantCapability
    public let attend: AttendEntry
    public let validateOptions: ValidateOptionsEntry?

    public init(name: String, summary: String, options: [OptionDefinition], requirements: VariantRequirements = [],
                capabilities: VariantCapability, validateOptions: ValidateOptionsEntry? = nil, attend: AttendEntry) {
        self.name = name
        self.summary = summary
        self.options = options
        self.requirements = requirements
        self.capabilities = capabilities
        self.validateOptions = validateOptions
        self.attend = attend
    }
}

/// Runs a variant's option checks for one C `validate_options` call: `body` throws `PluginFailure` naming the option
/// when a value is out of range. Use it as the whole body of a variant's `validateOptions` closure; `runAttend`
/// can call the same checks so that both paths refuse the same values.
public func runValidate(_ options: UnsafePointer<probattn_option_value>?, _ count: Int64,
                        _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64,
                        _ body: (OptionReader) throws -> Void) -> Int32 {
    do {
        guard count >= 0, count == 0 || options != nil else { throw PluginFailure("options are NULL") }
        try body(OptionReader(values: UnsafeBufferPointer(start: options, count: Int(count))))
        return 0
    } catch {
        if let message, capacity > 0 {
            var text = "\(error)"
            while text.utf8.count > Int(capacity) - 1 { text.removeLast() }  // whole characters only
            let bytes = Array(text.utf8)
            for (index, byte) in bytes.enumerated() { message[index] = CChar(bitPattern: byte) }
            message[bytes.count] = 0
        }
        return 1
    }
}

/// Registers `variants` with the host's registrar; call it from the plugin's `@_cdecl("probattn_plugin_register")`
/// entry and return its result. The C strings live only during the call (the host copies them). Returns 0 when the
/// registrar is usable (a variant the host refuses is reported by the host, not here), 1 when it is NULL.
public func registerVariants(_ variants: [VariantDefinition], with registrar: UnsafePointer<probattn_registrar>?)
    -> Int32 {
    guard let registrar, let register = registrar.pointee.register_variant else { return 1 }
    var strings: [UnsafeMutablePointer<CChar>] = []
    defer { strings.forEach { free($0) } }
    func cString(_ text: String) -> UnsafePointer<CChar>? {
        guard let copy = strdup(text) else { return nil }
        strings.append(copy)
        return UnsafePointer(copy)
    }
    for variant in variants {
        let specs: [probattn_option_spec] = variant.options.map { option in
            probattn_option_spec(name: cString(option.name), type: option.type.cType,
                                 default_value: cString(option.defaultValue), meaning: cString(option.meaning))
        }
        specs.withUnsafeBufferPointer { specBuffer in
            var table = probattn_variant()
            table.name = cString(variant.name)
            table.summary = cString(variant.summary)
            table.options = specBuffer.baseAddress
            table.option_count = Int32(specBuffer.count)
            table.requirements = variant.requirements.rawValue
            table.attend = variant.attend
            table.capabilities = variant.capabilities.rawValue
            table.validate_options = variant.validateOptions
            _ = register(registrar.pointee.host, &table)
        }
    }
    return 0
}
