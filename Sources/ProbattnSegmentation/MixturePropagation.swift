import Dispatch
import ProbattnCore
import ProbattnPluginHost

/// The token-to-unit weights W of an image in compressed sparse rows: for token i, the units
/// `columns[rowStart[i]..<rowStart[i + 1]]` with weights `values[...]`. Built once per image by the adapter from the
/// variant's dense W, dropping the entries below `threshold` (a token's weights sum to 1 and fall off like a
/// Gaussian with the feature distance, so almost all of the H × M entries are negligible: the largest dropped mass
/// of any row is recorded in `droppedMass`).
public struct SparseWeights: Sendable {
    public let tokens: Int
    public let units: Int
    public let rowStart: [Int32]
    public let columns: [Int32]
    public let values: [Float]
    /// The largest total weight dropped from one row.
    public let droppedMass: Float

    /// Keeps every entry of the dense row-major `dense` (H × M) that is at least `threshold`.
    public init?(dense: [Float], tokens h: Int, units m: Int, threshold: Float) {
        guard h > 0, m > 0, dense.count == h * m, h * m < Int(Int32.max) else { return nil }
        var rowStart = [Int32](repeating: 0, count: h + 1)
        var columns: [Int32] = []
        var values: [Float] = []
        var dropped: Float = 0
        dense.withUnsafeBufferPointer { w in
            for i in 0..<h {
                var rowDropped: Float = 0
                for j in 0..<m {
                    let v = w[i * m + j]
                    if v >= threshold && v > 0 {
                        columns.append(Int32(j))
                        values.append(v)
                    } else {
                        rowDropped += v
                    }
                }
                rowStart[i + 1] = Int32(columns.count)
                dropped = max(dropped, rowDropped)
            }
        }
        self.tokens = h
        self.units = m
        self.rowStart = rowStart
        self.columns = columns
        self.values = values
        self.droppedMass = dropped
    }

    /// Bytes held, for the cache's memory budget.
    public var memoryBytes: Int { rowStart.count * 4 + columns.count * 4 + values.count * 4 }

    /// The dense H × M matrix (for tests and diagnostics).
    public func dense() -> [Float] {
        var out = [Float](repeating: 0, count: tokens * units)
        for i in 0..<tokens {
            for e in Int(rowStart[i])..<Int(rowStart[i + 1]) { out[i * units + Int(columns[e])] = values[e] }
        }
        return out
    }
}

/// One EM round of `BeliefPropagator`: the token values H × K the mixture gives for the observations `fixed`
/// (H × (K + 1): values, then the observation weight m_i). Called once per round; stateless.
protocol ValuePropagation {
    func propagate(fixed: [Float], valueChannels k: Int) throws -> [Float]
}

/// A round as a call of the attention variant (for variants that give no weights to cache).
struct VariantPropagation: ValuePropagation {
    let attention: any TokenAttention
    /// The call without `fixed`; each round fills it in.
    let call: AttentionInput

    func propagate(fixed: [Float], valueChannels k: Int) throws -> [Float] {
        precondition(k == call.valueChannels, "the call was prepared for \(call.valueChannels) classes")
        var round = call
        round.fixed = fixed
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
    /// From this many tokens on, each pass is split over two threads (the machine this is tuned for has two cores;
    /// below it the hand-off costs more than it saves).
    static let parallelTokens = 2000

    init?(weights: SparseWeights?, tokens: Int, units: Int) {
        guard let weights, weights.tokens == tokens, weights.units == units else { return nil }
        self.weights = weights
    }

    /// The token values H × K for the observations `fixed` (H × (K + 1): values, then the weight m_i).
    func propagate(fixed: [Float], valueChannels k: Int) -> [Float] {
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
                // images split the tokens into two halves done in parallel, each scattering into its own sums
                // (`parts`, added up after), so the result does not depend on thread timing.
                let chunks = h >= Self.parallelTokens ? 2 : 1
                let parts = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunks * m * 3)
                defer { parts.deallocate() }
                parts.initialize(repeating: 0)
                ParallelChunks.perform(chunks) { chunk in
                    let p = parts.baseAddress! + chunk * m * 3
                    for i in (chunk * h / chunks)..<((chunk + 1) * h / chunks) {
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
                ParallelChunks.perform(chunks) { chunk in
                    for i in (chunk * h / chunks)..<((chunk + 1) * h / chunks) {
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
