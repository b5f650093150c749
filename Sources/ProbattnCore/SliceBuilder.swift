/// Validates token-major inputs and turns them into an `AttentionSlice`.
enum SliceBuilder {
    static func tokenMajor(_ inputs: TokenMajorInputs, options: ProbabilisticAttentionOptions) throws -> AttentionSlice {
        guard inputs.queries.rank == 2, inputs.keys.rank == 2, inputs.values.rank == 2 else {
            throw ProbattnCoreError.invalidShape(
                "queries, keys and values must be rank 2 (H×C, M×C, M×Cv); got \(inputs.queries.shape), "
                    + "\(inputs.keys.shape), \(inputs.values.shape)")
        }
        let H = inputs.queries.shape[0], C = inputs.queries.shape[1]
        let M = inputs.keys.shape[0], Cv = inputs.values.shape[1]
        try expect(inputs.keys, [M, C], "keys")
        try expect(inputs.values, [M, Cv], "values")
        let alpha = try inputs.alpha.expanded(unitCount: M, name: "alpha")
        let beta = try inputs.beta.expanded(unitCount: M, name: "beta")
        if let t = inputs.initialValues { try expect(t, [H, Cv], "initial values") }
        if let t = inputs.priors { try expect(t, [H, M], "priors") }
        if let t = inputs.keyPriorPrecision { try expect(t, [M, C], "key prior precision") }
        if let t = inputs.valuePriorPrecision { try expect(t, [M, Cv], "value prior precision") }
        if let t = inputs.weightMask { try expect(t, [H, M], "weight mask") }
        let hasPositions = inputs.queryPositions != nil || inputs.keyPositions != nil || inputs.valuePositions != nil
        if hasPositions && M != H {
            throw ProbattnCoreError.invalidShape("positional embeddings need as many units as tokens (M = \(M), H = \(H))")
        }
        if let t = inputs.queryPositions { try expect(t, [C, H, H], "query positional embedding") }
        if let t = inputs.keyPositions { try expect(t, [C, H, H], "key positional embedding") }
        if let t = inputs.valuePositions { try expect(t, [Cv, H, H], "value positional embedding") }
        var fixed: FixedValues?
        if let t = inputs.fixed {
            guard t.rank == 2, t.shape[0] == H, t.shape[1] == Cv + 1 || t.shape[1] == 2 * Cv + 1 else {
                throw ProbattnCoreError.invalidShape(
                    "fixed values must be H×(Cv+1) or H×(2Cv+1) = \(H)×\(Cv + 1) or \(H)×\(2 * Cv + 1), got \(t.shape)")
            }
            if t.shape[1] == 2 * Cv + 1 && M != H {
                throw ProbattnCoreError.invalidShape("fixed positional offsets need M = H")
            }
            fixed = makeFixed(tokenMajor: t.storage, tokens: H, width: t.shape[1], valueChannels: Cv,
                              mask: options.maskFixedValuesByIndicator)
        }
        let positional = hasPositions
            ? PositionalTerms(tokenCount: H, channels: C, query: inputs.queryPositions?.storage,
                              key: inputs.keyPositions?.storage, value: inputs.valuePositions?.storage)
            : nil
        return AttentionSlice(
            tokenCount: H, unitCount: M, channels: C, valueChannels: Cv,
            queries: inputs.queries.storage, keys: inputs.keys.storage, values: inputs.values.storage,
            alpha: alpha, alphaIsUniform: inputs.alpha.isUniform, beta: beta, betaIsUniform: inputs.beta.isUniform,
            initialValues: inputs.initialValues?.storage, priors: inputs.priors?.storage, fixed: fixed,
            keyPriorPrecision: inputs.keyPriorPrecision?.storage,
            valuePriorPrecision: inputs.valuePriorPrecision?.storage,
            positional: positional, weightMask: inputs.weightMask?.storage)
    }

    /// Splits token-major fixed data (H × width, width = Cv+1 or 2Cv+1) into values, indicator and offsets.
    static func makeFixed(tokenMajor data: [Float], tokens H: Int, width: Int, valueChannels Cv: Int,
                          mask: Bool) -> FixedValues {
        var values = [Float](repeating: 0, count: H * Cv)
        var indicator = [Float](repeating: 0, count: H)
        var offsets: [Float]? = width == 2 * Cv + 1 ? [Float](repeating: 0, count: H * Cv) : nil
        for i in 0..<H {
            indicator[i] = data[i * width + width - 1]
            for c in 0..<Cv { values[i * Cv + c] = data[i * width + c] }
            if offsets != nil {
                for c in 0..<Cv { offsets![i * Cv + c] = data[i * width + Cv + c] }
            }
        }
        var effective = values
        if mask {
            for i in 0..<H {
                for c in 0..<Cv { effective[i * Cv + c] *= indicator[i] }
            }
        }
        return FixedValues(values: effective, rawValues: values, indicator: indicator, offsets: offsets)
    }

    static func expect(_ tensor: Tensor, _ shape: [Int], _ name: String) throws {
        guard tensor.shape == shape else {
            throw ProbattnCoreError.invalidShape("\(name) must have shape \(shape), got \(tensor.shape)")
        }
    }
}
