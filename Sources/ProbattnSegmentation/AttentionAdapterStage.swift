/// The adapter stage (`type: attention`): prepares the units of the mixture once per image.
///
/// The initial unit bank is the tokens on every `unitStride`-th row and column of the token grid (1 = every token,
/// the paper's units = tokens; variants that need M = H always get every token), with keys = those tokens' features.
/// The variant is then called once without any fixed value, so that a variant which adapts keys (probabilistic
/// attention's online EM: soft k-means of the queries, anchored to the initial keys by the key prior) does so here;
/// its adapted keys are kept for every later click of the image. For a variant that does not adapt, the keys stay
/// the selected tokens' features. Called once per image; immutable and thread-safe.
public struct VariantAttentionAdapter: AttentionAdapter {
    /// The stage type name in the config.
    public static let typeName = "attention"

    public let attention: any TokenAttention
    /// Grid step between the tokens that seed the units (1 = one unit per token).
    public let unitStride: Int

    public init(attention: any TokenAttention, unitStride: Int = 1) {
        self.attention = attention
        self.unitStride = max(1, unitStride)
    }

    /// The tokens whose features seed the units.
    public func unitTokens(of encoded: EncodedImage) -> [Int] {
        let h = encoded.tokenCount
        let step = attention.needsUnitsEqualTokens ? 1 : unitStride
        guard step > 1 else { return Array(0..<h) }
        if let grid = encoded.grid, grid.rows * grid.cols == h {
            // Centred sub-grid: rows step/2, step/2 + step, ... (at least one row and column).
            let rows = Array(stride(from: min(step / 2, grid.rows - 1), to: grid.rows, by: step))
            let cols = Array(stride(from: min(step / 2, grid.cols - 1), to: grid.cols, by: step))
            return rows.flatMap { r in cols.map { c in r * grid.cols + c } }
        }
        return Array(stride(from: 0, to: h, by: step * step))
    }

    public func adapt(_ encoded: EncodedImage) throws -> AdaptedImage {
        let h = encoded.tokenCount, c = encoded.featureDimension
        guard h > 0, c > 0, encoded.features.count == h * c else {
            throw SegmentationError(.invalidInput, "encoded image has \(encoded.features.count) feature values, "
                                        + "expected \(h) tokens × \(c)")
        }
        if attention.needsGrid && encoded.grid == nil {
            throw SegmentationError(.attention, "attention variant '\(attention.name)' needs tokens on a grid, "
                                        + "but the encoder produced none")
        }
        let seeds = unitTokens(of: encoded)
        let m = seeds.count
        var keys = [Float](repeating: 0, count: m * c)
        for (j, t) in seeds.enumerated() {
            for x in 0..<c { keys[j * c + x] = encoded.features[t * c + x] }
        }
        // Two neutral value channels: the values do not matter for key adaptation (no value evidence is given).
        let valueChannels = 2
        let call = AttentionCall(tokens: h, units: m, channels: c, valueChannels: valueChannels,
                                 queries: encoded.features, keys: keys,
                                 values: [Float](repeating: 1 / Float(valueChannels), count: m * valueChannels),
                                 fixed: nil, grid: encoded.grid, keysAlreadyAdapted: false)
        let result = try attention.attend(call)
        if let adapted = result.adaptedKeys, adapted.count == m * c, adapted.allSatisfy(\.isFinite) {
            return AdaptedImage(unitCount: m, keys: adapted, keysAdapted: true)
        }
        return AdaptedImage(unitCount: m, keys: keys, keysAdapted: false)
    }
}
