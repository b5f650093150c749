import Foundation
import ProbattnCore

/// A plain double-precision implementation of the reference layer (token-major, one head), written literally from
/// spec §1 (distances ‖q − ζ‖², explicit magnitude-prior terms), as an oracle for the Float32 operator.
struct DoubleOracle {
    var queries: [[Double]]          // H × C
    var keys: [[Double]]             // M × C
    var values: [[Double]]           // M × Cv
    var alpha: [Double]              // M
    var beta: [Double]               // M
    var magnitudePriors = false
    var priors: [[Double]]? = nil    // H × M
    var initialValues: [[Double]]? = nil
    var fixedValues: [[Double]]? = nil   // H × Cv
    var indicator: [Double]? = nil       // H
    var keyPriorPrecision: [[Double]]? = nil   // M × C
    var valuePriorPrecision: [[Double]]? = nil // M × Cv
    var weightMask: [[Double]]? = nil
    var keyIterations = 0
    var valueIterations = 0
    var centreOnInitial = false
    var maskFixedValues = false

    var H: Int { queries.count }
    var M: Int { keys.count }

    init(_ inputs: TokenMajorInputs, options: ProbabilisticAttentionOptions) {
        func rows(_ t: Tensor) -> [[Double]] {
            let width = t.shape[1]
            return (0..<t.shape[0]).map { r in (0..<width).map { Double(t.storage[r * width + $0]) } }
        }
        func perUnit(_ p: Precision, _ m: Int) -> [Double] {
            switch p {
            case .uniform(let v): return [Double](repeating: Double(v), count: m)
            case .perUnit(let vs): return vs.map(Double.init)
            }
        }
        queries = rows(inputs.queries)
        keys = rows(inputs.keys)
        values = rows(inputs.values)
        alpha = perUnit(inputs.alpha, keys.count)
        beta = perUnit(inputs.beta, keys.count)
        magnitudePriors = options.magnitudePriors
        priors = inputs.priors.map(rows)
        initialValues = inputs.initialValues.map(rows)
        if let fixed = inputs.fixed {
            let all = rows(fixed)
            let cv = values[0].count
            fixedValues = all.map { Array($0[0..<cv]) }
            indicator = all.map { $0[$0.count - 1] }
        }
        keyPriorPrecision = inputs.keyPriorPrecision.map(rows)
        valuePriorPrecision = inputs.valuePriorPrecision.map(rows)
        weightMask = inputs.weightMask.map(rows)
        keyIterations = options.effectiveKeyAdaptationIterations
        valueIterations = options.valuePropagationIterations
        centreOnInitial = options.priorCentre == .initial
        maskFixedValues = options.maskFixedValuesByIndicator
    }

    static func squaredDistance(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    }
    static func squaredNorm(_ a: [Double]) -> Double { a.reduce(0) { $0 + $1 * $1 } }

    /// The logits of spec §1.3 as the reference writes them.
    func logits(keys: [[Double]], values: [[Double]]) -> [[Double]] {
        (0..<H).map { i in
            (0..<M).map { j in
                var l = -0.5 * alpha[j] * Self.squaredDistance(queries[i], keys[j])
                if let v0 = initialValues { l -= 0.5 * beta[j] * Self.squaredDistance(v0[i], values[j]) }
                if let priors { l += log(priors[i][j]) }
                else if magnitudePriors {
                    l += 0.5 * alpha[j] * Self.squaredNorm(keys[j]) + 0.5 * beta[j] * Self.squaredNorm(values[j])
                }
                return l
            }
        }
    }

    func weights(keys: [[Double]], values: [[Double]]) -> [[Double]] {
        logits(keys: keys, values: values).enumerated().map { i, row in
            let m = row.max() ?? 0
            var e = row.map { exp($0 - m) }
            if let weightMask { e = zip(e, weightMask[i]).map { $0 * $1 } }
            let s = e.reduce(0, +) + 1e-20
            return e.map { $0 / s }
        }
    }

    /// Runs the operator; returns the outputs (H × Cv), keys and values after adaptation.
    func run() -> (output: [[Double]], keys: [[Double]], values: [[Double]]) {
        var keys = self.keys, values = self.values
        let C = keys[0].count, Cv = values[0].count
        var w = weights(keys: keys, values: values)
        for _ in 0..<keyIterations {
            var next = keys
            for j in 0..<M {
                let s = (0..<H).reduce(0) { $0 + w[$1][j] }
                for c in 0..<C {
                    let u = (0..<H).reduce(0) { $0 + w[$1][j] * queries[$1][c] }
                    if let lambda = keyPriorPrecision {
                        let centre = centreOnInitial ? self.keys[j][c] : keys[j][c]
                        next[j][c] = (lambda[j][c] * centre + alpha[j] * u) / (lambda[j][c] + alpha[j] * s)
                    } else {
                        next[j][c] = u / s
                    }
                }
            }
            keys = next
            w = weights(keys: keys, values: values)
        }
        if let fixed = fixedValues, let m = indicator, m.reduce(0, +) > 0 {
            for _ in 0..<valueIterations {
                var next = values
                for j in 0..<M {
                    let d = (0..<H).reduce(0) { $0 + w[$1][j] * m[$1] } + 1e-20
                    for c in 0..<Cv {
                        let s = (0..<H).reduce(0) { $0 + w[$1][j] * fixed[$1][c] * (maskFixedValues ? m[$1] : 1) }
                        if let lambda = valuePriorPrecision {
                            let centre = centreOnInitial ? self.values[j][c] : values[j][c]
                            next[j][c] = (lambda[j][c] * centre + beta[j] * s) / (lambda[j][c] + beta[j] * d)
                        } else {
                            next[j][c] = s / d
                        }
                    }
                }
                values = next
                w = weights(keys: keys, values: values)
            }
        }
        let output = (0..<H).map { i in (0..<Cv).map { c in (0..<M).reduce(0) { $0 + w[i][$1] * values[$1][c] } } }
        return (output, keys, values)
    }
}

/// max |a − b| over a Float32 tensor and a double matrix of the same extent.
func maxDifference(_ tensor: Tensor, _ oracle: [[Double]]) -> Double {
    let width = tensor.shape[1]
    var result = 0.0
    for (r, row) in oracle.enumerated() {
        for (c, value) in row.enumerated() {
            let d = abs(Double(tensor.storage[r * width + c]) - value)
            if d.isNaN { return .infinity }
            result = max(result, d)
        }
    }
    return result
}

/// The property tests' Float32 tolerance: 2e-5 · max(1, the output's max magnitude).
func tolerance(_ output: Tensor) -> Double { 2e-5 * max(1, Double(output.maxMagnitude)) }
func tolerance(_ oracle: [[Double]]) -> Double { 2e-5 * max(1, oracle.flatMap { $0 }.map(abs).max() ?? 0) }
