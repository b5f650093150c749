import ProbattnSegmentation

/// Bridges the config's stage list to `PipelineFactory`'s stage types.
///
/// The config names the adapter by its attention variant (`type: probabilistic`, `type: softmax`, … — variants come
/// from plugins) and the propagator `value_propagation`; the factory expects the adapter type `attention` with the
/// variant in its `variant` option, and the propagator `belief_propagation`. Stage lists already written in the
/// factory's terms pass through unchanged. For the factory's default variant, the factory's tuned default options
/// are the base the config's options override.
enum FactoryStages {
    /// Propagator type names the config may use for the factory's propagator.
    static let propagatorAliases = ["value_propagation"]

    static func translate(_ stages: [StageSpec]) -> [StageSpec] {
        let adapterTypes = PipelineFactory.stageTypes[.adapter] ?? []
        let propagatorTypes = PipelineFactory.stageTypes[.propagator] ?? []
        return stages.map { spec in
            var spec = spec
            switch spec.role {
            case .adapter where !adapterTypes.contains(spec.type):
                var options: [String: ConfigValue] =
                    spec.type == PipelineFactory.defaultVariant ? PipelineFactory.defaultAttentionOptions : [:]
                for (key, value) in spec.options { options[key] = value }
                options["variant"] = .string(spec.type)
                spec = StageSpec(role: .adapter, type: adapterTypes.first ?? spec.type, options: options)
            case .propagator where propagatorAliases.contains(spec.type) && !propagatorTypes.contains(spec.type):
                spec.type = propagatorTypes.first ?? spec.type
            default:
                break
            }
            return spec
        }
    }
}
