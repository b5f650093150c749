import ProbattnPluginHost
@testable import ProbattnSegmentation

/// A plain double-precision probabilistic attention in RBF form (uniform priors, no magnitude priors), written for
/// the tests as an oracle independent of the plugins: W_ij = softmax_j(-α/2 ‖q_i − ζ_j‖²), textbook key adaptation
/// with prior precision λ, and one ML value-propagation step from soft fixed values.
struct ReferenceAttention: TokenAttention {
    var alpha = 1.0
    var keyIterations = 0
    var keyPrior = 1.0
    var name: String { "reference_rbf" }
    var needsGrid: Bool { false }
    var needsUnitsEqualTokens: Bool { false }

    func weights(_ q: [Float], _ k: [Float], h: Int, m: Int, c: Int) -> [Double] {
        var w = [Double](repeating: 0, count: h * m)
        for i in 0..<h {
            var best = -Double.infinity
            for j in 0..<m {
                var d = 0.0
                for x in 0..<c { let e = Double(q[i * c + x]) - Double(k[j * c + x]); d += e * e }
                w[i * m + j] = -alpha / 2 * d
                best = max(best, w[i * m + j])
            }
            var sum = 0.0
            for j in 0..<m { w[i * m + j] = _exp(w[i * m + j] - best); sum += w[i * m + j] }
            for j in 0..<m { w[i * m + j] /= sum }
        }
        return w
    }

    func attend(_ call: AttentionInput) throws -> AttentionOutput {
        let (h, m, c, cv) = (call.tokens, call.units, call.channels, call.valueChannels)
        var keys = call.keys
        var adapted: [Float]? = nil
        if keyIterations > 0 && !call.keysAlreadyAdapted {
            for _ in 0..<keyIterations {
                let w = weights(call.queries, keys, h: h, m: m, c: c)
                var next = keys
                for j in 0..<m {
                    var s = 0.0
                    var acc = [Double](repeating: 0, count: c)
                    for i in 0..<h {
                        s += w[i * m + j]
                        for x in 0..<c { acc[x] += w[i * m + j] * Double(call.queries[i * c + x]) }
                    }
                    for x in 0..<c {
                        next[j * c + x] = Float((keyPrior * Double(call.keys[j * c + x]) + alpha * acc[x])
                                                / (keyPrior + alpha * s))
                    }
                }
                keys = next
            }
            adapted = keys
        }
        let w = weights(call.queries, keys, h: h, m: m, c: c)
        var mu = call.values.map(Double.init)
        if let fixed = call.fixed {
            for j in 0..<m {
                var den = 1e-20
                var num = [Double](repeating: 0, count: cv)
                for i in 0..<h {
                    let weight = w[i * m + j] * Double(fixed[i * (cv + 1) + cv])
                    den += weight
                    for v in 0..<cv { num[v] += weight * Double(fixed[i * (cv + 1) + v]) }
                }
                for v in 0..<cv { mu[j * cv + v] = num[v] / den }
            }
        }
        var out = [Float](repeating: 0, count: h * cv)
        for i in 0..<h {
            for v in 0..<cv {
                var s = 0.0
                for j in 0..<m { s += w[i * m + j] * mu[j * cv + v] }
                out[i * cv + v] = Float(s)
            }
        }
        return AttentionOutput(tokenValues: out, adaptedKeys: adapted)
    }
}

import Foundation
import ProbattnEvaluation
import ProbattnJSON
private func _exp(_ x: Double) -> Double { Foundation.exp(x) }
