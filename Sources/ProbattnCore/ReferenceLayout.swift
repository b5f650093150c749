/// A precision as the reference layer takes it: a scalar, or a per-unit tensor of shape (N, G, M).
public enum ReferencePrecision: Sendable, Equatable {
    case scalar(Float)
    case perUnit(Tensor)
}

/// Inputs in the reference layer's layout (token axis last): `q, zeta: (N, G, C, ·)`, `mu: (N, G, Cv, M)`.
/// Field names follow the reference's argument names. See `../shared/reference/probattn/README.md`.
public struct ReferenceLayoutInputs: Sendable {
    /// (N, G, C, H).
    public var q: Tensor
    /// (N, G, C, M).
    public var zeta: Tensor
    /// (N, G, Cv, M).
    public var mu: Tensor
    public var alpha: ReferencePrecision
    public var beta: ReferencePrecision
    /// (N, G, H, M).
    public var pi: Tensor?
    /// (N, G, Cv, H).
    public var vInit: Tensor?
    /// (N, G, Cv+1, H) or (N, G, 2Cv+1, H): values, [offsets,] indicator.
    public var vFixed: Tensor?
    /// (N, G, C, M).
    public var zetaPriorPrecision: Tensor?
    /// (N, G, Cv, M).
    public var muPriorPrecision: Tensor?
    /// (C, H, H).
    public var qPosEmb: Tensor?
    /// (C, H, H).
    public var zetaPosEmb: Tensor?
    /// (Cv, H, H).
    public var vPosEmb: Tensor?
    /// (H, M).
    public var nonzeroWeightsMask: Tensor?

    public init(q: Tensor, zeta: Tensor, mu: Tensor, alpha: ReferencePrecision, beta: ReferencePrecision,
                pi: Tensor? = nil, vInit: Tensor? = nil, vFixed: Tensor? = nil, zetaPriorPrecision: Tensor? = nil,
                muPriorPrecision: Tensor? = nil, qPosEmb: Tensor? = nil, zetaPosEmb: Tensor? = nil,
                vPosEmb: Tensor? = nil, nonzeroWeightsMask: Tensor? = nil) {
        self.q = q
        self.zeta = zeta
        self.mu = mu
        self.alpha = alpha
        self.beta = beta
        self.pi = pi
        self.vInit = vInit
        self.vFixed = vFixed
        self.zetaPriorPrecision = zetaPriorPrecision
        self.muPriorPrecision = muPriorPrecision
        self.qPosEmb = qPosEmb
        self.zetaPosEmb = zetaPosEmb
        self.vPosEmb = vPosEmb
        self.nonzeroWeightsMask = nonzeroWeightsMask
    }
}

/// Validates reference-layout inputs, cuts them into token-major slices and writes slice results back.
struct ReferenceLayoutSlicer {
    let inputs: ReferenceLayoutInputs
    let options: ProbabilisticAttentionOptions
    let batch: Int, groups: Int, channels: Int, valueChannels: Int, tokens: Int, units: Int
    let fixedWidth: Int
    let positional: PositionalTerms?
    /// Σ of the indicator channel over the whole batch.
    let indicatorSum: Float

    init(_ inputs: ReferenceLayoutInputs, options: ProbabilisticAttentionOptions) throws {
        self.inputs = inputs
        self.options = options
        guard inputs.q.rank == 4, inputs.zeta.rank == 4, inputs.mu.rank == 4 else {
            throw ProbattnCoreError.invalidShape(
                "q, zeta and mu must be rank 4 (N, G, C, H); got \(inputs.q.shape), \(inputs.zeta.shape), "
                    + "\(inputs.mu.shape)")
        }
        let N = inputs.q.shape[0], G = inputs.q.shape[1], C = inputs.q.shape[2], H = inputs.q.shape[3]
        let M = inputs.zeta.shape[3], Cv = inputs.mu.shape[2]
        (batch, groups, channels, valueChannels, tokens, units) = (N, G, C, Cv, H, M)
        try SliceBuilder.expect(inputs.zeta, [N, G, C, M], "zeta")
        try SliceBuilder.expect(inputs.mu, [N, G, Cv, M], "mu")
        for (precision, name) in [(inputs.alpha, "alpha"), (inputs.beta, "beta")] {
            if case .perUnit(let t) = precision { try SliceBuilder.expect(t, [N, G, M], name) }
        }
        if let t = inputs.pi { try SliceBuilder.expect(t, [N, G, H, M], "pi") }
        if let t = inputs.vInit { try SliceBuilder.expect(t, [N, G, Cv, H], "v_init") }
        if let t = inputs.zetaPriorPrecision { try SliceBuilder.expect(t, [N, G, C, M], "zeta_prior_precision") }
        if let t = inputs.muPriorPrecision { try SliceBuilder.expect(t, [N, G, Cv, M], "mu_prior_precision") }
        if let t = inputs.nonzeroWeightsMask { try SliceBuilder.expect(t, [H, M], "nonzero_wts_mask") }
        let hasPositions = inputs.qPosEmb != nil || inputs.zetaPosEmb != nil || inputs.vPosEmb != nil
        if hasPositions && M != H {
            throw ProbattnCoreError.invalidShape("positional embeddings need as many units as tokens (M = \(M), H = \(H))")
        }
        if let t = inputs.qPosEmb { try SliceBuilder.expect(t, [C, H, H], "q_pos_emb") }
        if let t = inputs.zetaPosEmb { try SliceBuilder.expect(t, [C, H, H], "zeta_pos_emb") }
        if let t = inputs.vPosEmb { try SliceBuilder.expect(t, [Cv, H, H], "v_pos_emb") }
        var sum: Float = 0
        if let t = inputs.vFixed {
            guard t.rank == 4, t.shape[0] == N, t.shape[1] == G, t.shape[3] == H,
                  t.shape[2] == Cv + 1 || t.shape[2] == 2 * Cv + 1 else {
                throw ProbattnCoreError.invalidShape(
                    "v_fixed must have shape [\(N), \(G), \(Cv + 1) or \(2 * Cv + 1), \(H)], got \(t.shape)")
            }
            if t.shape[2] == 2 * Cv + 1 && M != H {
                throw ProbattnCoreError.invalidShape("v_fixed positional offsets need M = H")
            }
            fixedWidth = t.shape[2]
            let width = t.shape[2]
            for slice in 0..<(N * G) {
                let base = (slice * width + width - 1) * H
                for i in 0..<H { sum += t.storage[base + i] }
            }
        } else {
            fixedWidth = 0
        }
        indicatorSum = sum
        positional = hasPositions
            ? PositionalTerms(tokenCount: H, channels: C, query: inputs.qPosEmb?.storage,
                              key: inputs.zetaPosEmb?.storage, value: inputs.vPosEmb?.storage)
            : nil
    }

    var outputShape: [Int] {
        [batch, groups, inputs.vPosEmb != nil ? 2 * valueChannels : valueChannels, tokens]
    }

    /// The (n, g) slice, transposed to token-major.
    func slice(n: Int, g: Int) -> AttentionSlice {
        let s = n * groups + g
        let H = tokens, M = units, C = channels, Cv = valueChannels
        func tokenMajor(_ t: Tensor, rows: Int, width: Int) -> [Float] {
            var out = [Float](repeating: 0, count: rows * width)
            t.storage.withUnsafeBufferPointer { source in
                out.withUnsafeMutableBufferPointer { destination in
                    transpose(source.baseAddress! + s * rows * width, rows: width, columns: rows,
                              into: destination.baseAddress!)
                }
            }
            return out
        }
        func perUnit(_ p: ReferencePrecision) -> [Float] {
            switch p {
            case .scalar(let value): return [Float](repeating: value, count: M)
            case .perUnit(let t): return Array(t.storage[(s * M)..<((s + 1) * M)])
            }
        }
        var fixed: FixedValues?
        if let t = inputs.vFixed {
            fixed = SliceBuilder.makeFixed(tokenMajor: tokenMajor(t, rows: H, width: fixedWidth), tokens: H,
                                           width: fixedWidth, valueChannels: Cv,
                                           mask: options.maskFixedValuesByIndicator)
        }
        var alphaUniform = true, betaUniform = true
        if case .perUnit = inputs.alpha { alphaUniform = false }
        if case .perUnit = inputs.beta { betaUniform = false }
        return AttentionSlice(
            tokenCount: H, unitCount: M, channels: C, valueChannels: Cv,
            queries: tokenMajor(inputs.q, rows: H, width: C), keys: tokenMajor(inputs.zeta, rows: M, width: C),
            values: tokenMajor(inputs.mu, rows: M, width: Cv),
            alpha: perUnit(inputs.alpha), alphaIsUniform: alphaUniform,
            beta: perUnit(inputs.beta), betaIsUniform: betaUniform,
            initialValues: inputs.vInit.map { tokenMajor($0, rows: H, width: Cv) },
            priors: inputs.pi.map { Array($0.storage[(s * H * M)..<((s + 1) * H * M)]) },
            fixed: fixed,
            keyPriorPrecision: inputs.zetaPriorPrecision.map { tokenMajor($0, rows: M, width: C) },
            valuePriorPrecision: inputs.muPriorPrecision.map { tokenMajor($0, rows: M, width: Cv) },
            positional: positional, weightMask: inputs.nonzeroWeightsMask?.storage)
    }

    /// Writes a slice result into the `(N, G, Cv or 2Cv, H)` output (interleaved with the positional channels).
    func write(_ result: SliceResult, n: Int, g: Int, into output: inout [Float]) {
        let s = n * groups + g
        let H = tokens, Cv = valueChannels
        if let wve = result.positionalValues {
            let base = s * 2 * Cv * H
            for c in 0..<Cv {
                for i in 0..<H {
                    output[base + (2 * c) * H + i] = result.tokenValues[i * Cv + c]
                    output[base + (2 * c + 1) * H + i] = wve[i * Cv + c]
                }
            }
        } else {
            let base = s * Cv * H
            for c in 0..<Cv {
                for i in 0..<H { output[base + c * H + i] = result.tokenValues[i * Cv + c] }
            }
        }
    }
}
