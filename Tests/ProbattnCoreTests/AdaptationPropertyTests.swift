import Foundation
import ProbattnCore
import Testing

/// Spec §6 items 10–14: online key adaptation.
@Suite struct KeyAdaptationPropertyTests {
    static func options(_ iterations: Int, magnitude: Bool = true, centre: PriorCentre = .previousIterate)
        -> ProbabilisticAttentionOptions {
        ProbabilisticAttentionOptions(magnitudePriors: magnitude, keyAdaptation: true,
                                      keyAdaptationIterations: iterations, priorCentre: centre)
    }

    @Test("§6.10 zero iterations, or key adaptation off, is bit-identical to no adaptation", arguments: 1...4)
    func zeroIterations(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1000 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        let inputs = RandomProblem.inputs(&g, d)
        let plain = try ProbabilisticAttention(options: softmaxOptions).attendTokenMajor(inputs)
        let zero = try ProbabilisticAttention(options: Self.options(0)).attendTokenMajor(inputs)
        var off = Self.options(3)
        off.keyAdaptation = false
        let disabled = try ProbabilisticAttention(options: off).attendTokenMajor(inputs)
        #expect(zero == plain)
        #expect(disabled == plain)
        #expect(plain.adaptedKeys == inputs.keys)
    }

    @Test("§6.11 one ML step gives ζ_j = Σ_i W_ij q_i / Σ_i W_ij with W from the original keys", arguments: 1...4)
    func oneMLStep(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1100 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        if seed > 2 { inputs.alpha = RandomProblem.perUnit(&g, d.M, 0.1, 0.6) }
        let options = Self.options(1)
        let result = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        let oracle = DoubleOracle(inputs, options: options)
        let w = oracle.weights(keys: oracle.keys, values: oracle.values)
        let expectedKeys = (0..<d.M).map { j -> [Double] in
            let s = (0..<d.H).reduce(0) { $0 + w[$1][j] }
            return (0..<d.C).map { c in (0..<d.H).reduce(0) { $0 + w[$1][j] * oracle.queries[$1][c] } / s }
        }
        #expect(maxDifference(result.adaptedKeys, expectedKeys) <= tolerance(expectedKeys))
        let run = oracle.run()
        #expect(maxDifference(result.tokenValues, run.output) <= tolerance(run.output))
    }

    @Test("§6.12 prior precision λ→∞ means no change; λ = 0 equals ML", arguments: 1...4)
    func priorLimits(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1200 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        let op = ProbabilisticAttention(options: Self.options(g.int(1...3)))
        let ml = try op.attendTokenMajor(inputs)
        inputs.keyPriorPrecision = Tensor(shape: [d.M, d.C], repeating: 1e12)
        let rigid = try op.attendTokenMajor(inputs)
        #expect(Double(try rigid.adaptedKeys.maxAbsDifference(inputs.keys)) <= 2e-5 * max(1, Double(inputs.keys.maxMagnitude)))
        let plain = try ProbabilisticAttention(options: softmaxOptions).attendTokenMajor(inputs).tokenValues
        #expect(Double(try rigid.tokenValues.maxAbsDifference(plain)) <= tolerance(plain))
        inputs.keyPriorPrecision = Tensor(shape: [d.M, d.C], repeating: 0)
        let zeroPrior = try op.attendTokenMajor(inputs)
        #expect(Double(try zeroPrior.tokenValues.maxAbsDifference(ml.tokenValues)) <= tolerance(ml.tokenValues))
        #expect(Double(try zeroPrior.adaptedKeys.maxAbsDifference(ml.adaptedKeys))
                <= 2e-5 * max(1, Double(ml.adaptedKeys.maxMagnitude)))
    }

    @Test("§6.13 in RBF mode with fixed π the EM objective Σ_i logsumexp_j(−α/2‖q_i−ζ_j‖²) never decreases",
          arguments: 1...4)
    func emMonotone(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1300 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        let alpha = g.uniform(0.2, 1)
        inputs.alpha = .uniform(Float(alpha))
        let q = doubleRows(inputs.queries)
        func objective(_ keys: Tensor) -> Double {
            let k = doubleRows(keys)
            return q.reduce(0) { total, qi in
                let l = k.map { -0.5 * alpha * DoubleOracle.squaredDistance(qi, $0) }
                let m = l.max()!
                return total + m + log(l.reduce(0) { $0 + exp($1 - m) })
            }
        }
        var previous = objective(inputs.keys)
        for t in 1...6 {
            let keys = try ProbabilisticAttention(options: Self.options(t, magnitude: false))
                .attendTokenMajor(inputs).adaptedKeys
            let current = objective(keys)
            #expect(current >= previous - 1e-4 * max(1, abs(previous)), "iteration \(t): \(current) < \(previous)")
            previous = current
        }
    }

    @Test("§6.14 textbook MAP (prior at the initial keys) and reference MAP (previous iterate) agree for T = 1 and differ for T > 1",
          arguments: 1...4)
    func priorCentres(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1400 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.keyPriorPrecision = g.uniformTensor([d.M, d.C], 0.2, 2)
        inputs.alpha = seed % 2 == 0 ? RandomProblem.perUnit(&g, d.M, 0.2, 1) : .uniform(0.5)
        for iterations in [1, 3] {
            var outputs: [Tensor] = []
            for centre in PriorCentre.allCases {
                let options = Self.options(iterations, centre: centre)
                let result = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
                let oracle = DoubleOracle(inputs, options: options).run()
                #expect(maxDifference(result.tokenValues, oracle.output) <= tolerance(oracle.output))
                #expect(maxDifference(result.adaptedKeys, oracle.keys) <= tolerance(oracle.keys))
                outputs.append(result.adaptedKeys)
            }
            let gap = try outputs[0].maxAbsDifference(outputs[1])
            if iterations == 1 { #expect(Double(gap) <= 2e-5 * max(1, Double(outputs[0].maxMagnitude))) }
            else { #expect(gap > 1e-3) }
        }
    }
}
