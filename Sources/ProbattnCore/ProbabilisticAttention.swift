/// Inputs of the operator for one head in token-major layout (row i = token i, row j = unit j).
///
/// This is the form plugins and the segmentation pipeline use. H tokens, M units, C query/key channels, Cv value
/// channels. Optional inputs left nil are absent (as `None` in the reference layer).
public struct TokenMajorInputs: Sendable {
    /// H × C: the queries q_i.
    public var queries: Tensor
    /// M × C: the keys ζ_j (the query Gaussian means).
    public var keys: Tensor
    /// M × Cv: the values μ_j (the value Gaussian means).
    public var values: Tensor
    /// α: query/key precision.
    public var alpha: Precision
    /// β: value precision.
    public var beta: Precision
    /// H × (Cv + 1): fixed values in columns 0..<Cv and the indicator m_i in the last column; or H × (2Cv + 1) with
    /// positional offsets (indexed by unit, M = H) in columns Cv..<2Cv.
    public var fixed: Tensor?
    /// H × Cv: initial value estimates v⁰ (`v_init`).
    public var initialValues: Tensor?
    /// H × M: mixture priors π_ij (rows = tokens). When given, magnitude priors are not used.
    public var priors: Tensor?
    /// M × C: per-channel precision of the Gaussian prior on the keys (`zeta_prior_precision`).
    public var keyPriorPrecision: Tensor?
    /// M × Cv: per-channel precision of the Gaussian prior on the values (`mu_prior_precision`).
    public var valuePriorPrecision: Tensor?
    /// (C, H, H): query positional embedding R (needs M = H).
    public var queryPositions: Tensor?
    /// (C, H, H): key positional embedding S (needs M = H).
    public var keyPositions: Tensor?
    /// (Cv, H, H): value positional embedding P (needs M = H); adds `TokenMajorOutputs.positionalValues`.
    public var valuePositions: Tensor?
    /// H × M: 0/1 (or weighting) mask applied to the weights after the exponential (`nonzero_wts_mask`).
    public var weightMask: Tensor?

    public init(queries: Tensor, keys: Tensor, values: Tensor, alpha: Precision, beta: Precision = .uniform(0),
                fixed: Tensor? = nil, initialValues: Tensor? = nil, priors: Tensor? = nil,
                keyPriorPrecision: Tensor? = nil, valuePriorPrecision: Tensor? = nil,
                queryPositions: Tensor? = nil, keyPositions: Tensor? = nil, valuePositions: Tensor? = nil,
                weightMask: Tensor? = nil) {
        self.queries = queries
        self.keys = keys
        self.values = values
        self.alpha = alpha
        self.beta = beta
        self.fixed = fixed
        self.initialValues = initialValues
        self.priors = priors
        self.keyPriorPrecision = keyPriorPrecision
        self.valuePriorPrecision = valuePriorPrecision
        self.queryPositions = queryPositions
        self.keyPositions = keyPositions
        self.valuePositions = valuePositions
        self.weightMask = weightMask
    }
}

/// What the token-major operator returns.
public struct TokenMajorOutputs: Sendable, Equatable {
    /// H × Cv: v̂_i = Σ_j W_ij μ_j with the final weights and values.
    public var tokenValues: Tensor
    /// M × C: the keys after key adaptation (equal to the input keys when no adaptation ran). Pass them back with
    /// key adaptation off to reuse them.
    public var adaptedKeys: Tensor
    /// M × Cv: the values after belief propagation.
    public var adaptedValues: Tensor
    /// H × Cv: wve_i, the value-positional-embedding channels (only when `valuePositions` was given).
    public var positionalValues: Tensor?
}

/// The probabilistic attention operator (spec §1; reproduces `apple/ml-probabilistic-attention`'s layer).
///
/// Configure once with options, then call `attendTokenMajor` (one head, token-major) or `attendReferenceLayout`
/// (N × G slices in the reference's `(N, G, C, H)` layout). Both validate every input and throw
/// `ProbattnCoreError` on inconsistent shapes; neither does I/O.
public struct ProbabilisticAttention: Sendable {
    public var options: ProbabilisticAttentionOptions

    public init(options: ProbabilisticAttentionOptions = ProbabilisticAttentionOptions()) {
        self.options = options
    }

    /// Runs the operator on one head given in token-major layout. Value propagation runs when
    /// `valuePropagationIterations > 0`, `fixed` is given and its indicators sum to more than 0.
    /// Set `keyAdaptation` off (or 0 iterations) to reuse keys that were adapted already.
    public func attendTokenMajor(_ inputs: TokenMajorInputs) throws -> TokenMajorOutputs {
        try options.validate()
        let slice = try SliceBuilder.tokenMajor(inputs, options: options)
        let runValuePropagation = (slice.fixed?.indicatorSum ?? 0) > 0
        let result = try solve(slice, runValuePropagation: runValuePropagation)
        let H = slice.tokenCount, M = slice.unitCount
        return TokenMajorOutputs(
            tokenValues: try Tensor(shape: [H, slice.valueChannels], storage: result.tokenValues),
            adaptedKeys: try Tensor(shape: [M, slice.channels], storage: result.keys),
            adaptedValues: try Tensor(shape: [M, slice.valueChannels], storage: result.values),
            positionalValues: try result.positionalValues.map {
                try Tensor(shape: [H, slice.valueChannels], storage: $0)
            })
    }

    /// The responsibilities W (H × M, rows summing to 1; spec §1.3) of the given inputs' tokens for their units, as the
    /// operator computes them from the keys and values it is given (no adaptation happens here: pass the adapted keys
    /// and values of `attendTokenMajor` to get the weights of its output). Materialises W, so it is meant for the
    /// sizes an application caches per image, not for the kernel's largest inputs.
    public func responsibilities(_ inputs: TokenMajorInputs) throws -> Tensor {
        try options.validate()
        let slice = try SliceBuilder.tokenMajor(inputs, options: options)
        var weights = [Float](repeating: 0, count: slice.tokenCount * slice.unitCount)
        PlainSolver(slice: slice, options: options).computeWeights(into: &weights, keys: slice.keys,
                                                                    values: slice.values)
        return try Tensor(shape: [slice.tokenCount, slice.unitCount], storage: weights)
    }

    /// Convenience form of `attendTokenMajor(_:)` for the common inputs.
    public func attendTokenMajor(queries: Tensor, keys: Tensor, values: Tensor, fixed: Tensor? = nil,
                                 alpha: Precision, beta: Precision = .uniform(0), keyPriorPrecision: Tensor? = nil,
                                 valuePriorPrecision: Tensor? = nil, initialValues: Tensor? = nil) throws
        -> TokenMajorOutputs {
        try attendTokenMajor(TokenMajorInputs(
            queries: queries, keys: keys, values: values, alpha: alpha, beta: beta, fixed: fixed,
            initialValues: initialValues, keyPriorPrecision: keyPriorPrecision,
            valuePriorPrecision: valuePriorPrecision))
    }

    /// Runs the operator on every (n, g) slice of reference-layout inputs and returns `(N, G, Cv, H)`, or
    /// `(N, G, 2Cv, H)` interleaved (out[2c] = v̂[c], out[2c+1] = wve[c]) when a value positional embedding is given.
    /// As in the reference, value propagation is skipped for the whole batch unless the indicators of all slices
    /// sum to more than 0.
    public func attendReferenceLayout(_ inputs: ReferenceLayoutInputs) throws -> Tensor {
        try options.validate()
        let layout = try ReferenceLayoutSlicer(inputs, options: options)
        let runValuePropagation = layout.indicatorSum > 0
        var output = Tensor(shape: layout.outputShape)
        for n in 0..<layout.batch {
            for g in 0..<layout.groups {
                let slice = layout.slice(n: n, g: g)
                let result = try solve(slice, runValuePropagation: runValuePropagation)
                layout.write(result, n: n, g: g, into: &output.storage)
            }
        }
        return output
    }

    /// Runs one slice on the implementation the options select: the blocked kernel when it covers the input
    /// (`.automatic`, `.blocked`), else the plain path; `.blocked` on an input it does not cover throws.
    func solve(_ slice: AttentionSlice, runValuePropagation: Bool) throws -> SliceResult {
        switch options.kernel {
        case .plain:
            return PlainSolver(slice: slice, options: options).solve(runValuePropagation: runValuePropagation)
        case .automatic, .blocked:
            if let reason = BlockedSolver.unsupportedReason(slice, options: options) {
                if options.kernel == .blocked {
                    throw ProbattnCoreError.invalidArgument("the blocked kernel does not cover this input: \(reason)")
                }
                return PlainSolver(slice: slice, options: options).solve(runValuePropagation: runValuePropagation)
            }
            return BlockedSolver(slice: slice, options: options).solve(runValuePropagation: runValuePropagation)
        }
    }
}
