// Plain double-precision implementations of every variant, written independently of the plugins, used as oracles.

import Foundation

/// Double-precision matrices of one random problem (token-major, row-major).
struct Problem {
    var tokens: Int, units: Int, channels: Int, valueChannels: Int
    var queries: [Float], keys: [Float], values: [Float]
    var fixed: [Float]?
    var gridRows = 0, gridCols = 0

    func q(_ i: Int, _ k: Int) -> Double { Double(queries[i * channels + k]) }
    func key(_ j: Int, _ k: Int) -> Double { Double(keys[j * channels + k]) }
    func value(_ j: Int, _ c: Int) -> Double { Double(values[j * valueChannels + c]) }
    /// The fixed weight m_i (0 when nothing is fixed).
    func weight(_ i: Int) -> Double { fixed.map { Double($0[i * (valueChannels + 1) + valueChannels]) } ?? 0 }
    func fixedValue(_ i: Int, _ c: Int) -> Double { Double(fixed?[i * (valueChannels + 1) + c] ?? 0) }
}

enum Oracle {
    /// Logits scale · q_i·k_j, H×M, with `keys` overriding the problem's keys when given.
    static func logits(_ p: Problem, scale: Double, keys: [[Double]]? = nil) -> [[Double]] {
        (0..<p.tokens).map { i in
            (0..<p.units).map { j in
                var dot = 0.0
                for k in 0..<p.channels { dot += p.q(i, k) * (keys?[j][k] ?? p.key(j, k)) }
                return scale * dot
            }
        }
    }

    static func softmax(_ row: [Double]) -> [Double] {
        let largest = row.max() ?? 0
        let e = row.map { Foundation.exp($0 - largest) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// W · V with V given as rows.
    static func apply(_ weights: [[Double]], _ values: [[Double]]) -> [[Double]] {
        weights.map { row in
            (0..<values[0].count).map { c in
                var sum = 0.0
                for (j, w) in row.enumerated() { sum += w * values[j][c] }
                return sum
            }
        }
    }

    static func valueRows(_ p: Problem) -> [[Double]] {
        (0..<p.units).map { j in (0..<p.valueChannels).map { p.value(j, $0) } }
    }

    /// Clamp, then `iterations` times v ← clamp(W v); clamp blends by the weight m_i.
    static func labelPropagation(_ p: Problem, weights: [[Double]], start: [[Double]], iterations: Int) -> [[Double]] {
        guard p.fixed != nil, (0..<p.tokens).contains(where: { p.weight($0) > 0 }) else { return start }
        func clamp(_ v: [[Double]]) -> [[Double]] {
            v.enumerated().map { i, row in
                let m = p.weight(i)
                return m > 0 ? row.enumerated().map { c, x in (1 - m) * x + m * p.fixedValue(i, c) } : row
            }
        }
        var v = clamp(start)
        for _ in 0..<iterations { v = clamp(apply(weights, v)) }
        return v
    }

    static func flat(_ rows: [[Double]]) -> [Double] { rows.flatMap { $0 } }

    static func softmaxAttention(_ p: Problem, scale: Double, iterations: Int) -> [Double] {
        let w = logits(p, scale: scale).map(softmax)
        return flat(labelPropagation(p, weights: w, start: apply(w, valueRows(p)), iterations: iterations))
    }

    static func sigmoidAttention(_ p: Problem, scale: Double, bias: Double, iterations: Int) -> [Double] {
        let w = logits(p, scale: scale).map { $0.map { 1 / (1 + Foundation.exp(-($0 + bias))) } }
        return flat(labelPropagation(p, weights: w, start: apply(w, valueRows(p)), iterations: iterations))
    }

    /// Neighbourhood attention: along each axis, the positions with the token's residue mod dilation; the window is the
    /// run of `kernel` consecutive such positions centred on the token, moved inside the axis at the borders.
    static func neighborhoodAttention(_ p: Problem, kernel: Int, dilation: Int, scale: Double,
                                      iterations: Int) -> [Double] {
        func window(_ index: Int, _ length: Int) -> [Int] {
            let same = stride(from: index % dilation, to: length, by: dilation).map { $0 }
            guard same.count > kernel else { return same }
            let position = same.firstIndex(of: index) ?? 0
            let start = min(max(position - kernel / 2, 0), same.count - kernel)
            return Array(same[start..<(start + kernel)])
        }
        let full = logits(p, scale: scale)
        var w = [[Double]](repeating: [Double](repeating: 0, count: p.units), count: p.tokens)
        for r in 0..<p.gridRows {
            for s in 0..<p.gridCols {
                let i = r * p.gridCols + s
                let members = window(r, p.gridRows).flatMap { r2 in window(s, p.gridCols).map { r2 * p.gridCols + $0 } }
                let weights = softmax(members.map { full[i][$0] })
                for (j, weight) in zip(members, weights) { w[i][j] = weight }
            }
        }
        return flat(labelPropagation(p, weights: w, start: apply(w, valueRows(p)), iterations: iterations))
    }

    /// The supports of context_pool: explicit, or max_support · v / (v + local 3×3 variance).
    static func contextPoolSupports(_ p: Problem, support: Double, maxSupport: Double) -> [Double] {
        if support > 0 { return [Double](repeating: support, count: p.units) }
        func variance(_ members: [Int]) -> Double {
            var total = 0.0
            for k in 0..<p.channels {
                let mean = members.map { p.key($0, k) }.reduce(0, +) / Double(members.count)
                total += members.map { (p.key($0, k) - mean) * (p.key($0, k) - mean) }.reduce(0, +)
            }
            return total / Double(members.count * p.channels)
        }
        let global = variance(Array(0..<p.units))
        return (0..<p.units).map { j in
            let (r, s) = (j / p.gridCols, j % p.gridCols)
            var members: [Int] = []
            for r2 in (r - 1)...(r + 1) where r2 >= 0 && r2 < p.gridRows {
                for s2 in (s - 1)...(s + 1) where s2 >= 0 && s2 < p.gridCols { members.append(r2 * p.gridCols + s2) }
            }
            return global > 0 ? maxSupport * global / (global + variance(members)) : maxSupport
        }
    }

    static func contextPoolAttention(_ p: Problem, support: Double, maxSupport: Double, radius: Int, scale: Double,
                                     iterations: Int) -> [Double] {
        let supports = contextPoolSupports(p, support: support, maxSupport: maxSupport)
        func pooled(_ get: (Int, Int) -> Double, width: Int) -> [[Double]] {
            (0..<p.units).map { j in
                let (r, s) = (j / p.gridCols, j % p.gridCols)
                var sum = [Double](repeating: 0, count: width)
                var total = 0.0
                for r2 in 0..<p.gridRows where abs(r2 - r) <= radius {
                    for s2 in 0..<p.gridCols where abs(s2 - s) <= radius {
                        let d2 = Double((r2 - r) * (r2 - r) + (s2 - s) * (s2 - s))
                        let g = Foundation.exp(-d2 / (2 * supports[j] * supports[j]))
                        for c in 0..<width { sum[c] += g * get(r2 * p.gridCols + s2, c) }
                        total += g
                    }
                }
                return sum.map { $0 / total }
            }
        }
        let keys = pooled(p.key, width: p.channels)
        let values = pooled(p.value, width: p.valueChannels)
        let w = logits(p, scale: scale, keys: keys).map(softmax)
        return flat(labelPropagation(p, weights: w, start: apply(w, values), iterations: iterations))
    }

    static func uniform(_ p: Problem, clampFixed: Bool) -> [Double] {
        let totalWeight = (0..<p.tokens).map(p.weight).reduce(0, +)
        let mean: [Double] = (0..<p.valueChannels).map { c in
            if totalWeight > 0 {
                return (0..<p.tokens).map { p.weight($0) * p.fixedValue($0, c) }.reduce(0, +) / totalWeight
            }
            return (0..<p.units).map { p.value($0, c) }.reduce(0, +) / Double(p.units)
        }
        return flat((0..<p.tokens).map { i in
            let m = clampFixed ? p.weight(i) : 0
            return mean.enumerated().map { c, x in (1 - m) * x + m * p.fixedValue(i, c) }
        })
    }
}

/// The probabilistic operator (spec §1) for uniform precisions, in double precision, as the plugin's options define it.
struct ProbabilisticOracle {
    var alpha: Double
    var beta = 0.0
    var magnitudePriors = true
    var keyIterations = 0
    var keyPrior = 0.0       // 0: no prior (ML)
    var valueIterations = 0
    var valuePrior = 0.0     // 0: no prior (ML)
    var textbook = true      // prior centred on the initial keys/values (else the previous iterate)
    var clamp = false

    struct Result { var tokens: [Double]; var keys: [[Double]]; var values: [[Double]] }

    /// W_ij ∝ π_j exp(−α/2‖q_i − ζ_j‖²), log π_j = α/2‖ζ_j‖² + β/2‖μ_j‖² with magnitude priors (else uniform).
    func weights(_ p: Problem, keys: [[Double]], values: [[Double]]) -> [[Double]] {
        (0..<p.tokens).map { i in
            Oracle.softmax((0..<p.units).map { j in
                var distance = 0.0, keyNorm = 0.0
                for k in 0..<p.channels {
                    distance += (p.q(i, k) - keys[j][k]) * (p.q(i, k) - keys[j][k])
                    keyNorm += keys[j][k] * keys[j][k]
                }
                var logit = -alpha / 2 * distance
                if magnitudePriors {
                    logit += alpha / 2 * keyNorm + beta / 2 * values[j].reduce(0) { $0 + $1 * $1 }
                }
                return logit
            })
        }
    }

    /// means_j ← (λ centre_j + p S_j) / (λ + p T_j) with a prior, else S_j / T_j.
    func update(_ means: [[Double]], initial: [[Double]], sums: [[Double]], totals: [Double], precision: Double,
                prior: Double, epsilon: Double) -> [[Double]] {
        means.indices.map { j in
            means[j].indices.map { c in
                if prior > 0 {
                    let centre = textbook ? initial[j][c] : means[j][c]
                    return (prior * centre + precision * sums[j][c]) / (prior + precision * (totals[j] + epsilon))
                }
                return sums[j][c] / (totals[j] + epsilon)
            }
        }
    }

    func run(_ p: Problem) -> Result {
        let initialKeys = (0..<p.units).map { j in (0..<p.channels).map { p.key(j, $0) } }
        let initialValues = Oracle.valueRows(p)
        var keys = initialKeys, values = initialValues
        var w = weights(p, keys: keys, values: values)
        for _ in 0..<keyIterations {
            let totals = (0..<p.units).map { j in (0..<p.tokens).map { w[$0][j] }.reduce(0, +) }
            let sums = (0..<p.units).map { j in
                (0..<p.channels).map { k in (0..<p.tokens).map { w[$0][j] * p.q($0, k) }.reduce(0, +) }
            }
            keys = update(keys, initial: initialKeys, sums: sums, totals: totals, precision: alpha, prior: keyPrior,
                          epsilon: 0)
            w = weights(p, keys: keys, values: values)
        }
        if (0..<p.tokens).map(p.weight).reduce(0, +) > 0 {
            for _ in 0..<valueIterations {
                let totals = (0..<p.units).map { j in (0..<p.tokens).map { w[$0][j] * p.weight($0) }.reduce(0, +) }
                let sums = (0..<p.units).map { j in
                    (0..<p.valueChannels).map { c in
                        (0..<p.tokens).map { w[$0][j] * p.weight($0) * p.fixedValue($0, c) }.reduce(0, +)
                    }
                }
                values = update(values, initial: initialValues, sums: sums, totals: totals, precision: beta,
                                prior: valuePrior, epsilon: 1e-20)
                w = weights(p, keys: keys, values: values)
            }
        }
        var out = Oracle.apply(w, values)
        if clamp {
            for i in 0..<p.tokens where p.weight(i) > 0 {
                let m = p.weight(i)
                for c in 0..<p.valueChannels { out[i][c] = (1 - m) * out[i][c] + m * p.fixedValue(i, c) }
            }
        }
        return Result(tokens: Oracle.flat(out), keys: keys, values: values)
    }
}
