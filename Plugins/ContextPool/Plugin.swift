// The `context_pool` attention variant, after ContextPool (arXiv 2207.01844) without learned weights: before softmax
// attention, every unit pools the keys and values around it on the token grid with a Gaussian of its own support s_j:
//     g_jl = exp(−‖p_l − p_j‖² / (2 s_j²))   for grid positions l within `radius` of j (a (2·radius+1)² window),
//     k̃_j = Σ_l g_jl k_l / Σ_l g_jl,   ṽ_j = Σ_l g_jl v_l / Σ_l g_jl,
//     out_i = Σ_j softmax_j(scale · q_i·k̃_j) ṽ_j.
// The support: the `support` option when > 0 (one width for every unit); otherwise derived from local feature
// variance, so that flat regions pool widely and units on edges barely pool:
//     l_j = mean over the 3×3 grid neighbourhood N(j) of ‖k_l − mean_N(j) k‖² / C   (local variance per channel),
//     v   = mean over all units of ‖k_l − mean k‖² / C                          (global variance per channel),
//     s_j = max_support · v / (v + l_j)          (s_j = max_support when v = 0).
// As the support tends to 0 the pooling is the identity (g_jl = δ_jl) and this is plain softmax attention.
// Unit j sits at token j (needs M == H and the grid). With fixed values: label propagation over the same weights,
// v ← W·v with fixed tokens clamped, `iterations` times.

import CProbattnPlugin
import ProbattnPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// The support s_j of every unit, derived from local key variance as documented above.
func derivedSupports(_ call: AttendCall, maxSupport: Double) -> [Double] {
    let (rows, cols, c, m) = (call.gridRows, call.gridCols, call.channels, call.units)
    var globalMean = [Double](repeating: 0, count: c)
    for j in 0..<m { for k in 0..<c { globalMean[k] += Double(call.keys[j * c + k]) } }
    for k in 0..<c { globalMean[k] /= Double(m) }
    var globalVariance = 0.0
    for j in 0..<m {
        for k in 0..<c {
            let d = Double(call.keys[j * c + k]) - globalMean[k]
            globalVariance += d * d
        }
    }
    globalVariance /= Double(m * c)
    guard globalVariance > 0 else { return [Double](repeating: maxSupport, count: m) }
    var supports = [Double](repeating: 0, count: m)
    var localMean = [Double](repeating: 0, count: c)
    for r in 0..<rows {
        for s in 0..<cols {
            let neighbours = (max(r - 1, 0)...min(r + 1, rows - 1)).flatMap { r2 in
                (max(s - 1, 0)...min(s + 1, cols - 1)).map { r2 * cols + $0 }
            }
            for k in 0..<c { localMean[k] = 0 }
            for l in neighbours { for k in 0..<c { localMean[k] += Double(call.keys[l * c + k]) } }
            for k in 0..<c { localMean[k] /= Double(neighbours.count) }
            var local = 0.0
            for l in neighbours {
                for k in 0..<c {
                    let d = Double(call.keys[l * c + k]) - localMean[k]
                    local += d * d
                }
            }
            local /= Double(neighbours.count * c)
            supports[r * cols + s] = maxSupport * globalVariance / (globalVariance + local)
        }
    }
    return supports
}

/// Gaussian pooling of the rows of `matrix` (M×width) over the grid, unit j with support `supports[j]`.
func pool(_ matrix: UnsafeBufferPointer<Float>, width: Int, rows: Int, cols: Int, radius: Int,
          supports: [Double]) -> [Float] {
    var pooled = [Float](repeating: 0, count: rows * cols * width)
    var accumulator = [Double](repeating: 0, count: width)
    for r in 0..<rows {
        for s in 0..<cols {
            let j = r * cols + s
            let twoSigmaSquared = 2 * supports[j] * supports[j]
            for k in 0..<width { accumulator[k] = 0 }
            var total = 0.0
            for r2 in max(r - radius, 0)...min(r + radius, rows - 1) {
                for s2 in max(s - radius, 0)...min(s + radius, cols - 1) {
                    let distanceSquared = Double((r2 - r) * (r2 - r) + (s2 - s) * (s2 - s))
                    let g = distanceSquared == 0 ? 1 : exp(-distanceSquared / twoSigmaSquared)
                    guard g > 0 else { continue }
                    let l = r2 * cols + s2
                    for k in 0..<width { accumulator[k] += g * Double(matrix[l * width + k]) }
                    total += g
                }
            }
            for k in 0..<width { pooled[j * width + k] = Float(accumulator[k] / total) }
        }
    }
    return pooled
}

/// The option checks `validate_options` and `attend` share.
func contextPoolPooling(_ options: OptionReader) throws -> (support: Double, maxSupport: Double, radius: Int) {
    let support = try options.float("support")
    let maxSupport = try options.float("max_support")
    let radius = try options.int("radius")
    guard support.isFinite, support >= 0 else {
        throw PluginFailure("option 'support' must be >= 0 (0 derives it), got \(support)")
    }
    guard maxSupport.isFinite, maxSupport > 0 else {
        throw PluginFailure("option 'max_support' must be > 0, got \(maxSupport)")
    }
    guard radius >= 0 else { throw PluginFailure("option 'radius' must be >= 0, got \(radius)") }
    return (support, maxSupport, radius)
}

let contextPoolVariant = VariantDefinition(
    name: "context_pool",
    summary: "softmax attention over keys and values Gaussian-pooled on the token grid with a per-unit support (ContextPool, arXiv 2207.01844)",
    options: [
        .float("support", "0",
               "Gaussian width in grid cells for every unit; 0 derives it per unit from local key variance"),
        .float("max_support", "1.5", "the derived support's upper end: s_j = max_support * v / (v + local variance)"),
        .int("radius", "2", "pooling window half-side in grid cells (the Gaussian is truncated there)"),
        .float("scale", "0", "logit scale; 0 means 1/sqrt(channels)"),
        .int("iterations", "10", "label propagation steps v <- Wv (fixed tokens clamped) when values are fixed"),
    ],
    requirements: [.grid, .unitsEqualTokens],
    capabilities: [.propagationNeedsUnitsEqualTokens],
    validateOptions: { options, count, error, capacity in
        runValidate(options, count, error, capacity) { _ = try contextPoolPooling($0) }
    },
    attend: { input, output in
        runAttend(input, output) { call in
            guard call.hasGrid, call.units == call.tokens else {
                throw PluginFailure("context pooling needs the token grid and as many units as tokens")
            }
            let (support, maxSupport, radius) = try contextPoolPooling(call.options)
            let scale = try DenseAttention.scale(requested: try call.options.float("scale"), channels: call.channels)
            let iterations = try call.options.int("iterations")

            let supports = support > 0 ? [Double](repeating: support, count: call.units)
                : derivedSupports(call, maxSupport: maxSupport)
            let keys = pool(call.keys, width: call.channels, rows: call.gridRows, cols: call.gridCols,
                            radius: radius, supports: supports)
            let values = pool(call.values, width: call.valueChannels, rows: call.gridRows, cols: call.gridCols,
                              radius: radius, supports: supports)
            var weights = try keys.withUnsafeBufferPointer { k in
                try DenseAttention.productTransposed(call.queries, rows: call.tokens, k, rowsB: call.units,
                                                 inner: call.channels, scale: scale)
            }
            DenseAttention.softmaxRows(&weights, rows: call.tokens, cols: call.units)
            try values.withUnsafeBufferPointer { v in
                try DenseAttention.attend(weights: weights, values: v, call: call, iterations: iterations)
            }
        }
    })

@_cdecl("probattn_plugin_register")
public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
    registerVariants([contextPoolVariant], with: registrar)
}
