// Dense building blocks shared by the Swift variants: BLAS products, row softmax, and label propagation with fixed
// tokens clamped. Token-major row-major Float32 throughout; the heavy products go through ProbattnCore's BLAS
// wrappers (cblas_sgemm) and its stable softmax.

import ProbattnCore

public enum DenseAttention {
    /// The attention scale: `requested` when it is > 0, else 1/√channels (the SDPA default).
    public static func scale(requested: Double, channels: Int) throws -> Float {
        guard requested.isFinite, requested >= 0 else {
            throw PluginFailure("option 'scale' must be a finite number >= 0 (0 means 1/sqrt(channels)), got \(requested)")
        }
        return requested > 0 ? Float(requested) : 1 / Float(channels).squareRoot()
    }

    /// The largest dense H×M weight matrix the variants materialise (2^28 floats, 1 GiB); larger inputs get an error
    /// instead of an allocation failure.
    public static let maximumDenseWeights = 1 << 28

    /// out (rows×rowsB) = scale · a (rows×inner) · b (rowsB×inner)ᵀ: the logits Q·Kᵀ. Throws when rows × rowsB
    /// exceeds `maximumDenseWeights`.
    public static func productTransposed(_ a: UnsafeBufferPointer<Float>, rows: Int,
                                         _ b: UnsafeBufferPointer<Float>, rowsB: Int, inner: Int,
                                         scale: Float) throws -> [Float] {
        let (count, overflow) = rows.multipliedReportingOverflow(by: rowsB)
        guard !overflow, count <= maximumDenseWeights else {
            throw PluginFailure("\(rows) tokens × \(rowsB) units is too many dense attention weights "
                                + "(at most \(maximumDenseWeights)); use fewer tokens or units")
        }
        var out = [Float](repeating: 0, count: rows * rowsB)
        guard let aBase = a.baseAddress, let bBase = b.baseAddress else { return out }
        out.withUnsafeMutableBufferPointer { result in
            guard let cBase = result.baseAddress else { return }
            BLAS.sgemm(transposeA: false, transposeB: true, m: rows, n: rowsB, k: inner, alpha: scale,
                       a: aBase, lda: inner, b: bBase, ldb: inner, beta: 0, c: cBase, ldc: rowsB)
        }
        return out
    }

    /// Up to this many value channels, `product` uses one sgemv per channel instead of sgemm.
    static let narrowProductColumns = 4

    /// out (rows×cols) = a (rows×inner) · b (inner×cols): the weighted values W·V.
    public static func product(_ a: UnsafeBufferPointer<Float>, rows: Int, inner: Int,
                               _ b: UnsafeBufferPointer<Float>, cols: Int,
                               into out: UnsafeMutableBufferPointer<Float>) {
        guard let aBase = a.baseAddress, let bBase = b.baseAddress, let cBase = out.baseAddress else { return }
        if cols <= narrowProductColumns {
            // A few value channels (classes): one matrix-vector product per channel reads the large H×M weights
            // once per channel, where sgemm would first copy (pack) all of them on every call.
            for c in 0..<cols {
                BLAS.sgemv(transposeA: false, rows: rows, columns: inner, alpha: 1, a: aBase, lda: inner,
                           x: bBase + c, incx: cols, beta: 0, y: cBase + c, incy: cols)
            }
            return
        }
        BLAS.sgemm(transposeA: false, transposeB: false, m: rows, n: cols, k: inner, alpha: 1,
                   a: aBase, lda: inner, b: bBase, ldb: cols, beta: 0, c: cBase, ldc: cols)
    }

    /// Array convenience for `product`.
    public static func product(_ a: [Float], rows: Int, inner: Int, _ b: [Float], cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { product(a, rows: rows, inner: inner, b, cols: cols, into: $0) }
            }
        }
        return out
    }

    /// Replaces every row of `matrix` (rows×cols) by its softmax (row maximum subtracted first; ProbattnCore's
    /// stable softmax, which gives zeros for a row that is all −∞).
    public static func softmaxRows(_ matrix: inout [Float], rows: Int, cols: Int) {
        matrix.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            for i in 0..<rows { Softmax.softmaxRow(base + i * cols, count: cols) }
        }
    }

    /// Weights W = softmax(scale · Q·Kᵀ), H×M.
    public static func softmaxWeights(_ call: AttendCall, scale: Float) throws -> [Float] {
        var weights = try productTransposed(call.queries, rows: call.tokens, call.keys, rowsB: call.units,
                                        inner: call.channels, scale: scale)
        softmaxRows(&weights, rows: call.tokens, cols: call.units)
        return weights
    }

    /// Blends each token's values towards its fixed values by its weight m_i: v_i ← (1 − m_i)·v_i + m_i·v*_i.
    /// Free tokens (m_i = 0) are left alone, whatever their value channels in `fixed` hold.
    public static func clamp(_ values: UnsafeMutableBufferPointer<Float>, fixed: UnsafeBufferPointer<Float>,
                             tokens: Int, valueChannels: Int) {
        let stride = valueChannels + 1
        for i in 0..<tokens {
            let m = fixed[i * stride + valueChannels]
            guard m > 0 else { continue }
            for c in 0..<valueChannels {
                values[i * valueChannels + c] = (1 - m) * values[i * valueChannels + c] + m * fixed[i * stride + c]
            }
        }
    }

    /// Label propagation with fixed tokens clamped (Zhu & Ghahramani 2002), in place on `values` (H×Cv, the plain
    /// attention output on entry): v ← clamp(v), then `iterations` times v ← clamp(W·v), where `applyWeights`
    /// computes W·v for a token-by-token weight matrix W (so unit j must be token j). Without fixed tokens it leaves
    /// `values` unchanged.
    public static func propagateLabels(_ values: UnsafeMutableBufferPointer<Float>, call: AttendCall,
                                       iterations: Int,
                                       applyWeights: (_ input: [Float], _ output: UnsafeMutableBufferPointer<Float>)
                                           -> Void) throws {
        guard let fixed = call.fixed, call.hasFixedTokens else { return }
        guard iterations >= 0 else { throw PluginFailure("option 'iterations' must be >= 0, got \(iterations)") }
        if iterations > 0 && call.units != call.tokens {
            throw PluginFailure("label propagation with fixed values needs as many units as tokens (unit j is "
                                + "token j); got \(call.units) units for \(call.tokens) tokens (set iterations: 0)")
        }
        clamp(values, fixed: fixed, tokens: call.tokens, valueChannels: call.valueChannels)
        for _ in 0..<iterations {
            let current = Array(values)
            applyWeights(current, values)
            clamp(values, fixed: fixed, tokens: call.tokens, valueChannels: call.valueChannels)
        }
    }

    /// The output of every variant that builds its dense H×M weights explicitly (softmax, sigmoid, context pooling):
    /// writes W·V into the call's token values, then, when tokens are fixed, runs `iterations` label-propagation
    /// steps v ← W·v with the fixed tokens clamped (`propagateLabels`). Called once per `attend`, after the variant
    /// has computed `weights` (row-major H×M) and the unit values it attends over (M×Cv: the call's own values, or
    /// pooled ones).
    public static func attend(weights: [Float], values: UnsafeBufferPointer<Float>, call: AttendCall,
                              iterations: Int) throws {
        weights.withUnsafeBufferPointer { w in
            product(w, rows: call.tokens, inner: call.units, values, cols: call.valueChannels, into: call.tokenValues)
        }
        try propagateLabels(call.tokenValues, call: call, iterations: iterations) { current, next in
            weights.withUnsafeBufferPointer { w in
                current.withUnsafeBufferPointer { v in
                    product(w, rows: call.tokens, inner: call.tokens, v, cols: call.valueChannels, into: next)
                }
            }
        }
    }
}
