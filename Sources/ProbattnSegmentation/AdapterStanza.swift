import ProbattnStages

/// The `attention` adapter's options in one shape, from either way of writing them:
///
/// ```yaml
/// options:                       # nested (the form docs and Config/ use)
///   unit_stride: 2               #   the adapter's own keys: unit_stride, query_embedding
///   variant:
///     type: probabilistic        #   the variant, and its own options
///     alpha: 1.0
/// options:                       # flat (deprecated): the variant's options beside `variant: NAME`
///   variant: probabilistic
///   alpha: 1.0
/// ```
///
/// The variant's options are merged, key by key, over the pipeline's defaults for that variant
/// (`PipelineFactory.defaultVariantOptions`: the default variant's tuned values; none for the others, which start from
/// their plugin's defaults), so a stanza that sets one option changes only that option. Built by the factory when it
/// makes or validates a pipeline, and by the config to warn about the flat form.
public struct AdapterStanza: Sendable, Equatable {
    /// The variant's name (`type:` in the nested form).
    public var variant: String
    /// The variant's options: the given ones over the pipeline's defaults for that variant.
    public var variantOptions: [String: ConfigValue]
    /// The adapter's own keys as written (nil: the default, by the variant's capabilities).
    public var unitStride: ConfigValue?
    public var queryEmbedding: ConfigValue?
    /// The stanza used the deprecated flat form.
    public var isFlat: Bool

    /// Keys of the adapter itself (everything else belongs to the variant).
    public static let ownKeys: Set<String> = ["variant", "unit_stride", "query_embedding"]

    public init(_ options: [String: ConfigValue], defaultVariant: String,
                defaults: [String: [String: ConfigValue]]) throws {
        unitStride = options["unit_stride"]
        queryEmbedding = options["query_embedding"]
        var given: [String: ConfigValue] = [:]
        switch options["variant"] {
        case .mapping(let nested)?:
            guard case .string(let type)? = nested["type"], !type.isEmpty else {
                throw SegmentationError(.invalidOption, "adapter 'attention': option 'variant' needs 'type' (the "
                                            + "name of an attention variant), got \(ConfigValue.mapping(nested))")
            }
            if let stray = options.keys.sorted().first(where: { !Self.ownKeys.contains($0) }) {
                throw SegmentationError(.unknownOption, "adapter 'attention': unknown option '\(stray)'; the "
                                            + "adapter's own options are unit_stride and query_embedding, the "
                                            + "variant's go under 'variant'")
            }
            variant = type
            given = nested.filter { $0.key != "type" }
            isFlat = false
        case .string(let name)?:
            variant = name
            given = options.filter { !Self.ownKeys.contains($0.key) }
            isFlat = true
        case nil:
            variant = defaultVariant
            given = options.filter { !Self.ownKeys.contains($0.key) }
            isFlat = !given.isEmpty
        case let other?:
            throw SegmentationError(.invalidOption, "adapter 'attention': option 'variant' = \(other) is invalid "
                                        + "(expected {type: NAME, ...its options} or the name of an attention variant)")
        }
        variantOptions = (defaults[variant] ?? [:]).merging(given) { _, written in written }
    }

    /// The nested form of this stanza (what reports show and `probattn eval` passes on).
    public var nestedOptions: [String: ConfigValue] {
        var options: [String: ConfigValue] = ["variant": .mapping(variantOptions.merging(["type": .string(variant)]) { a, _ in a })]
        if let unitStride { options["unit_stride"] = unitStride }
        if let queryEmbedding { options["query_embedding"] = queryEmbedding }
        return options
    }
}
