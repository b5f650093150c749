/// The adapter stage (`type: attention`): prepares the units of the mixture once per image. Units are the tokens
/// (M = H) and the keys start as the token features; the variant is called once without any fixed value so that a
/// variant which adapts keys (probabilistic attention's online EM) does so here, and its adapted keys are kept for
/// every later click of the image. For a variant that does not adapt, keys = queries.
public struct VariantAttentionAdapter: AttentionAdapter {
    /// The stage type name in the config.
    public static let typeName = "attention"

    public let attention: any TokenAttention

    public init(attention: any TokenAttention) {
        self.attention = attention
    }

    public func adapt(_ encoded: EncodedImage) throws -> AdaptedImage {
        let h = encoded.tokenCount, c = encoded.featureDimension
        guard h > 0, encoded.features.count == h * c else {
            throw SegmentationError(.invalidInput, "encoded image has \(encoded.features.count) feature values, "
                                        + "expected \(h) tokens × \(c)")
        }
        if attention.needsGrid && encoded.grid == nil {
            throw SegmentationError(.attention, "attention variant '\(attention.name)' needs tokens on a grid, "
                                        + "but the encoder produced none")
        }
        // Two neutral value channels: the values do not matter for key adaptation (no value evidence is given).
        let valueChannels = 2
        let call = AttentionCall(tokens: h, units: h, channels: c, valueChannels: valueChannels,
                                 queries: encoded.features, keys: encoded.features,
                                 values: [Float](repeating: 1 / Float(valueChannels), count: h * valueChannels),
                                 fixed: nil, grid: encoded.grid, keysAlreadyAdapted: false)
        let result = try attention.attend(call)
        if let adapted = result.adaptedKeys, adapted.count == h * c, adapted.allSatisfy(\.isFinite) {
            return AdaptedImage(unitCount: h, keys: adapted, keysAdapted: true)
        }
        return AdaptedImage(unitCount: h, keys: encoded.features, keysAdapted: false)
    }
}
