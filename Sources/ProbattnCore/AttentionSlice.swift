/// Positional embeddings shared by every slice (reference layout `(C, H, H)` / `(Cv, H, H)`), with the squared norms
/// the weight update needs precomputed once. Only valid when units = tokens (M = H).
struct PositionalTerms {
    let tokenCount: Int
    /// R, `(C, H, H)`: adds ‖q_i − R[:, i, j]‖² to the distance.
    let query: [Float]?
    /// S, `(C, H, H)`: adds ‖ζ_j − S[:, j, i]‖² (note the transposed index).
    let key: [Float]?
    /// P, `(Cv, H, H)`: adds value offsets and the interleaved output channels.
    let value: [Float]?
    /// [i, j] = Σ_c R[c, i, j]².
    let queryNorms: [Float]?
    /// [i, j] = Σ_c S[c, j, i]² (already transposed to token-major).
    let keyNormsTransposed: [Float]?

    init(tokenCount: Int, channels: Int, query: [Float]?, key: [Float]?, value: [Float]?) {
        self.tokenCount = tokenCount
        self.query = query
        self.key = key
        self.value = value
        let plane = tokenCount * tokenCount
        func squaredNorms(_ embedding: [Float]) -> [Float] {
            var norms = [Float](repeating: 0, count: plane)
            for c in 0..<channels {
                for index in 0..<plane {
                    let x = embedding[c * plane + index]
                    norms[index] += x * x
                }
            }
            return norms
        }
        queryNorms = query.map(squaredNorms)
        if let key {
            let norms = squaredNorms(key)
            var transposedNorms = [Float](repeating: 0, count: plane)
            transpose(norms, rows: tokenCount, columns: tokenCount, into: &transposedNorms)
            keyNormsTransposed = transposedNorms
        } else {
            keyNormsTransposed = nil
        }
    }

    var isEmpty: Bool { query == nil && key == nil && value == nil }
}

/// Fixed (observed) values in token-major layout.
struct FixedValues {
    /// H × Cv: v*_i (already multiplied by the indicator when masking is on).
    var values: [Float]
    /// H × Cv: the raw fixed values as given (for clamping).
    var rawValues: [Float]
    /// H: the indicator m_i (a weight in [0, 1]).
    var indicator: [Float]
    /// H × Cv, indexed by unit j: the positional offsets (channels Cv..<2Cv of `v_fixed`) when given.
    var offsets: [Float]?

    var indicatorSum: Float { indicator.reduce(0, +) }
}

/// One (n, g) slice of the problem in token-major layout, validated: every array has the extent its comment says.
struct AttentionSlice {
    let tokenCount: Int      // H
    let unitCount: Int       // M
    let channels: Int        // C
    let valueChannels: Int   // Cv
    /// H × C.
    let queries: [Float]
    /// M × C, the initial keys ζ⁰.
    let keys: [Float]
    /// M × Cv, the initial values μ⁰.
    let values: [Float]
    /// M: α_j, and whether all are equal by construction.
    let alpha: [Float]
    let alphaIsUniform: Bool
    /// M: β_j.
    let beta: [Float]
    let betaIsUniform: Bool
    /// H × Cv: v⁰ (`v_init`).
    let initialValues: [Float]?
    /// H × M: π_ij.
    let priors: [Float]?
    let fixed: FixedValues?
    /// M × C: λ_j per channel (`zeta_prior_precision`).
    let keyPriorPrecision: [Float]?
    /// M × Cv: λ^μ_j per channel (`mu_prior_precision`).
    let valuePriorPrecision: [Float]?
    let positional: PositionalTerms?
    /// H × M: weights where 0 are zeroed after the exponential.
    let weightMask: [Float]?
}

/// What solving a slice produces.
struct SliceResult {
    /// H × Cv: v̂_i = Σ_j W_ij μ_j.
    var tokenValues: [Float]
    /// H × Cv: wve (only with a value positional embedding).
    var positionalValues: [Float]?
    /// M × C: the keys after adaptation.
    var keys: [Float]
    /// M × Cv: the values after propagation.
    var values: [Float]
}
