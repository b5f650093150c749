/// A Gaussian precision (α for queries/keys, β for values): one value shared by all units, or one per unit.
///
/// `.uniform` corresponds to the reference layer's `uniform_*_precision=True` with a scalar; `.perUnit` to a
/// per-unit tensor `(N, G, M)` broadcast as `(N, G, 1, M)` (one value per unit j for each slice).
public enum Precision: Sendable, Equatable {
    case uniform(Float)
    /// One value per unit, in unit order.
    case perUnit([Float])

    /// True for `.uniform`.
    public var isUniform: Bool {
        if case .uniform = self { return true }
        return false
    }

    /// The per-unit values for `unitCount` units; throws when a per-unit list has the wrong length.
    func expanded(unitCount: Int, name: String) throws -> [Float] {
        switch self {
        case .uniform(let value): return [Float](repeating: value, count: unitCount)
        case .perUnit(let values):
            guard values.count == unitCount else {
                throw ProbattnCoreError.invalidShape("\(name) has \(values.count) per-unit values for \(unitCount) units")
            }
            return values
        }
    }
}

/// Where the Gaussian priors on keys (key adaptation) and values (belief propagation) are centred.
public enum PriorCentre: String, Sendable, Equatable, CaseIterable {
    /// The previous iterate, as the reference layer does (`zeta = λ·zeta + α·update`): the prior mean drifts.
    case previousIterate
    /// The initial keys/values (textbook MAP): the prior mean stays at the learned key/value.
    case initial
}

/// What to do when a unit's total responsibility Σ_i W_ij underflows (below `negligibleResponsibility`) in an
/// ML key-adaptation step (no key prior). The reference divides 0/0 there and returns NaN.
public enum ZeroResponsibilityPolicy: String, Sendable, Equatable, CaseIterable {
    /// Recompute that unit's responsibilities in the log domain, log W_ij = logit_ij − log Z_i, and take the
    /// softmax-weighted mean of the queries over i: the exact ML update that float64 arithmetic gives, without the
    /// float32 underflow. A unit no token can reach at all (every log W_ij = −∞) keeps its key. (Default.)
    case logDomain
    /// Keep the unit's previous key.
    case keepPrevious
    /// Divide anyway as the reference does; 0/0 gives NaN.
    case divide
}

/// Which implementation runs the operator.
public enum AttentionKernel: String, Sendable, Equatable, CaseIterable {
    /// The blocked kernel when it covers the configuration, else the plain one.
    case automatic
    /// Materialises the H×M weights (covers every option).
    case plain
    /// Streams tiles of units and never materialises H×M; throws when the configuration is not covered.
    case blocked
}

/// The layer's constructor arguments plus this project's extensions. Every default reproduces the reference layer
/// `ProbabilisticAttention()` (whose flags all default to off), except `zeroResponsibility`, which only differs where
/// the reference would produce NaN.
public struct ProbabilisticAttentionOptions: Sendable, Equatable {
    /// `magnitude_priors`: log π_j = (α_j/2)‖ζ_j‖² + (β_j/2)‖μ_j‖² when no explicit π is given.
    public var magnitudePriors: Bool
    /// `key_adaptation`: when false, `keyAdaptationIterations` is ignored.
    public var keyAdaptation: Bool
    /// `key_adaptation_iters`.
    public var keyAdaptationIterations: Int
    /// `value_belief_propagation_iters`.
    public var valuePropagationIterations: Int
    /// Where the key and value priors are centred.
    public var priorCentre: PriorCentre
    /// Set outputs at fixed tokens to their fixed values (blend by the indicator weight when it is in (0, 1)).
    public var clampFixedOutputs: Bool
    /// Multiply `v_fixed`'s value channels by the indicator before use, so that garbage at non-fixed tokens has no
    /// effect. The reference assumes those channels are already zero there.
    public var maskFixedValuesByIndicator: Bool
    /// Behaviour when a unit's responsibility vanishes.
    public var zeroResponsibility: ZeroResponsibilityPolicy
    /// Which implementation to run.
    public var kernel: AttentionKernel
    /// The blocked kernel's compute budget: the most threads it runs at once (nil: 1). The kernel's chunks do not
    /// depend on it, so neither does its result.
    public var threads: Int?

    public init(magnitudePriors: Bool = false, keyAdaptation: Bool = false, keyAdaptationIterations: Int = 0,
                valuePropagationIterations: Int = 0, priorCentre: PriorCentre = .previousIterate,
                clampFixedOutputs: Bool = false, maskFixedValuesByIndicator: Bool = false,
                zeroResponsibility: ZeroResponsibilityPolicy = .logDomain, kernel: AttentionKernel = .automatic,
                threads: Int? = nil) {
        self.magnitudePriors = magnitudePriors
        self.keyAdaptation = keyAdaptation
        self.keyAdaptationIterations = keyAdaptationIterations
        self.valuePropagationIterations = valuePropagationIterations
        self.priorCentre = priorCentre
        self.clampFixedOutputs = clampFixedOutputs
        self.maskFixedValuesByIndicator = maskFixedValuesByIndicator
        self.zeroResponsibility = zeroResponsibility
        self.kernel = kernel
        self.threads = threads
    }

    /// The number of key-adaptation iterations that actually run.
    public var effectiveKeyAdaptationIterations: Int { keyAdaptation ? keyAdaptationIterations : 0 }

    func validate() throws {
        guard keyAdaptationIterations >= 0 else {
            throw ProbattnCoreError.invalidArgument("key adaptation iterations must be ≥ 0, got \(keyAdaptationIterations)")
        }
        guard valuePropagationIterations >= 0 else {
            throw ProbattnCoreError.invalidArgument(
                "value propagation iterations must be ≥ 0, got \(valuePropagationIterations)")
        }
        if let threads, threads < 1 {
            throw ProbattnCoreError.invalidArgument("threads must be ≥ 1, got \(threads)")
        }
    }
}

/// The reference layer's eps (added to row sums of the weights and to the value-propagation denominators).
public let probabilisticAttentionEpsilon: Float = 1e-20

/// Below this total responsibility a unit's ML key update is treated as undefined (see `ZeroResponsibilityPolicy`).
public let negligibleResponsibility: Float = 1e-30
