import ProbattnPluginHost
import ProbattnStages

/// `TokenAttention` over an attention variant loaded from a plugin, with its options resolved once when the
/// pipeline is built. Immutable; the plugin contract makes `attend` reentrant.
public struct PluginAttention: TokenAttention {
    public let variant: AttentionVariant
    public let options: ResolvedOptions

    public var name: String { variant.name }
    public var needsGrid: Bool { variant.needsGrid }
    public var needsUnitsEqualTokens: Bool { variant.needsUnitsEqualTokens }

    /// Resolves `options` (config values) against the variant's option specs; an unknown option or a wrong type is
    /// an error naming the valid options.
    public init(variant: AttentionVariant, options: [String: ConfigValue]) throws {
        self.variant = variant
        var given: [String: PluginOptionValue] = [:]
        for (key, value) in options {
            switch value {
            case .int(let v): given[key] = .int(Int64(v))
            case .double(let v): given[key] = .float(v)
            case .bool(let v): given[key] = .bool(v)
            case .string(let v): given[key] = .string(v)
            case .list, .mapping:
                throw SegmentationError(.invalidOption, "attention variant '\(variant.name)': option '\(key)' "
                                            + "must be a scalar, got \(value)")
            }
        }
        do {
            self.options = try variant.resolveOptions(given)
            try variant.validateOptions(self.options)
        } catch let error as PluginHostError {
            let code: SegmentationError.Code = if case .unknownOption = error { .unknownOption } else { .invalidOption }
            throw SegmentationError(code, error.description)
        }
    }

    public func attend(_ input: AttentionInput) throws -> AttentionOutput {
        do {
            return try variant.attend(input, options: options)
        } catch let error as PluginHostError {
            throw SegmentationError(.attention, error.description)
        }
    }
}
