import ProbattnPluginHost
import ProbattnStages

/// One EM round of `BeliefPropagator`: the token values H × K the mixture gives for the observations `fixed`
/// (H × (K + 1): values, then the observation weight m_i). Called once per round; stateless.
protocol ValuePropagation {
    /// `budget`: the threads the round may use (its result is the same for every budget).
    func propagate(fixed: [Float], valueChannels k: Int, budget: ComputeBudget) throws -> [Float]
}

/// A round as a call of the attention variant (for variants that give no weights to cache).
struct VariantPropagation: ValuePropagation {
    let attention: any TokenAttention
    /// The call without `fixed`; each round fills it in.
    let call: AttentionInput

    func propagate(fixed: [Float], valueChannels k: Int, budget: ComputeBudget) throws -> [Float] {
        precondition(k == call.valueChannels, "the call was prepared for \(call.valueChannels) classes")
        var round = call
        round.fixed = fixed
        round.threads = budget.threads
        return try attention.attend(round).tokenValues
    }
}

/// Value belief propagation through cached token-to-unit weights (spec §1.7, the closed form with no value prior):
///
///     μ_j = Σ_i W_ij m_i v*_i / (Σ_i W_ij m_i + ε),    out_i = Σ_j W_ij μ_j
///
/// This is what an attention variant that gives its weights (`AdaptedImage.weights`) computes in one call with the
/// same `fixed` input (exactly, up to the entries `SparseWeights` dropped), so the propagator can run its EM rounds
/// through it instead of calling the variant on every round: two sparse passes over W per round, with W computed once
/// per image. Called by `BeliefPropagator` on every EM round; stateless.
struct MixturePropagation: ValuePropagation {
    let weights: SparseWeights
    /// The ε of the reference's ML update (a unit no observed token reaches gets the value 0).
    static let epsilon: Float = 1e-20
    /// From this many tokens on, each pass is cut into two chunks of tokens that may run on two threads (below it
    /// the hand-off costs more than it saves). The cut depends on the token count alone, never on the budget, so
    /// the sums (added in chunk order) are the same for every budget.
    static let parallelTokens = 2000

    init?(weights: SparseWeights?, tokens: Int, units: Int) {
        guard let weights, weights.tokens == tokens, weights.units == units else { return nil }
        self.weights = weights
    }

    /// `rounds` EM rounds of two classes, each the `propagate` of the observations `observe` gives (per token: the
    /// two values and the weight m_i, read after the previous round settled), followed by `settle` of every token's
    /// two new values: the caller's per-token update. Each chunk of tokens gathers a token's values from the units,
    /// settles it and at once scatters its next observation into the chunk's sums, so every round reads W's rows
    /// once instead of twice; the sums, the means and the outputs are those of `propagate` (the same terms in the
    /// same order, chunks added in chunk order), so the result is the same bits. `observe` and `settle` are called
    /// for the tokens of both chunks at once (within `budget`): they must touch only their own token's data.
    func fusedTwoClassRounds(rounds: Int, budget: ComputeBudget, observe: (Int) -> (Float, Float, Float),
                             settle: (Int, Float, Float) -> Void) {
        let h = weights.tokens, m = weights.units
        let chunks = h >= Self.parallelTokens ? 2 : 1
        let parts = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunks * m * 3)
        defer { parts.deallocate() }
        let mu = UnsafeMutableBufferPointer<Float>.allocate(capacity: m * 2)
        defer { mu.deallocate() }
        weights.rowStart.withUnsafeBufferPointer { start in
        weights.columns.withUnsafeBufferPointer { column in
        weights.values.withUnsafeBufferPointer { value in
            @inline(__always) func scatter(_ i: Int, into p: UnsafeMutablePointer<Float>) {
                let (v0, v1, observed) = observe(i)
                if observed == 0 { return }
                for e in Int(start[i])..<Int(start[i + 1]) {
                    let w = value[e] * observed, so = Int(column[e]) * 3
                    p[so] += w * v0; p[so + 1] += w * v1; p[so + 2] += w
                }
            }
            // The sums of the chunks' parts in chunk order, and the unit means from them.
            func means() {
                for j in 0..<m {
                    var s0: Float = 0, s1: Float = 0, s2: Float = 0
                    for c in 0..<chunks {
                        let o = c * m * 3 + j * 3
                        s0 += parts[o]; s1 += parts[o + 1]; s2 += parts[o + 2]
                    }
                    let total = s2 + Self.epsilon
                    mu[j * 2] = s0 / total; mu[j * 2 + 1] = s1 / total
                }
            }
            parts.initialize(repeating: 0)
            budget.forEachChunk(count: chunks) { chunk in
                let p = parts.baseAddress! + chunk * m * 3
                for i in ComputeBudget.range(ofChunk: chunk, count: chunks, total: h) { scatter(i, into: p) }
            }
            means()
            for round in 0..<rounds {
                let last = round == rounds - 1
                if !last { parts.initialize(repeating: 0) }
                budget.forEachChunk(count: chunks) { chunk in
                    let p = parts.baseAddress! + chunk * m * 3
                    let range = ComputeBudget.range(ofChunk: chunk, count: chunks, total: h)
                    var i = range.lowerBound
                    // Four tokens' gathers side by side (four independent sums, each over its own row in order, so
                    // each is the sum of the one-token loop below): a row's sum is a chain of dependent adds, and
                    // four chains keep the adder busy.
                    while i + 4 <= range.upperBound {
                        let s0 = Int(start[i]), s1 = Int(start[i + 1]), s2 = Int(start[i + 2])
                        let s3 = Int(start[i + 3]), s4 = Int(start[i + 4])
                        let n = min(s1 - s0, s2 - s1, s3 - s2, s4 - s3)
                        var a0: Float = 0, b0: Float = 0, a1: Float = 0, b1: Float = 0
                        var a2: Float = 0, b2: Float = 0, a3: Float = 0, b3: Float = 0
                        for q in 0..<n {
                            let w0 = value[s0 + q], m0 = Int(column[s0 + q]) * 2
                            let w1 = value[s1 + q], m1 = Int(column[s1 + q]) * 2
                            let w2 = value[s2 + q], m2 = Int(column[s2 + q]) * 2
                            let w3 = value[s3 + q], m3 = Int(column[s3 + q]) * 2
                            a0 += w0 * mu[m0]; b0 += w0 * mu[m0 + 1]
                            a1 += w1 * mu[m1]; b1 += w1 * mu[m1 + 1]
                            a2 += w2 * mu[m2]; b2 += w2 * mu[m2 + 1]
                            a3 += w3 * mu[m3]; b3 += w3 * mu[m3 + 1]
                        }
                        @inline(__always) func rest(_ from: Int, _ to: Int, _ a: inout Float, _ b: inout Float) {
                            for e in from..<to {
                                let w = value[e], mo = Int(column[e]) * 2
                                a += w * mu[mo]; b += w * mu[mo + 1]
                            }
                        }
                        rest(s0 + n, s1, &a0, &b0); rest(s1 + n, s2, &a1, &b1)
                        rest(s2 + n, s3, &a2, &b2); rest(s3 + n, s4, &a3, &b3)
                        settle(i, a0, b0)
                        if !last { scatter(i, into: p) }
                        settle(i + 1, a1, b1)
                        if !last { scatter(i + 1, into: p) }
                        settle(i + 2, a2, b2)
                        if !last { scatter(i + 2, into: p) }
                        settle(i + 3, a3, b3)
                        if !last { scatter(i + 3, into: p) }
                        i += 4
                    }
                    while i < range.upperBound {
                        var a: Float = 0, b: Float = 0
                        for e in Int(start[i])..<Int(start[i + 1]) {
                            let w = value[e], mo = Int(column[e]) * 2
                            a += w * mu[mo]; b += w * mu[mo + 1]
                        }
                        settle(i, a, b)
                        if !last { scatter(i, into: p) }
                        i += 1
                    }
                }
                if !last { means() }
            }
        }
        }
        }
    }

    /// The token values H × K for the observations `fixed` (H × (K + 1): values, then the weight m_i).
    func propagate(fixed: [Float], valueChannels k: Int, budget: ComputeBudget) -> [Float] {
        let h = weights.tokens, m = weights.units, width = k + 1
        precondition(fixed.count == h * width, "fixed must be H × (K + 1)")
        var sums = [Float](repeating: 0, count: m * width)
        var means = [Float](repeating: 0, count: m * k)
        var output = [Float](repeating: 0, count: h * k)
        weights.rowStart.withUnsafeBufferPointer { start in
        weights.columns.withUnsafeBufferPointer { column in
        weights.values.withUnsafeBufferPointer { value in
        fixed.withUnsafeBufferPointer { f in
        sums.withUnsafeMutableBufferPointer { s in
        means.withUnsafeMutableBufferPointer { mu in
        output.withUnsafeMutableBufferPointer { out in
            if k == 2 {
                // The common case (object/background), unrolled: the generic loops below cost twice as much. Large
                // images cut the tokens into two chunks (run within `budget`), each scattering into its own sums
                // (`parts`, added up in chunk order after), so the result depends neither on the budget nor on
                // thread timing.
                let chunks = h >= Self.parallelTokens ? 2 : 1
                let parts = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunks * m * 3)
                defer { parts.deallocate() }
                parts.initialize(repeating: 0)
                budget.forEachChunk(count: chunks) { chunk in
                    let p = parts.baseAddress! + chunk * m * 3
                    for i in ComputeBudget.range(ofChunk: chunk, count: chunks, total: h) {
                        let o = i * 3, observed = f[o + 2]
                        if observed == 0 { continue }
                        let v0 = f[o], v1 = f[o + 1]
                        for e in Int(start[i])..<Int(start[i + 1]) {
                            let w = value[e] * observed, so = Int(column[e]) * 3
                            p[so] += w * v0; p[so + 1] += w * v1; p[so + 2] += w
                        }
                    }
                }
                for c in 0..<chunks {
                    for j in 0..<(m * 3) { s[j] += parts[c * m * 3 + j] }
                }
                for j in 0..<m {
                    let total = s[j * 3 + 2] + Self.epsilon
                    mu[j * 2] = s[j * 3] / total; mu[j * 2 + 1] = s[j * 3 + 1] / total
                }
                budget.forEachChunk(count: chunks) { chunk in
                    for i in ComputeBudget.range(ofChunk: chunk, count: chunks, total: h) {
                        var a: Float = 0, b: Float = 0
                        for e in Int(start[i])..<Int(start[i + 1]) {
                            let w = value[e], mo = Int(column[e]) * 2
                            a += w * mu[mo]; b += w * mu[mo + 1]
                        }
                        out[i * 2] = a; out[i * 2 + 1] = b
                    }
                }
                return
            }
            // Σ_i W_ij [m_i v*_i, m_i] for every unit j (tokens with m_i = 0 add nothing).
            for i in 0..<h {
                let o = i * width
                let observed = f[o + k]
                if observed == 0 { continue }
                for e in Int(start[i])..<Int(start[i + 1]) {
                    let w = value[e] * observed, so = Int(column[e]) * width
                    for c in 0..<k { s[so + c] += w * f[o + c] }
                    s[so + k] += w
                }
            }
            for j in 0..<m {
                let total = s[j * width + k] + Self.epsilon
                for c in 0..<k { mu[j * k + c] = s[j * width + c] / total }
            }
            for i in 0..<h {
                let o = i * k
                for e in Int(start[i])..<Int(start[i + 1]) {
                    let w = value[e], mo = Int(column[e]) * k
                    for c in 0..<k { out[o + c] += w * mu[mo + c] }
                }
            }
        }
        }
        }
        }
        }
        }
        }
        return output
    }
}
