import ProbattnPluginHost

/// Builds a `SegmentationPipeline` from the config's stage list. The registry of stage types, by role:
///
/// | role       | type                 | implementation             |
/// | ---------- | -------------------- | -------------------------- |
/// | encoder    | `grid_features`      | `GridFeatureEncoder`       |
/// | adapter    | `attention`          | `VariantAttentionAdapter` (options `variant`, `unit_stride`, `query_embedding` + the variant's own options) |
/// | propagator | `belief_propagation` | `BeliefPropagator` (uses the adapter's attention variant) |
///
/// The `writer` role belongs to the daemon and is ignored here. A role that is absent takes its entry from
/// `defaultStages`; a role given twice, an unknown type or an unknown option is an error naming the valid choices.
/// Called by the daemon when it loads its config and by `probattn eval`.
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

    /// The stage types each role accepts.
    public static let stageTypes: [StageRole: [String]] = [
        .encoder: [GridFeatureEncoder.typeName],
        .adapter: [VariantAttentionAdapter.typeName],
        .propagator: [BeliefPropagator.typeName],
    ]

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
    /// `Config/probattnd.yaml` too, so the boundary refinement and its two settings are visible where users look).
    public static let defaultPropagatorOptions: [String: ConfigValue] = [
        "refinement": .string(BeliefPropagator.Refinement.graphCut.rawValue),
        "refinement_smoothness": .int(6),
        "refinement_reach": .int(6),
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
        let encoder = try makeEncoder(chosen[.encoder]!)
        let (attention, unitStride, embedding) = try makeAttention(chosen[.adapter]!,
                                                                   plugins: plugins ?? loadDefaultRegistry())
        let propagator = try makePropagator(chosen[.propagator]!, attention: attention)
        return SegmentationPipeline(encoder: encoder,
                                    adapter: VariantAttentionAdapter(attention: attention, unitStride: unitStride,
                                                                     queryEmbedding: embedding),
                                    propagator: propagator)
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
        guard adapter.type == VariantAttentionAdapter.typeName else {
            throw unknownType(.adapter, adapter.type)
        }
        let registry = plugins ?? loadDefaultRegistry()
        var stanza = try AdapterStanza(adapter.options, defaultVariant: defaultVariant,
                                       defaults: defaultVariantOptions)
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

    private static func unknownType(_ role: StageRole, _ type: String) -> SegmentationError {
        SegmentationError(.unknownStageType, "unknown \(role.rawValue) type '\(type)'; valid types: "
                              + (stageTypes[role] ?? []).joined(separator: ", "))
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

    private static func variantName(of adapter: StageSpec) -> String? {
        if case .string(let name)? = adapter.options["variant"] { return name }
        return nil
    }

    private static func lookUp(_ name: String, in registry: PluginRegistry) throws -> AttentionVariant {
        do {
            return try registry.variant(named: name)
        } catch let error as PluginHostError {
            throw SegmentationError(.attention, error.description)
        }
    }

    private static func makeEncoder(_ spec: StageSpec) throws -> any ImageEncoder {
        switch spec.type {
        case GridFeatureEncoder.typeName: return try GridFeatureEncoder(options: spec.options)
        default: throw unknownType(.encoder, spec.type)
        }
    }

    /// The adapter's attention and its own options `unit_stride` and `query_embedding` (`auto`, `features` or
    /// `distance`; `auto` = `automaticQueryEmbedding`); every other option goes to the variant.
    private static func makeAttention(_ spec: StageSpec, plugins: PluginRegistry) throws
        -> (any TokenAttention, Int, VariantAttentionAdapter.QueryEmbedding) {
        guard spec.type == VariantAttentionAdapter.typeName else { throw unknownType(.adapter, spec.type) }
        let stanza = try AdapterStanza(spec.options, defaultVariant: defaultVariant, defaults: defaultVariantOptions)
        let name = stanza.variant
        let variant = try lookUp(name, in: plugins)
        var unitStride = defaultUnitStride(variant.capabilities)
        switch stanza.unitStride {
        case nil: break
        case .int(let value)? where (1...64).contains(value): unitStride = value
        case let other?:
            throw SegmentationError(.invalidOption, "adapter 'attention': option 'unit_stride' = \(other) is invalid "
                                        + "(expected an integer in 1...64)")
        }
        if unitStride != 1, variant.capabilities.propagationNeedsUnitsEqualTokens {
            throw SegmentationError(.invalidOption, "adapter 'attention': option 'unit_stride' = \(unitStride) is "
                                        + "invalid for variant '\(name)', whose value propagation needs one unit per "
                                        + "token (unit_stride: 1)")
        }
        let embedding: VariantAttentionAdapter.QueryEmbedding
        let embeddingChoices = ["auto"] + VariantAttentionAdapter.QueryEmbedding.allCases.map(\.rawValue)
        switch stanza.queryEmbedding {
        case nil, .string("auto")?: embedding = automaticQueryEmbedding(variant.capabilities)
        case .string(let value)? where VariantAttentionAdapter.QueryEmbedding(rawValue: value) != nil:
            embedding = VariantAttentionAdapter.QueryEmbedding(rawValue: value) ?? .features
        case let other?:
            throw SegmentationError(.invalidOption, "adapter 'attention': option 'query_embedding' = \(other) is "
                                        + "invalid (expected one of \(embeddingChoices.joined(separator: ", ")))")
        }
        do {
            return (try PluginAttention(variant: variant, options: stanza.variantOptions), unitStride, embedding)
        } catch let error as SegmentationError {
            // The variant's own options are the adapter's too: the message says where they are.
            throw SegmentationError(error.code, "adapter 'attention': " + error.message)
        }
    }

    private static func makePropagator(_ spec: StageSpec, attention: any TokenAttention) throws -> any Propagator {
        switch spec.type {
        case BeliefPropagator.typeName: return try BeliefPropagator(attention: attention, options: spec.options)
        default: throw unknownType(.propagator, spec.type)
        }
    }
}
