import ProbattnPluginHost
import ProbattnStages

/// Builds a `SegmentationPipeline` from the config's stage list, finding each stage type in the registries of
/// `PipelineStages.builtIn` (the table there lists them).
///
/// The `writer` role is the daemon's (`WriterRegistry`) and is ignored here. A role that is absent takes its entry
/// from `defaultStages`; a role given twice, an unknown type or an unknown option is an error naming the valid
/// choices. Called by the daemon when it loads its config and by `probattn eval`.
public enum PipelineFactory {
    /// The attention variant used when the adapter does not name one.
    public static let defaultVariant = "probabilistic"

    /// Options of the `attention` adapter itself (every other option goes to the variant).
    public static let adapterOwnOptions: Set<String> = AdapterStanza.ownKeys

    /// The query embedding the adapter uses when its `query_embedding` option is `auto` (the default): the features
    /// as they are for a variant that compares by distance itself (an RBF form, as probabilistic attention), and the
    /// distance embedding for a variant whose similarity is a scaled dot product
    /// (`VariantAttentionAdapter.QueryEmbedding` explains why). Read from the variant's descriptor.
    public static func automaticQueryEmbedding(_ capabilities: VariantCapabilities)
        -> VariantAttentionAdapter.QueryEmbedding {
        capabilities.comparesByDistance ? .features : .distance
    }

    /// The adapter's `unit_stride` when the config gives none: one unit per token for a variant whose value
    /// propagation needs M = H, else every second token row and column (a quarter of the units, at no loss of
    /// quality for probabilistic attention: docs/SEGMENTATION.md). Read from the variant's descriptor.
    public static func defaultUnitStride(_ capabilities: VariantCapabilities) -> Int {
        capabilities.propagationNeedsUnitsEqualTokens ? 1 : 2
    }

    /// The registries the factory finds stage types in.
    public static let registries = PipelineStages.builtIn

    /// The stage types each role accepts (the pipeline's three roles).
    public static var stageTypes: [StageRole: [String]] {
        [.encoder: registries.typeNames(.encoder), .adapter: registries.typeNames(.adapter),
         .propagator: registries.typeNames(.propagator)]
    }

    /// The pipeline's defaults for a variant's options, by variant: the default variant's tuned values (the rest
    /// keep the plugin's defaults); other variants start from their plugin's defaults. An adapter stanza's options
    /// are merged over these key by key (`AdapterStanza`).
    public static var defaultVariantOptions: [String: [String: ConfigValue]] {
        [defaultVariant: defaultProbabilisticOptions]
    }

    /// The adapter stanza of the default pipeline: the default variant with its tuned options, and the adapter's
    /// own keys as their defaults resolve for it (written out, as in `Config/probattnd.yaml`).
    public static var defaultAttentionOptions: [String: ConfigValue] {
        ["variant": .mapping(defaultProbabilisticOptions.merging(["type": .string(defaultVariant)]) { a, _ in a }),
         "unit_stride": .int(2), "query_embedding": .string("auto")]
    }

    /// The options of the probabilistic variant that the default pipeline sets. RBF attention (no magnitude priors)
    /// with unit precision: the encoder scales its features so that one unit of squared distance is one "sigma" of
    /// similarity. docs/SEGMENTATION.md says how each was chosen.
    static let defaultProbabilisticOptions: [String: ConfigValue] = [
        "alpha": .double(1.0),
        "beta": .double(0.0),
        "magnitude_priors": .bool(false),
        "key_adaptation_iterations": .int(3),
        "key_prior_precision": .double(1.0),
        "value_propagation_iterations": .int(1),
        "value_prior_precision": .double(0.0),
        "clamp_fixed": .bool(false),
    ]

    /// The default pipeline: grid/superpixel features, probabilistic attention with key adaptation, belief
    /// propagation with the unclicked tokens as missing data.
    /// The propagator options the default pipeline spells out (they equal the stage's own defaults; written out in
    /// `Config/probattnd.yaml` too, so the boundary refinement, the two click priors and their settings are visible where
    /// users look).
    public static let defaultPropagatorOptions: [String: ConfigValue] = [
        "refinement": .string(BeliefPropagator.Refinement.graphCut.rawValue),
        "refinement_smoothness": .int(6),
        "refinement_reach": .int(6),
        "geodesic_click_weight": .double(0.0075),
        "geodesic_click_radius": .int(4),
        "previous_posterior_weight": .double(0.075),
        "previous_posterior_radius": .double(0.1),
    ]

    public static var defaultStages: [StageSpec] {
        [
            StageSpec(role: .encoder, type: GridFeatureEncoder.typeName),
            StageSpec(role: .adapter, type: VariantAttentionAdapter.typeName, options: defaultAttentionOptions),
            StageSpec(role: .propagator, type: BeliefPropagator.typeName, options: defaultPropagatorOptions),
        ]
    }

    /// Builds the pipeline. `plugins` nil loads the registry from `PluginRegistry.defaultDirectory()`.
    public static func make(stages: [StageSpec], plugins: PluginRegistry?) throws -> SegmentationPipeline {
        let chosen = try resolveRoles(stages)
        let encoder = try registries.encoders.make(chosen[.encoder]!)
        let adapter = try registries.adapters.make(chosen[.adapter]!,
                                                   environment: AdapterEnvironment(plugins: plugins ?? loadDefaultRegistry()))
        let propagator = try registries.propagators.make(chosen[.propagator]!,
                                                         environment: PropagatorEnvironment(attention: adapter.attention))
        return SegmentationPipeline(encoder: encoder, adapter: adapter.adapter, propagator: propagator)
    }

    /// Checks the stage list (types, options, the variant and its options) without keeping the pipeline.
    public static func validate(stages: [StageSpec], plugins: PluginRegistry?) throws {
        _ = try make(stages: stages, plugins: plugins)
    }

    /// The stage list with the evaluation's switches applied (`probattn eval --attention/--no-key-adaptation/
    /// --no-value-propagation`):
    /// - `attention`: the adapter's variant is replaced; options the new variant does not declare are dropped, and
    ///   so is `unit_stride` (the replacement's default applies, by its descriptor: `defaultUnitStride`).
    /// - `keyAdaptation: false`: the variant's `key_adaptation_iterations` is set to 0 (when it has that option).
    /// - `valuePropagation: false`: the variant's `value_propagation_iterations` is set to 0 (when it has that
    ///   option) and the propagator runs no propagation rounds, so a click only fixes its own tokens.
    public static func stages(_ stages: [StageSpec], attention: String? = nil, keyAdaptation: Bool = true,
                              valuePropagation: Bool = true, plugins: PluginRegistry?) throws -> [StageSpec] {
        var chosen = try resolveRoles(stages)
        var adapter = chosen[.adapter]!
        // The switches rewrite the options of the attention adapter (`VariantAttentionAdapter.Configuration`), the
        // one adapter type registered; the lookup refuses an unknown type.
        _ = try registries.adapters.descriptor(adapter.type)
        let registry = plugins ?? loadDefaultRegistry()
        var stanza = try VariantAttentionAdapter.Configuration(options: adapter.options).stanza
        if let attention {
            // Another variant: keep only the options it declares, over its own defaults; its unit_stride default
            // applies (by its descriptor).
            let declared = Set(try lookUp(attention, in: registry).options.map(\.name))
            let kept = stanza.variantOptions.filter { declared.contains($0.key) }
            stanza.variant = attention
            stanza.variantOptions = (defaultVariantOptions[attention] ?? [:]).merging(kept) { _, written in written }
            stanza.unitStride = nil
        }
        let variant = try lookUp(stanza.variant, in: registry)
        let declared = Set(variant.options.map(\.name))
        if !keyAdaptation, declared.contains("key_adaptation_iterations") {
            stanza.variantOptions["key_adaptation_iterations"] = .int(0)
        }
        if !valuePropagation, declared.contains("value_propagation_iterations") {
            stanza.variantOptions["value_propagation_iterations"] = .int(0)
        }
        let options = stanza.nestedOptions
        adapter.options = options
        chosen[.adapter] = adapter
        if !valuePropagation, var propagator = chosen[.propagator] {
            propagator.options["em_iterations"] = .int(0)
            chosen[.propagator] = propagator
        }
        return [chosen[.encoder]!, chosen[.adapter]!, chosen[.propagator]!]
    }

    // MARK: - Helpers

    private static func loadDefaultRegistry() -> PluginRegistry {
        PluginRegistry.load(directory: PluginRegistry.defaultDirectory())
    }

    /// One spec per pipeline role (the writer is dropped), defaults for absent roles.
    private static func resolveRoles(_ stages: [StageSpec]) throws -> [StageRole: StageSpec] {
        var chosen: [StageRole: StageSpec] = [:]
        for spec in stages where spec.role != .writer {
            if chosen[spec.role] != nil {
                throw SegmentationError(.invalidStages, "the stage list has more than one \(spec.role.rawValue) stage")
            }
            chosen[spec.role] = spec
        }
        for spec in defaultStages where chosen[spec.role] == nil { chosen[spec.role] = spec }
        return chosen
    }

    private static func lookUp(_ name: String, in registry: PluginRegistry) throws -> AttentionVariant {
        do {
            return try registry.variant(named: name)
        } catch let error as PluginHostError {
            throw SegmentationError(.attention, error.description)
        }
    }
}
