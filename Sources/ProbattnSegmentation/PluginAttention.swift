import ProbattnPluginHost

/// `TokenAttention` over an attention variant loaded from a plugin, with its options resolved once when the
/// pipeline is built. Immutable; the plugin contract makes `attend` reentrant.
public struct PluginAttention: TokenAttention {
    public let variant: AttentionVariant
    public let options: ResolvedOptions

    public var name: String { variant.name }
    public var needsGrid: Bool { variant.needsGrid }

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
            case .list:
                throw SegmentationError(.invalidOption, "attention variant '\(variant.name)': option '\(key)' "
                                            + "must be a scalar, got a list \(value)")
            }
        }
        do {
            self.options = try variant.resolveOptions(given)
        } catch let error as PluginHostError {
            let code: SegmentationError.Code = if case .unknownOption = error { .unknownOption } else { .invalidOption }
            throw SegmentationError(code, error.description)
        }
    }

    public func attend(_ call: AttentionCall) throws -> AttentionResult {
        let input = AttentionInput(tokens: call.tokens, units: call.units, channels: call.channels,
                                   valueChannels: call.valueChannels, queries: call.queries, keys: call.keys,
                                   values: call.values, fixed: call.fixed, gridRows: call.grid?.rows ?? 0,
                                   gridCols: call.grid?.cols ?? 0, keysAlreadyAdapted: call.keysAlreadyAdapted)
        do {
            let output = try variant.attend(input, options: options)
            return AttentionResult(tokenValues: output.tokenValues, adaptedKeys: output.adaptedKeys)
        } catch let error as PluginHostError {
            throw SegmentationError(.attention, error.description)
        }
    }
}
