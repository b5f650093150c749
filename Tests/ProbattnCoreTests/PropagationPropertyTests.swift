import Foundation
import ProbattnCore
import Testing

/// Spec §6 items 15–21: value belief propagation with fixed values.
@Suite struct PropagationPropertyTests {
    static func options(_ iterations: Int, magnitude: Bool = true) -> ProbabilisticAttentionOptions {
        ProbabilisticAttentionOptions(magnitudePriors: magnitude, valuePropagationIterations: iterations)
    }

    @Test("§6.15 no indicator set, or zero iterations, gives the plain output", arguments: 1...4)
    func noFeedback(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1500 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        let plain = try ProbabilisticAttention(options: softmaxOptions).attendTokenMajor(inputs).tokenValues
        inputs.fixed = Tensor(shape: [d.H, d.Cv + 1])   // no indicator anywhere
        #expect(try ProbabilisticAttention(options: Self.options(3)).attendTokenMajor(inputs).tokenValues == plain)
        inputs.fixed = RandomProblem.fixed(&g, d)
        #expect(try ProbabilisticAttention(options: Self.options(0)).attendTokenMajor(inputs).tokenValues == plain)
    }

    @Test("§6.16 one fixed token, no μ prior: every μ_j and every output equal v*", arguments: 1...4)
    func singleFixedToken(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1600 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.fixed = RandomProblem.fixed(&g, d, count: 1)
        let token = (0..<d.H).first { inputs.fixed![$0, d.Cv] == 1 }!
        let result = try ProbabilisticAttention(options: Self.options(g.int(1...3))).attendTokenMajor(inputs)
        for c in 0..<d.Cv {
            let v = Double(inputs.fixed![token, c])
            for j in 0..<d.M { #expect(abs(Double(result.adaptedValues[j, c]) - v) <= 2e-5 * max(1, abs(v))) }
            for i in 0..<d.H { #expect(abs(Double(result.tokenValues[i, c]) - v) <= 2e-5 * max(1, abs(v))) }
        }
    }

    @Test("§6.17 without a μ prior every output lies in the convex hull of the fixed values", arguments: 1...6)
    func convexHull(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1700 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.beta = .uniform(Float(g.uniform(0, 0.5)))
        inputs.fixed = RandomProblem.fixed(&g, d, fraction: 0.3)
        let out = try ProbabilisticAttention(options: Self.options(g.int(1...3))).attendTokenMajor(inputs).tokenValues
        for c in 0..<d.Cv {
            let fixedValues = (0..<d.H).filter { inputs.fixed![$0, d.Cv] == 1 }.map { inputs.fixed![$0, c] }
            let low = fixedValues.min()!, high = fixedValues.max()!
            for i in 0..<d.H {
                #expect(out[i, c] >= low - 2e-5 * max(1, abs(low)) && out[i, c] <= high + 2e-5 * max(1, abs(high)))
            }
        }
    }

    @Test("§6.18 no μ prior and W independent of μ: output = W·D⁻¹·Wᵀ·diag(m)·V*, and T = 1 equals T = 3",
          arguments: 1...4)
    func twoHopClosedForm(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1800 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.fixed = RandomProblem.fixed(&g, d)
        let once = try ProbabilisticAttention(options: Self.options(1)).attendTokenMajor(inputs).tokenValues
        let thrice = try ProbabilisticAttention(options: Self.options(3)).attendTokenMajor(inputs).tokenValues
        let oracle = DoubleOracle(inputs, options: Self.options(1))
        let w = oracle.weights(keys: oracle.keys, values: oracle.values)
        let m = oracle.indicator!, v = oracle.fixedValues!
        let unitValues = (0..<d.M).map { j -> [Double] in
            let dj = (0..<d.H).reduce(0) { $0 + w[$1][j] * m[$1] }
            return (0..<d.Cv).map { c in (0..<d.H).reduce(0) { $0 + w[$1][j] * m[$1] * v[$1][c] } / dj }
        }
        let expected = (0..<d.H).map { i in (0..<d.Cv).map { c in (0..<d.M).reduce(0) { $0 + w[i][$1] * unitValues[$1][c] } } }
        #expect(maxDifference(once, expected) <= tolerance(expected))
        #expect(Double(try once.maxAbsDifference(thrice)) <= tolerance(once))
    }

    @Test("§6.19 μ prior limits: λ→∞ or β→0 no change, β→∞ equals ML, one step (λμ⁰+βS)/(λ+βD), convergence to ML",
          arguments: 1...4)
    func valuePriorLimits(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(1900 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.fixed = RandomProblem.fixed(&g, d, fraction: 0.5)
        let plain = try ProbabilisticAttention(options: softmaxOptions).attendTokenMajor(inputs)

        var rigid = inputs
        rigid.beta = .uniform(0.5)
        rigid.valuePriorPrecision = Tensor(shape: [d.M, d.Cv], repeating: 1e12)
        let rigidOut = try ProbabilisticAttention(options: Self.options(2)).attendTokenMajor(rigid)
        let rigidPlain = try ProbabilisticAttention(options: softmaxOptions).attendTokenMajor(rigid)
        #expect(Double(try rigidOut.tokenValues.maxAbsDifference(rigidPlain.tokenValues)) <= tolerance(rigidPlain.tokenValues))

        var noBeta = inputs
        noBeta.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.5, 2)
        let noBetaOut = try ProbabilisticAttention(options: Self.options(2)).attendTokenMajor(noBeta)
        #expect(Double(try noBetaOut.tokenValues.maxAbsDifference(plain.tokenValues)) <= tolerance(plain.tokenValues))

        // β → ∞ (W held independent of μ: no v_init, and β enters the magnitude prior only through ‖μ‖², so use RBF).
        var sharp = inputs
        sharp.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.5, 2)
        sharp.beta = .uniform(1e9)
        let rbfML = try ProbabilisticAttention(options: Self.options(1, magnitude: false)).attendTokenMajor(inputs)
        let sharpOut = try ProbabilisticAttention(options: Self.options(1, magnitude: false)).attendTokenMajor(sharp)
        #expect(Double(try sharpOut.adaptedValues.maxAbsDifference(rbfML.adaptedValues))
                <= 1e-4 * max(1, Double(rbfML.adaptedValues.maxMagnitude)))

        // One prior step, against the oracle; then many steps converge to the ML solution.
        var prior = inputs
        prior.beta = .uniform(Float(g.uniform(0.5, 2)))
        prior.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.001, 0.01)
        let step = try ProbabilisticAttention(options: Self.options(1, magnitude: false)).attendTokenMajor(prior)
        let oracle = DoubleOracle(prior, options: Self.options(1, magnitude: false)).run()
        #expect(maxDifference(step.adaptedValues, oracle.values) <= tolerance(oracle.values))
        let many = try ProbabilisticAttention(options: Self.options(300, magnitude: false)).attendTokenMajor(prior)
        let rbfOut = rbfML.tokenValues
        #expect(Double(try many.tokenValues.maxAbsDifference(rbfOut)) <= 1e-3 * max(1, Double(rbfOut.maxMagnitude)))
    }

    @Test("§6.20 W = I: fixed values reproduce themselves, unfixed units become 0; clamping always returns v*",
          arguments: 1...4)
    func fixedValuesReproduceThemselves(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(2000 + seed))
        var d = RandomProblem.dims(&g)
        d.C = max(d.C, 6)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.keys = inputs.queries
        inputs.alpha = .uniform(1e4)
        inputs.fixed = RandomProblem.fixed(&g, d)
        let result = try ProbabilisticAttention(options: Self.options(1, magnitude: false)).attendTokenMajor(inputs)
        for i in 0..<d.H {
            let isFixed = inputs.fixed![i, d.Cv] == 1
            for c in 0..<d.Cv {
                if isFixed { #expect(result.tokenValues[i, c] == inputs.fixed![i, c]) }
                else { #expect(result.adaptedValues[i, c] == 0) }
            }
        }
        // Clamping with an ordinary (soft) α: outputs at fixed tokens equal v*, the others are unchanged.
        var soft = inputs
        soft.keys = g.tensor(d.M, d.C)
        soft.alpha = .uniform(0.3)
        var options = Self.options(2)
        let free = try ProbabilisticAttention(options: options).attendTokenMajor(soft).tokenValues
        options.clampFixedOutputs = true
        let clamped = try ProbabilisticAttention(options: options).attendTokenMajor(soft).tokenValues
        for i in 0..<d.H {
            for c in 0..<d.Cv {
                if soft.fixed![i, d.Cv] == 1 { #expect(clamped[i, c] == soft.fixed![i, c]) }
                else { #expect(clamped[i, c] == free[i, c]) }
            }
        }
    }

    @Test("§6.21 with masking on, garbage in non-fixed v_fixed channels has no effect (it leaks when off)",
          arguments: 1...4)
    func maskingFixedChannels(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(2100 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var clean = RandomProblem.inputs(&g, d)
        clean.fixed = RandomProblem.fixed(&g, d)
        var dirty = clean
        for i in 0..<d.H where clean.fixed![i, d.Cv] == 0 {
            for c in 0..<d.Cv { dirty.fixed![i, c] = Float(10 * g.normal()) }
        }
        #expect(dirty.fixed! != clean.fixed!)
        var options = Self.options(2)
        options.maskFixedValuesByIndicator = true
        let masked = ProbabilisticAttention(options: options)
        #expect(try masked.attendTokenMajor(dirty).tokenValues == masked.attendTokenMajor(clean).tokenValues)
        let unmasked = ProbabilisticAttention(options: Self.options(2))
        #expect(try unmasked.attendTokenMajor(dirty).tokenValues.maxAbsDifference(unmasked.attendTokenMajor(clean).tokenValues) > 1e-3)
    }
}
