import CProbattnKernels

/// The plain implementation of the operator on one slice: materialises the H×M weight matrix W and follows the
/// reference layer step by step (weights → key adaptation → value belief propagation → output). Covers every option.
///
/// The logits are assembled in a cancellation-free form: terms that the reference adds and then subtracts (the
/// magnitude prior against the key/value norms) are left out, and ‖q_i‖²/‖v⁰_i‖² row constants are dropped when the
/// matching precision is uniform (a softmax is invariant to them).
struct PlainSolver {
    let slice: AttentionSlice
    let options: ProbabilisticAttentionOptions

    private var H: Int { slice.tokenCount }
    private var M: Int { slice.unitCount }
    private var C: Int { slice.channels }
    private var Cv: Int { slice.valueChannels }
    /// Magnitude priors in force: requested and no explicit π (the reference's `elif`).
    private var magnitudePriorsActive: Bool { options.magnitudePriors && slice.priors == nil }

    /// Runs the whole operator on the slice. `runValuePropagation` is decided for the whole batch by the caller.
    func solve(runValuePropagation: Bool) -> SliceResult {
        var keys = slice.keys
        var values = slice.values
        var weights = [Float](repeating: 0, count: H * M)
        var logNormalisers = computeWeights(into: &weights, keys: keys, values: values)

        for _ in 0..<options.effectiveKeyAdaptationIterations {
            adaptKeys(&keys, weights: weights, logNormalisers: logNormalisers, values: values)
            logNormalisers = computeWeights(into: &weights, keys: keys, values: values)
        }

        var positionalValues: [Float]? = slice.positional?.value != nil ? [Float](repeating: 0, count: H * Cv) : nil
        if runValuePropagation, let fixed = slice.fixed {
            for _ in 0..<options.valuePropagationIterations {
                propagateValues(&values, weights: weights, fixed: fixed)
                if positionalValues != nil, let offsets = fixed.offsets {
                    // wve += W · offsets (offsets indexed by unit), with this iteration's weights.
                    multiply(weights, rows: H, inner: M, by: offsets, columns: Cv, into: &positionalValues!, accumulate: true)
                }
                computeWeights(into: &weights, keys: keys, values: values)
            }
        }

        var output = [Float](repeating: 0, count: H * Cv)
        multiply(weights, rows: H, inner: M, by: values, columns: Cv, into: &output, accumulate: false)
        if var wve = positionalValues, let embedding = slice.positional?.value {
            for i in 0..<H {
                for c in 0..<Cv {
                    var sum: Float = 0
                    let base = c * H * H + i * H
                    for j in 0..<M { sum += weights[i * M + j] * embedding[base + j] }
                    wve[i * Cv + c] += sum
                }
            }
            positionalValues = wve
        }
        if options.clampFixedOutputs, let fixed = slice.fixed {
            clamp(&output, fixed: fixed, valueChannels: Cv)
        }
        return SliceResult(tokenValues: output, positionalValues: positionalValues, keys: keys, values: values)
    }

    /// W ← the responsibilities for the current keys and values (spec §1.3, with the reference's numerics).
    /// Returns the row log-normalisers log Z_i (log W_ij = logit_ij + log mask_ij − log Z_i).
    @discardableResult
    func computeWeights(into weights: inout [Float], keys: [Float], values: [Float]) -> [Float] {
        computeLogits(into: &weights, keys: keys, values: values)
        return normaliseRows(&weights)
    }

    /// The unnormalised logits (the log of the weights before the row normalisation), H × M.
    func computeLogits(into weights: inout [Float], keys: [Float], values: [Float]) {
        let magnitude = magnitudePriorsActive
        let positional = slice.positional
        let hasQueryPositions = positional?.query != nil
        let hasKeyPositions = positional?.key != nil
        // Dot products q_i·ζ_j (+ q_i·R_ij + ζ_j·S_ji).
        multiplyTransposed(slice.queries, rows: H, inner: C, by: keys, columns: M, into: &weights)
        if let positional {
            addPositionalDots(&weights, keys: keys, positional: positional)
        }
        // Row terms: −½(1+[R])‖q_i‖² when α varies per unit.
        var queryRowTerm = [Float](repeating: 0, count: H)
        if !slice.alphaIsUniform {
            let factor: Float = hasQueryPositions ? 2 : 1
            for i in 0..<H { queryRowTerm[i] = factor * squaredNorm(slice.queries, row: i, width: C) }
        }
        // Column terms of the distance (cancelled by the magnitude prior when it is active).
        var keyColumnTerm = [Float](repeating: 0, count: M)
        if !magnitude {
            let factor: Float = hasKeyPositions ? 2 : 1
            for j in 0..<M { keyColumnTerm[j] = factor * squaredNorm(keys, row: j, width: C) }
        }
        let queryNorms = magnitude ? nil : positional?.queryNorms
        let keyNorms = magnitude ? nil : positional?.keyNormsTransposed
        for i in 0..<H {
            let rowTerm = queryRowTerm[i]
            for j in 0..<M {
                var distance = rowTerm + keyColumnTerm[j]
                if let queryNorms { distance += queryNorms[i * M + j] }
                if let keyNorms { distance += keyNorms[i * M + j] }
                weights[i * M + j] = slice.alpha[j] * (weights[i * M + j] - 0.5 * distance)
            }
        }
        addValueTerms(&weights, values: values, magnitude: magnitude)
        if let priors = slice.priors {
            for index in 0..<(H * M) { weights[index] += priors[index].logarithm }
        }
    }

    /// Adds Σ_c q_ic R[c,i,j] and Σ_c ζ_jc S[c,j,i] to the dot products (both through BLAS matrix-vector products).
    private func addPositionalDots(_ weights: inout [Float], keys: [Float], positional: PositionalTerms) {
        let plane = H * H
        weights.withUnsafeMutableBufferPointer { w in
            slice.queries.withUnsafeBufferPointer { q in
                if let embedding = positional.query {
                    embedding.withUnsafeBufferPointer { r in
                        for i in 0..<H {
                            BLAS.sgemv(transposeA: true, rows: C, columns: H, alpha: 1, a: r.baseAddress! + i * H,
                                       lda: plane, x: q.baseAddress! + i * C, beta: 1, y: w.baseAddress! + i * M)
                        }
                    }
                }
            }
            if let embedding = positional.key {
                var column = [Float](repeating: 0, count: H)
                embedding.withUnsafeBufferPointer { s in
                    keys.withUnsafeBufferPointer { k in
                        column.withUnsafeMutableBufferPointer { y in
                            for j in 0..<M {
                                BLAS.sgemv(transposeA: true, rows: C, columns: H, alpha: 1, a: s.baseAddress! + j * H,
                                           lda: plane, x: k.baseAddress! + j * C, beta: 0, y: y.baseAddress!)
                                for i in 0..<H { w[i * M + j] += y[i] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the value-likelihood term (with v⁰) and the value part of the magnitude prior.
    private func addValueTerms(_ weights: inout [Float], values: [Float], magnitude: Bool) {
        let valueEmbedding = magnitude ? slice.positional?.value : nil
        // Coefficient of ‖μ_j‖² (times β_j): +½ from the magnitude prior without P, −½ from the v⁰ likelihood.
        var normCoefficient: Float = 0
        if magnitude && valueEmbedding == nil { normCoefficient += 0.5 }
        if slice.initialValues != nil { normCoefficient -= 0.5 }
        if let initial = slice.initialValues {
            var products = [Float](repeating: 0, count: H * M)
            multiplyTransposed(initial, rows: H, inner: Cv, by: values, columns: M, into: &products)
            for i in 0..<H {
                let rowTerm: Float = slice.betaIsUniform ? 0 : 0.5 * squaredNorm(initial, row: i, width: Cv)
                for j in 0..<M { weights[i * M + j] += slice.beta[j] * (products[i * M + j] - rowTerm) }
            }
        }
        if normCoefficient != 0 {
            for j in 0..<M {
                let term = normCoefficient * slice.beta[j] * squaredNorm(values, row: j, width: Cv)
                if term == 0 { continue }
                for i in 0..<H { weights[i * M + j] += term }
            }
        }
        if let embedding = valueEmbedding {
            // +½ β_j ‖μ_j + P[:, i, j]‖²
            for i in 0..<H {
                for j in 0..<M where slice.beta[j] != 0 {
                    var sum: Float = 0
                    for c in 0..<Cv {
                        let x = values[j * Cv + c] + embedding[c * H * H + i * H + j]
                        sum += x * x
                    }
                    weights[i * M + j] += 0.5 * slice.beta[j] * sum
                }
            }
        }
    }

    /// Row max, exp, mask, and division by (row sum + eps), as the reference does. A row whose logits are all −∞
    /// (π = 0 everywhere) gets zero weights instead of NaN.
    private func normaliseRows(_ weights: inout [Float]) -> [Float] {
        var logNormalisers = [Float](repeating: -.infinity, count: H)
        guard let mask = slice.weightMask else {
            // No mask: the vectorised row pass of the blocked kernel does exactly this.
            let (rows, columns) = (H, M)
            weights.withUnsafeMutableBufferPointer { w in
                logNormalisers.withUnsafeMutableBufferPointer { z in
                    guard let base = w.baseAddress else { return }
                    probattn_softmax_strip(base, Int32(rows), Int32(columns), Int32(columns), nil,
                                           probabilisticAttentionEpsilon, z.baseAddress)
                }
            }
            return logNormalisers
        }
        for i in 0..<H {
            let base = i * M
            var maximum = -Float.infinity
            for j in 0..<M where weights[base + j] > maximum { maximum = weights[base + j] }
            if maximum == -.infinity {
                for j in 0..<M { weights[base + j] = 0 }
                continue
            }
            var sum: Float = 0
            for j in 0..<M {
                var e = (weights[base + j] - maximum).exponential
                e *= mask[base + j]
                weights[base + j] = e
                sum += e
            }
            let scale = 1 / (sum + probabilisticAttentionEpsilon)
            for j in 0..<M { weights[base + j] *= scale }
            logNormalisers[i] = maximum + (sum + probabilisticAttentionEpsilon).logarithm
        }
        return logNormalisers
    }

    /// One M-step of key adaptation (spec §1.6).
    private func adaptKeys(_ keys: inout [Float], weights: [Float], logNormalisers: [Float], values: [Float]) {
        var columnSums = [Float](repeating: 0, count: M)
        for i in 0..<H {
            for j in 0..<M { columnSums[j] += weights[i * M + j] }
        }
        var updates = [Float](repeating: 0, count: M * C)   // Wᵀ Q
        multiplyTransposedLeft(weights, rows: H, columns: M, by: slice.queries, width: C, into: &updates)
        let underflowed = ResponsibilityRescue.units(totals: columnSums, options: options,
                                                     hasPrior: slice.keyPriorPrecision != nil)
        if !underflowed.isEmpty {
            var logits = [Float](repeating: 0, count: H * M)
            computeLogits(into: &logits, keys: keys, values: values)
            for j in underflowed {
                let logWeights = (0..<H).map { i -> Float in
                    let mask = slice.weightMask.map { $0[i * M + j].logarithm } ?? 0
                    return logits[i * M + j] + mask - logNormalisers[i]
                }
                ResponsibilityRescue.replace(unit: j, logWeights: logWeights, queries: slice.queries, width: C,
                                             updates: &updates, totals: &columnSums)
            }
        }
        updateMeans(&keys, initial: slice.keys, updates: updates, totals: columnSums, width: C,
                    precision: slice.alpha, priorPrecision: slice.keyPriorPrecision, epsilon: 0)
    }

    /// One M-step of value belief propagation (spec §1.7).
    private func propagateValues(_ values: inout [Float], weights: [Float], fixed: FixedValues) {
        var updates = [Float](repeating: 0, count: M * Cv)   // Wᵀ V*
        multiplyTransposedLeft(weights, rows: H, columns: M, by: fixed.values, width: Cv, into: &updates)
        var totals = [Float](repeating: 0, count: M)      // Wᵀ m
        multiplyTransposedLeft(weights, rows: H, columns: M, by: fixed.indicator, width: 1, into: &totals)
        updateMeans(&values, initial: slice.values, updates: updates, totals: totals, width: Cv,
                    precision: slice.beta, priorPrecision: slice.valuePriorPrecision,
                    epsilon: probabilisticAttentionEpsilon)
    }

    /// The shared M-step: mean_j ← (λ centre_j + p_j S_j) / (λ + p_j (T_j + ε)) with a prior, else S_j / (T_j + ε).
    func updateMeans(_ means: inout [Float], initial: [Float], updates: [Float], totals: [Float], width: Int,
                     precision: [Float], priorPrecision: [Float]?, epsilon: Float) {
        MeanUpdate.apply(&means, initial: initial, updates: updates, totals: totals, unitCount: M, width: width,
                         precision: precision, priorPrecision: priorPrecision, epsilon: epsilon,
                         centre: options.priorCentre, policy: options.zeroResponsibility)
    }
}

/// The M-step formula shared by key adaptation and value propagation, by the plain and blocked paths.
enum MeanUpdate {
    /// means[j, c] ← (λ_jc·centre_jc + p_j·S_jc) / (λ_jc + p_j·(T_j + ε)) with a prior λ, else S_jc / (T_j + ε).
    /// `centre` is the previous iterate (reference) or `initial`. Unless the policy is `.divide`, a unit whose denominator
    /// vanishes (no prior and T_j below `negligibleResponsibility` with ε = 0, or a zero denominator) keeps its mean.
    static func apply(_ means: inout [Float], initial: [Float], updates: [Float], totals: [Float], unitCount: Int,
                      width: Int, precision: [Float], priorPrecision: [Float]?, epsilon: Float,
                      centre: PriorCentre, policy: ZeroResponsibilityPolicy) {
        let guardZero = policy != .divide
        for j in 0..<unitCount {
            let total = totals[j] + epsilon
            if let lambda = priorPrecision {
                let p = precision[j]
                for c in 0..<width {
                    let index = j * width + c
                    let prior = centre == .initial ? initial[index] : means[index]
                    let denominator = lambda[index] + p * total
                    if guardZero && (denominator == 0 || !denominator.isFinite) { continue }
                    means[index] = (lambda[index] * prior + p * updates[index]) / denominator
                }
            } else {
                if guardZero && (total < negligibleResponsibility || !total.isFinite) { continue }
                for c in 0..<width { means[j * width + c] = updates[j * width + c] / total }
            }
        }
    }
}

/// The log-domain M-step for units whose total responsibility underflows (`ZeroResponsibilityPolicy.logDomain`).
enum ResponsibilityRescue {
    /// The units to rescue: ML key steps (no prior) under `.logDomain` with Σ_i W_ij below `negligibleResponsibility`.
    static func units(totals: [Float], options: ProbabilisticAttentionOptions, hasPrior: Bool) -> [Int] {
        guard options.zeroResponsibility == .logDomain, !hasPrior else { return [] }
        return totals.indices.filter { !(totals[$0] >= negligibleResponsibility) }
    }

    /// Replaces unit j's update by the softmax_i(log W_ij)-weighted mean of the queries (and its total by 1), so
    /// that the M-step's update / total is that mean. Leaves both unchanged when every log W_ij is −∞.
    static func replace(unit j: Int, logWeights: [Float], queries: [Float], width C: Int,
                        updates: inout [Float], totals: inout [Float]) {
        var maximum = -Float.infinity
        for t in logWeights where t > maximum { maximum = t }
        guard maximum > -.infinity, maximum.isFinite else { return }
        var mean = [Double](repeating: 0, count: C)
        var total = 0.0
        for (i, t) in logWeights.enumerated() {
            let w = Double((t - maximum).exponential)
            if w == 0 { continue }
            total += w
            for c in 0..<C { mean[c] += w * Double(queries[i * C + c]) }
        }
        for c in 0..<C { updates[j * C + c] = Float(mean[c] / total) }
        totals[j] = 1
    }
}

/// Sets (or, for a soft indicator in (0, 1), blends) the outputs at fixed tokens to their fixed values.
func clamp(_ output: inout [Float], fixed: FixedValues, valueChannels: Int) {
    for (i, m) in fixed.indicator.enumerated() where m > 0 {
        for c in 0..<valueChannels {
            let index = i * valueChannels + c
            output[index] = m >= 1 ? fixed.rawValues[index] : (1 - m) * output[index] + m * fixed.rawValues[index]
        }
    }
}

/// ‖row‖² of a row-major matrix of the given width.
func squaredNorm(_ matrix: [Float], row: Int, width: Int) -> Float {
    var sum: Float = 0
    for c in 0..<width {
        let x = matrix[row * width + c]
        sum += x * x
    }
    return sum
}

/// out (rows × columns) ← A (rows × inner) · Bᵀ, with B stored columns × inner.
func multiplyTransposed(_ a: [Float], rows: Int, inner: Int, by b: [Float], columns: Int, into out: inout [Float]) {
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { c in
                guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                BLAS.sgemm(transposeA: false, transposeB: true, m: rows, n: columns, k: inner, alpha: 1,
                           a: a, lda: inner, b: b, ldb: inner, beta: 0, c: c, ldc: columns)
            }
        }
    }
}

/// out (rows × columns) ← A (rows × inner) · B (inner × columns), or += when `accumulate`.
func multiply(_ a: [Float], rows: Int, inner: Int, by b: [Float], columns: Int, into out: inout [Float],
              accumulate: Bool) {
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { c in
                guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                BLAS.sgemm(transposeA: false, transposeB: false, m: rows, n: columns, k: inner, alpha: 1,
                           a: a, lda: inner, b: b, ldb: columns, beta: accumulate ? 1 : 0, c: c, ldc: columns)
            }
        }
    }
}

/// out (columns × width) ← Aᵀ · B, with A rows × columns and B rows × width.
func multiplyTransposedLeft(_ a: [Float], rows: Int, columns: Int, by b: [Float], width: Int,
                            into out: inout [Float]) {
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { c in
                guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                BLAS.sgemm(transposeA: true, transposeB: false, m: columns, n: width, k: rows, alpha: 1,
                           a: a, lda: columns, b: b, ldb: width, beta: 0, c: c, ldc: width)
            }
        }
    }
}
