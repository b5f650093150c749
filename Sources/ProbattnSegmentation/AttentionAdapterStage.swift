import ProbattnPluginHost
import ProbattnStages

/// The adapter stage (`type: attention`): prepares the units of the mixture once per image.
///
/// The initial unit bank is the tokens on every `unitStride`-th row and column of the token grid (1 = every token,
/// the paper's units = tokens; variants that need M = H always get every token), with keys = those tokens' features.
/// The variant is then called once without any fixed value, so that a variant which adapts keys (probabilistic
/// attention's online EM: soft k-means of the queries, anchored to the initial keys by the key prior) does so here;
/// its adapted keys are kept for every later click of the image. For a variant that does not adapt, the keys stay
/// the selected tokens' features. The same call asks for the variant's token-to-unit weights W (kept in
/// `AdaptedImage.weights` when the variant gives them), so that the propagator can spread clicks through W without
/// calling the variant again. Called once per image; immutable and thread-safe.
///
/// With `queryEmbedding: .distance` the variant sees the features through the distance embedding below instead of
/// as they are (`QueryEmbedding` says when and why); the embedded queries are kept in `AdaptedImage.queries` so that
/// the propagator's calls see the same space.
public struct VariantAttentionAdapter: AttentionAdapter {
    /// The stage type name in the config.
    public static let typeName = "attention"

    /// How the encoder's features are presented to the attention variant as queries and keys.
    public enum QueryEmbedding: String, Sendable, CaseIterable {
        /// The features as they are: for variants that compare features by distance themselves (probabilistic
        /// attention in its RBF form, W_ij ∝ exp(−(α/2)‖q_i − ζ_j‖²), translation-invariant).
        case features
        /// The features centred on the image's mean feature f̄ and lifted by two channels, so that a variant whose
        /// similarity is the scaled dot product q·k/√C' (softmax, sigmoid, neighbourhood, context pooling; C' = C + 2)
        /// compares distances instead of magnitudes. With d_i = f_i − f̄, n_i = ½‖d_i‖² and s = C'^(1/4):
        ///
        ///     query q'_i = s·[d_i, 1, −n_i],   key k'_j = s·[d_j, −n_j, 1],
        ///     q'_i·k'_j / √C' = d_i·d_j − ½‖d_i‖² − ½‖d_j‖² = −½‖f_i − f_j‖²   (exactly).
        ///
        /// A dot product of the raw features mostly measures their magnitude (this encoder's positions grow with x
        /// and y, so every token would attend to the bottom-right corner); in the embedded space the variant's logits
        /// are those of RBF attention with α = 1, the precision the encoder's feature scaling is built for. For a
        /// softmax over keys the −½‖d_i‖² term is a per-query constant and cancels; it matters for unnormalised
        /// weights (sigmoid attention), where the logit is then exactly the negative half squared distance. Centring
        /// changes no distance; it keeps the lifted values small, so the cancellation in Float32 loses little.
        /// The variant's own `scale` option keeps its meaning relative to 1/√C' (scale s gives α = s·√C').
        case distance
    }

    public let attention: any TokenAttention
    /// Entries of W below this are dropped when it is cached (each row sums to 1; `SparseWeights.droppedMass`
    /// records what was dropped, under 2 % of a row, and a test holds the posteriors to the plugin's own within
    /// 0.03 and the masks to within 0.1 % of the pixels). 1e-3 instead of 1e-5 makes the EM rounds 30 % faster on
    /// 640 × 480 images with NoC unchanged within the scatter (docs/RESULTS.md).
    public static let weightThreshold: Float = 1e-3
    /// Grid step between the tokens that seed the units (1 = one unit per token).
    public let unitStride: Int
    /// How the features are presented to the variant.
    public let queryEmbedding: QueryEmbedding

    public init(attention: any TokenAttention, unitStride: Int = 1, queryEmbedding: QueryEmbedding = .features) {
        self.attention = attention
        self.unitStride = max(1, unitStride)
        self.queryEmbedding = queryEmbedding
    }

    /// The distance embedding of `QueryEmbedding.distance`: queries H × (C + 2) for every token and keys
    /// M × (C + 2) for the `seeds` tokens. Sums in Double.
    public static func distanceEmbedding(features: [Float], tokens h: Int, channels c: Int, seeds: [Int])
        -> (queries: [Float], keys: [Float], channels: Int) {
        let lifted = c + 2
        let s = Double(lifted).squareRoot().squareRoot()
        var mean = [Double](repeating: 0, count: c)
        for t in 0..<h { for x in 0..<c { mean[x] += Double(features[t * c + x]) } }
        for x in 0..<c { mean[x] /= Double(max(1, h)) }
        var centred = [Double](repeating: 0, count: c)
        /// Writes s·[d, first, second] with d the centred features of token t (`first`/`second` given ½‖d‖²).
        func embed(_ t: Int, into out: inout [Float], at row: Int, isQuery: Bool) {
            var half = 0.0
            for x in 0..<c {
                centred[x] = Double(features[t * c + x]) - mean[x]
                half += centred[x] * centred[x]
            }
            half /= 2
            let o = row * lifted
            for x in 0..<c { out[o + x] = Float(s * centred[x]) }
            out[o + c] = Float(isQuery ? s : -s * half)
            out[o + c + 1] = Float(isQuery ? -s * half : s)
        }
        var queries = [Float](repeating: 0, count: h * lifted)
        for t in 0..<h { embed(t, into: &queries, at: t, isQuery: true) }
        var keys = [Float](repeating: 0, count: seeds.count * lifted)
        for (j, t) in seeds.enumerated() { embed(t, into: &keys, at: j, isQuery: false) }
        return (queries, keys, lifted)
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

    /// One call of the variant, given `context.budget` as its threads (`AttentionInput.threads`).
    public func adapt(_ encoded: EncodedImage, context: StageContext) throws -> AdaptedImage {
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
        let queries: [Float]?
        var keys: [Float]
        let channels: Int
        switch queryEmbedding {
        case .features:
            queries = nil
            channels = c
            keys = [Float](repeating: 0, count: m * c)
            for (j, t) in seeds.enumerated() {
                for x in 0..<c { keys[j * c + x] = encoded.features[t * c + x] }
            }
        case .distance:
            let embedded = Self.distanceEmbedding(features: encoded.features, tokens: h, channels: c, seeds: seeds)
            queries = embedded.queries
            keys = embedded.keys
            channels = embedded.channels
        }
        // Two neutral value channels: the values do not matter for key adaptation (no value evidence is given).
        let valueChannels = 2
        var call = AttentionInput(tokens: h, units: m, channels: channels, valueChannels: valueChannels,
                                 queries: queries ?? encoded.features, keys: keys,
                                 values: [Float](repeating: 1 / Float(valueChannels), count: m * valueChannels),
                                 fixed: nil, grid: encoded.grid, keysAlreadyAdapted: false)
        call.wantsWeights = true
        call.threads = context.budget.threads
        let result = try attention.attend(call)
        let embeddedChannels: Int? = queries == nil ? nil : channels
        let weights = result.weights.flatMap {
            SparseWeights(dense: $0, tokens: h, units: m, threshold: Self.weightThreshold)
        }
        if let adapted = result.adaptedKeys, adapted.count == m * channels, adapted.allSatisfy(\.isFinite) {
            return AdaptedImage(unitCount: m, keys: adapted, keysAdapted: true, queries: queries,
                                channels: embeddedChannels, weights: weights)
        }
        return AdaptedImage(unitCount: m, keys: keys, keysAdapted: false, queries: queries,
                            channels: embeddedChannels, weights: weights)
    }
}
