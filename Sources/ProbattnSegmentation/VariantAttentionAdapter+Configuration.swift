import ProbattnPluginHost
import ProbattnStages

extension VariantAttentionAdapter {
    /// The `attention` adapter's options: the stanza (`AdapterStanza`, nested or flat form, the variant's options
    /// merged over the pipeline's defaults) and the adapter's own `unit_stride` and `query_embedding`, checked for
    /// type and range here; what depends on the variant (its capabilities, its options) is checked by the factory,
    /// which has the plugins.
    public struct Configuration: StageConfiguration {
        public var stanza: AdapterStanza
        /// nil: the variant's default (`PipelineFactory.defaultUnitStride`).
        public var unitStride: Int?
        /// nil (`auto`): the variant's default (`PipelineFactory.automaticQueryEmbedding`).
        public var queryEmbedding: QueryEmbedding?

        public init(options: [String: ConfigValue]) throws {
            stanza = try AdapterStanza(options, defaultVariant: PipelineFactory.defaultVariant,
                                       defaults: PipelineFactory.defaultVariantOptions)
            switch stanza.unitStride {
            case nil: unitStride = nil
            case .int(let value)? where (1...64).contains(value): unitStride = value
            case let other?:
                throw SegmentationError(.invalidOption, "adapter '\(typeName)': option 'unit_stride' = \(other) is "
                                            + "invalid (expected an integer in 1...64)")
            }
            let choices = ["auto"] + QueryEmbedding.allCases.map(\.rawValue)
            switch stanza.queryEmbedding {
            case nil, .string("auto")?: queryEmbedding = nil
            case .string(let value)? where QueryEmbedding(rawValue: value) != nil:
                queryEmbedding = QueryEmbedding(rawValue: value)
            case let other?:
                throw SegmentationError(.invalidOption, "adapter '\(typeName)': option 'query_embedding' = \(other) "
                                            + "is invalid (expected one of \(choices.joined(separator: ", ")))")
            }
        }
    }

    /// The registration of `type: attention`: the variant is looked up in the plugin registry, and its descriptor's
    /// capabilities decide the defaults of `unit_stride` and `query_embedding` and which strides it accepts.
    public static let descriptor = AdapterDescriptor(
        role: .adapter, typeName: typeName,
        summary: "an attention variant from the plugin folder, called once per image (key adaptation, weights W)",
        configuration: Configuration.self,
        deprecations: { options in
            guard let stanza = try? AdapterStanza(options, defaultVariant: PipelineFactory.defaultVariant,
                                                  defaults: [:]), stanza.isFlat else { return [] }
            return ["the flat adapter form (the variant's options beside `variant: \(stanza.variant)`) is deprecated; "
                    + "write `variant: {type: \(stanza.variant), ...its options}` beside the adapter's own unit_stride "
                    + "and query_embedding"]
        }
    ) { configuration, environment in
        let name = configuration.stanza.variant
        let variant: AttentionVariant
        do {
            variant = try environment.plugins.variant(named: name)
        } catch let error as PluginHostError {
            throw SegmentationError(.attention, error.description)
        }
        let unitStride = configuration.unitStride ?? PipelineFactory.defaultUnitStride(variant.capabilities)
        if unitStride != 1, variant.capabilities.propagationNeedsUnitsEqualTokens {
            throw SegmentationError(.invalidOption, "adapter '\(typeName)': option 'unit_stride' = \(unitStride) is "
                                        + "invalid for variant '\(name)', whose value propagation needs one unit per "
                                        + "token (unit_stride: 1)")
        }
        let embedding = configuration.queryEmbedding ?? PipelineFactory.automaticQueryEmbedding(variant.capabilities)
        let attention: PluginAttention
        do {
            attention = try PluginAttention(variant: variant, options: configuration.stanza.variantOptions)
        } catch let error as SegmentationError {
            // The variant's own options are the adapter's too: the message says where they are.
            throw SegmentationError(error.code, "adapter '\(typeName)': " + error.message)
        }
        return AdapterStage(adapter: VariantAttentionAdapter(attention: attention, unitStride: unitStride,
                                                            queryEmbedding: embedding),
                            attention: attention)
    }
}
