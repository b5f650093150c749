import ProbattnCore

/// Value belief propagation through cached token-to-unit weights (spec §1.7, the closed form with no value prior):
///
///     μ_j = Σ_i W_ij m_i v*_i / (Σ_i W_ij m_i + ε),    out_i = Σ_j W_ij μ_j
///
/// This is exactly what an attention variant that gives its weights (`AdaptedImage.weights`) computes in one call
/// with the same `fixed` input, so the propagator can run its EM rounds through it instead of calling the variant on
/// every round: two (H × M)·(M × K) products per round, with W computed once per image. Called by `BeliefPropagator`
/// on every EM round; stateless.
struct MixturePropagation {
    /// H × M, row-major.
    let weights: [Float]
    let tokens: Int
    let units: Int
    /// The ε of the reference's ML update (a unit no observed token reaches gets the value 0).
    static let epsilon: Float = 1e-20

    init?(weights: [Float]?, tokens: Int, units: Int) {
        guard let weights, tokens > 0, units > 0, weights.count == tokens * units else { return nil }
        self.weights = weights
        self.tokens = tokens
        self.units = units
    }

    /// The token values H × K for the observations `fixed` (H × (K + 1): values, then the weight m_i).
    func propagate(fixed: [Float], valueChannels k: Int) -> [Float] {
        let h = tokens, m = units, width = k + 1
        precondition(fixed.count == h * width, "fixed must be H × (K + 1)")
        // Σ_i W_ij [m_i v*_i, m_i] for every unit j: Wᵀ · fixed (the value columns are pre-multiplied by m_i).
        var observed = fixed
        for i in 0..<h {
            let weight = fixed[i * width + k]
            for c in 0..<k { observed[i * width + c] *= weight }
        }
        var sums = [Float](repeating: 0, count: m * width)
        var means = [Float](repeating: 0, count: m * k)
        var output = [Float](repeating: 0, count: h * k)
        weights.withUnsafeBufferPointer { w in
            observed.withUnsafeBufferPointer { b in
                sums.withUnsafeMutableBufferPointer { s in
                    BLAS.sgemm(transposeA: true, transposeB: false, m: m, n: width, k: h, alpha: 1,
                               a: w.baseAddress!, lda: m, b: b.baseAddress!, ldb: width, beta: 0,
                               c: s.baseAddress!, ldc: width)
                }
            }
            for j in 0..<m {
                let total = sums[j * width + k] + Self.epsilon
                for c in 0..<k { means[j * k + c] = sums[j * width + c] / total }
            }
            means.withUnsafeBufferPointer { mu in
                output.withUnsafeMutableBufferPointer { o in
                    BLAS.sgemm(transposeA: false, transposeB: false, m: h, n: k, k: m, alpha: 1,
                               a: w.baseAddress!, lda: m, b: mu.baseAddress!, ldb: k, beta: 0,
                               c: o.baseAddress!, ldc: k)
                }
            }
        }
        return output
    }
}
