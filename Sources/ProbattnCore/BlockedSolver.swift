import CBLAS
import CProbattnKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The blocked ("flash-style") implementation of the operator on one slice. It never materialises the H×M weights:
/// tokens are processed in row blocks of `rowBlock(unitCount:)` rows; for each block one GEMM gives the block's logits against
/// every unit (a `rowBlock × M` strip), a vectorised pass normalises the strip row by row (row max, exp, sum, as the
/// reference does), and a second GEMM folds the strip into whatever the next step needs:
///
/// - key adaptation:   Σ_i W_ij [q_i, 1]            (M × (C+1): the key updates and column sums),
/// - value propagation: Σ_i W_ij [m_i·v*_i, m_i]    (M × (Cv+1)), over the tokens with feedback only,
/// - the output:       v̂_i = Σ_j W_ij μ_j           (written straight into the block's output rows).
///
/// The row blocks are cut into a fixed number of chunks that run on at most `options.threads` threads (the caller's
/// compute budget; nil = 1): a sums pass into `reductionChunks` chunks (fewer for fewer blocks), each with its own
/// strip and partial EM sums, added in chunk order after the pass; the output pass into one chunk per row block
/// (each writes its own rows). The chunks never depend on the thread count, so the result is bit-identical for every
/// budget. OpenBLAS runs with the process's thread count, which the executables set once at start (1 unless
/// OPENBLAS_NUM_THREADS says otherwise; docs/PERFORMANCE.md). Extra memory: per chunk one `rowBlock × M` strip and
/// one M × (C+1) partial, plus O((H + M)(C + Cv)) for the augmented operands.
///
/// The logits come from one product of augmented operands, A_i = [q_i, v⁰_i, ‖q_i‖², ‖v⁰_i‖²] and
/// B_j = [α_j ζ_j, β_j μ_j, −α_j/2, −β_j/2] (the last three blocks only when needed), plus a per-unit bias; the
/// terms that cancel in the reference (magnitude prior against the key norms; row constants under uniform precisions)
/// are left out, exactly as in the plain path.
struct BlockedSolver {
    let slice: AttentionSlice
    let options: ProbabilisticAttentionOptions

    /// Tokens per row block: as many as keep one strip at about 4 Mi floats (16 MB), between 16 and 256. Larger
    /// blocks amortise OpenBLAS's packing of the unit operand (repacked for every block); smaller ones bound the
    /// strip's memory when M is large (M = 65536 gives 64-row blocks).
    static func rowBlock(unitCount: Int) -> Int {
        let rows = (4 << 20) / max(1, unitCount)
        return min(256, max(16, rows / 16 * 16))
    }

    /// Why the blocked kernel cannot run this slice (nil when it can): explicit priors, positional embeddings and
    /// weight masks are left to the plain path.
    static func unsupportedReason(_ slice: AttentionSlice, options: ProbabilisticAttentionOptions) -> String? {
        if slice.priors != nil { return "explicit mixture priors (pi)" }
        if slice.positional != nil { return "positional embeddings" }
        if slice.weightMask != nil { return "a weight mask" }
        return nil
    }

    private var H: Int { slice.tokenCount }
    private var M: Int { slice.unitCount }
    private var C: Int { slice.channels }
    private var Cv: Int { slice.valueChannels }

    /// Column layout of the augmented operands.
    private struct Layout {
        var width = 0          // K
        var valueOffset: Int?  // v⁰ / β μ block
        var queryNorm: Int?    // ‖q_i‖² / −α_j/2
        var valueNorm: Int?    // ‖v⁰_i‖² / −β_j/2
    }

    private func layout() -> Layout {
        var l = Layout()
        l.width = C
        if slice.initialValues != nil { l.valueOffset = l.width; l.width += Cv }
        if !slice.alphaIsUniform { l.queryNorm = l.width; l.width += 1 }
        if slice.initialValues != nil && !slice.betaIsUniform { l.valueNorm = l.width; l.width += 1 }
        return l
    }

    /// A (H × K): the token side of the logits product (constant through the iterations).
    private func tokenOperand(_ l: Layout) -> [Float] {
        var a = [Float](repeating: 0, count: H * l.width)
        for i in 0..<H {
            for c in 0..<C { a[i * l.width + c] = slice.queries[i * C + c] }
            if let offset = l.valueOffset, let v0 = slice.initialValues {
                for c in 0..<Cv { a[i * l.width + offset + c] = v0[i * Cv + c] }
            }
            if let column = l.queryNorm { a[i * l.width + column] = squaredNorm(slice.queries, row: i, width: C) }
            if let column = l.valueNorm, let v0 = slice.initialValues {
                a[i * l.width + column] = squaredNorm(v0, row: i, width: Cv)
            }
        }
        return a
    }

    /// B (M × K) and the per-unit bias for the current keys and values; the bias is nil when it is all zero.
    private func unitOperand(_ l: Layout, keys: [Float], values: [Float]) -> (b: [Float], bias: [Float]?) {
        var b = [Float](repeating: 0, count: M * l.width)
        var bias = [Float](repeating: 0, count: M)
        let magnitude = options.magnitudePriors
        var normCoefficient: Float = magnitude ? 0.5 : 0
        if slice.initialValues != nil { normCoefficient -= 0.5 }
        var anyBias = false
        for j in 0..<M {
            let alpha = slice.alpha[j], beta = slice.beta[j]
            for c in 0..<C { b[j * l.width + c] = alpha * keys[j * C + c] }
            if let offset = l.valueOffset {
                for c in 0..<Cv { b[j * l.width + offset + c] = beta * values[j * Cv + c] }
            }
            if let column = l.queryNorm { b[j * l.width + column] = -0.5 * alpha }
            if let column = l.valueNorm { b[j * l.width + column] = -0.5 * beta }
            var term: Float = 0
            if !magnitude { term -= alpha * 0.5 * squaredNorm(keys, row: j, width: C) }
            if normCoefficient != 0 && beta != 0 { term += normCoefficient * beta * squaredNorm(values, row: j, width: Cv) }
            bias[j] = term
            if term != 0 { anyBias = true }
        }
        return (b, anyBias ? bias : nil)
    }

    /// What a weight update feeds.
    private enum Consumer {
        /// Σ_i W_ij · rows of `right` (width columns), summed over the tokens listed in the left operand.
        case sums(right: [Float], width: Int)
        /// v̂ = W · μ.
        case output(values: [Float])
    }

    /// The threads the passes may use: the caller's budget (`options.threads`), 1 when none is given.
    var threadCount: Int { max(1, options.threads ?? 1) }

    /// The chunks of a sums pass (at most one per row block): each accumulates its own partial sums, added in chunk
    /// order. A constant, so that the sums do not depend on the thread count.
    static let reductionChunks = 2

    func solve(runValuePropagation: Bool) -> SliceResult {
        let l = layout()
        let a = tokenOperand(l)
        var keys = slice.keys
        var values = slice.values

        for _ in 0..<options.effectiveKeyAdaptationIterations {
            // [q_i, 1]: the key updates and the column sums in one product.
            var right = [Float](repeating: 1, count: H * (C + 1))
            for i in 0..<H { for c in 0..<C { right[i * (C + 1) + c] = slice.queries[i * C + c] } }
            let (b, bias) = unitOperand(l, keys: keys, values: values)
            var logNormalisers = [Float](repeating: 0, count: H)
            let sums = pass(tokens: a, tokenCount: H, width: l.width, units: b, bias: bias,
                            consumer: .sums(right: right, width: C + 1), logNormalisers: &logNormalisers)
            var (updates, totals) = split(sums, width: C)
            for j in ResponsibilityRescue.units(totals: totals, options: options,
                                                hasPrior: slice.keyPriorPrecision != nil) {
                // log W_ij = A_i·B_j + bias_j − log Z_i, for every token.
                var logWeights = [Float](repeating: 0, count: H)
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        logWeights.withUnsafeMutableBufferPointer { y in
                            BLAS.sgemv(transposeA: false, rows: H, columns: l.width, alpha: 1, a: a.baseAddress!,
                                       lda: l.width, x: b.baseAddress! + j * l.width, beta: 0, y: y.baseAddress!)
                        }
                    }
                }
                let columnBias = bias?[j] ?? 0
                for i in 0..<H { logWeights[i] += columnBias - logNormalisers[i] }
                ResponsibilityRescue.replace(unit: j, logWeights: logWeights, queries: slice.queries, width: C,
                                             updates: &updates, totals: &totals)
            }
            MeanUpdate.apply(&keys, initial: slice.keys, updates: updates, totals: totals, unitCount: M, width: C,
                             precision: slice.alpha, priorPrecision: slice.keyPriorPrecision, epsilon: 0,
                             centre: options.priorCentre, policy: options.zeroResponsibility)
        }

        if runValuePropagation, let fixed = slice.fixed, options.valuePropagationIterations > 0 {
            // Only tokens whose [v*_i, m_i] row is nonzero contribute to the value sums.
            let active = (0..<H).filter { i in
                fixed.indicator[i] != 0 || (0..<Cv).contains { fixed.values[i * Cv + $0] != 0 }
            }
            var activeTokens = [Float](repeating: 0, count: active.count * l.width)
            var right = [Float](repeating: 0, count: active.count * (Cv + 1))
            for (row, i) in active.enumerated() {
                for k in 0..<l.width { activeTokens[row * l.width + k] = a[i * l.width + k] }
                for c in 0..<Cv { right[row * (Cv + 1) + c] = fixed.values[i * Cv + c] }
                right[row * (Cv + 1) + Cv] = fixed.indicator[i]
            }
            for _ in 0..<options.valuePropagationIterations {
                let (b, bias) = unitOperand(l, keys: keys, values: values)
                let sums = pass(tokens: activeTokens, tokenCount: active.count, width: l.width, units: b, bias: bias,
                                consumer: .sums(right: right, width: Cv + 1))
                let (updates, totals) = split(sums, width: Cv)
                MeanUpdate.apply(&values, initial: slice.values, updates: updates, totals: totals, unitCount: M,
                                 width: Cv, precision: slice.beta, priorPrecision: slice.valuePriorPrecision,
                                 epsilon: probabilisticAttentionEpsilon, centre: options.priorCentre,
                                 policy: options.zeroResponsibility)
            }
        }

        let (b, bias) = unitOperand(l, keys: keys, values: values)
        var output = pass(tokens: a, tokenCount: H, width: l.width, units: b, bias: bias,
                          consumer: .output(values: values))
        if options.clampFixedOutputs, let fixed = slice.fixed { clamp(&output, fixed: fixed, valueChannels: Cv) }
        return SliceResult(tokenValues: output, positionalValues: nil, keys: keys, values: values)
    }

    /// Splits M × (width + 1) sums into the M × width updates and the M totals.
    private func split(_ sums: [Float], width: Int) -> ([Float], [Float]) {
        var updates = [Float](repeating: 0, count: M * width)
        var totals = [Float](repeating: 0, count: M)
        for j in 0..<M {
            for c in 0..<width { updates[j * width + c] = sums[j * (width + 1) + c] }
            totals[j] = sums[j * (width + 1) + width]
        }
        return (updates, totals)
    }

    /// One weight update over `tokenCount` rows of the augmented token operand: per row block, logits strip →
    /// normalised weights → the consumer's product. Returns the reduced M × width sums, or the H × Cv output.
    /// `logNormalisers` (tokenCount values), when given, receives log Z_i of every row.
    private func pass(tokens: [Float], tokenCount: Int, width K: Int, units: [Float], bias: [Float]?,
                      consumer: Consumer, logNormalisers: UnsafeMutablePointer<Float>? = nil) -> [Float] {
        let M = self.M, Cv = self.Cv
        let block = Self.rowBlock(unitCount: M)
        let blockCount = (tokenCount + block - 1) / block
        let threads = threadCount
        let resultWidth: Int
        let right: [Float]
        switch consumer {
        case .sums(let r, let w): right = r; resultWidth = w
        case .output(let v): right = v; resultWidth = Cv
        }
        let isOutput: Bool = { if case .output = consumer { return true } else { return false } }()
        // The chunks: one per row block for the output, `reductionChunks` for sums (fewer when there are fewer blocks).
        let chunks = isOutput ? blockCount : max(1, min(Self.reductionChunks, blockCount))
        let workers = min(threads, chunks)
        // Per-chunk partial sums (or the shared output, each chunk writing its own rows); one strip per worker
        // (a worker runs its chunks one after the other).
        var results = [Float](repeating: 0, count: isOutput ? tokenCount * Cv : chunks * M * resultWidth)
        var strips = [Float](repeating: 0, count: max(1, workers) * block * M)

        tokens.withUnsafeBufferPointer { tokenBuffer in
            units.withUnsafeBufferPointer { unitBuffer in
                right.withUnsafeBufferPointer { rightBuffer in
                    results.withUnsafeMutableBufferPointer { resultBuffer in
                        strips.withUnsafeMutableBufferPointer { stripBuffer in
                            withBias(bias) { biasBase in
                                let tokens = tokenBuffer.baseAddress!, units = unitBuffer.baseAddress!
                                let right = rightBuffer.baseAddress!, results = resultBuffer.baseAddress!
                                let strips = stripBuffer.baseAddress!
                                let work = { (chunk: Int, worker: Int) in
                                    let strip = strips + worker * block * M
                                    for blockIndex in Self.blocks(ofChunk: chunk, chunks: chunks, blocks: blockCount) {
                                        let r0 = blockIndex * block
                                        let rows = min(block, tokenCount - r0)
                                        BLAS.sgemm(transposeA: false, transposeB: true, m: rows, n: M, k: K, alpha: 1,
                                                   a: tokens + r0 * K, lda: K, b: units, ldb: K,
                                                   beta: 0, c: strip, ldc: M)
                                        probattn_softmax_strip(strip, Int32(rows), Int32(M), Int32(M), biasBase,
                                                               probabilisticAttentionEpsilon,
                                                               logNormalisers.map { $0 + r0 })
                                        if isOutput {
                                            BLAS.sgemm(transposeA: false, transposeB: false, m: rows, n: Cv, k: M,
                                                       alpha: 1, a: strip, lda: M, b: right, ldb: Cv,
                                                       beta: 0, c: results + r0 * Cv, ldc: Cv)
                                        } else {
                                            BLAS.sgemm(transposeA: true, transposeB: false, m: M, n: resultWidth,
                                                       k: rows, alpha: 1, a: strip, lda: M,
                                                       b: right + r0 * resultWidth, ldb: resultWidth,
                                                       beta: 1, c: results + chunk * M * resultWidth,
                                                       ldc: resultWidth)
                                        }
                                    }
                                }
                                // Worker w runs chunks w, w + workers, … in its own strip.
                                ParallelChunks.strips(chunks: chunks, workers: workers, work)
                            }
                        }
                    }
                }
            }
        }
        if isOutput || chunks == 1 {
            return isOutput ? results : Array(results[0..<(M * resultWidth)])
        }
        var total = Array(results[0..<(M * resultWidth)])
        for chunk in 1..<chunks {
            let base = chunk * M * resultWidth
            for index in 0..<(M * resultWidth) { total[index] += results[base + index] }
        }
        return total
    }

    /// The row blocks of chunk `chunk` when `blocks` blocks are cut into `chunks` near-equal runs.
    static func blocks(ofChunk chunk: Int, chunks: Int, blocks: Int) -> Range<Int> {
        (chunk * blocks / chunks)..<((chunk + 1) * blocks / chunks)
    }

    /// Calls `body` with a pointer to the bias (or nil).
    private func withBias(_ bias: [Float]?, _ body: (UnsafePointer<Float>?) -> Void) {
        if let bias { bias.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
    }
}
