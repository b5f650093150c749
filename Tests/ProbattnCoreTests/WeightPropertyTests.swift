import Foundation
import ProbattnCore
import Testing

/// Spec §6 items 1–9: equivalences and invariants of the weights and outputs.
@Suite struct WeightPropertyTests {
    let attention = ProbabilisticAttention(options: softmaxOptions)

    @Test("§6.1 softmax flag set equals softmax(α·QKᵀ)·V, for α = 1/√C and any α", arguments: 1...6)
    func softmaxEquivalence(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(100 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        let alpha = seed <= 3 ? 1 / Double(d.C).squareRoot() : g.uniform(0.05, 2)
        inputs.alpha = .uniform(Float(alpha))
        let out = try attention.attendTokenMajor(inputs).tokenValues
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        let expected = softmaxOracle(q.map { qi in k.map { alpha * dot(qi, $0) } }, values: inputs.values)
        #expect(maxDifference(out, expected) <= tolerance(out))
    }

    @Test("§6.2 an explicit π_ij ∝ exp(α‖ζ_j‖²/2) equals magnitude priors", arguments: 1...4)
    func explicitPriorsEqualMagnitudePriors(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(200 + seed))
        let d = RandomProblem.dims(&g)
        var inputs = RandomProblem.inputs(&g, d, keyScale: 0.5)
        let alpha = 1 / Double(d.C).squareRoot()
        let k = doubleRows(inputs.keys)
        let logPrior = k.map { 0.5 * alpha * DoubleOracle.squaredNorm($0) }
        let maxLog = logPrior.max()!
        let unnormalised = logPrior.map { exp($0 - maxLog) }
        let total = unnormalised.reduce(0, +)
        let row = unnormalised.map { Float($0 / total) }
        let plain = try attention.attendTokenMajor(inputs).tokenValues
        inputs.priors = try Tensor(shape: [d.H, d.M], storage: (0..<d.H).flatMap { _ in row })
        let withPriors = try attention.attendTokenMajor(inputs).tokenValues
        #expect(Double(try plain.maxAbsDifference(withPriors)) <= tolerance(plain))
    }

    @Test("§6.3 RBF mode is softmax(−α/2‖q−ζ‖²)·V and translation invariant; dot-product mode is not",
          arguments: 1...4)
    func rbfMode(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(300 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 1)
        var inputs = RandomProblem.inputs(&g, d)
        let alpha = g.uniform(0.1, 1)
        inputs.alpha = .uniform(Float(alpha))
        let rbf = ProbabilisticAttention(options: ProbabilisticAttentionOptions(magnitudePriors: false))
        let out = try rbf.attendTokenMajor(inputs).tokenValues
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        let expected = softmaxOracle(q.map { qi in k.map { -0.5 * alpha * DoubleOracle.squaredDistance(qi, $0) } },
                                     values: inputs.values)
        #expect(maxDifference(out, expected) <= tolerance(out))

        let shift = (0..<d.C).map { _ in Float(g.normal()) }
        var shifted = inputs
        for i in 0..<d.H { for c in 0..<d.C { shifted.queries.storage[i * d.C + c] += shift[c] } }
        for j in 0..<d.M { for c in 0..<d.C { shifted.keys.storage[j * d.C + c] += shift[c] } }
        let outShifted = try rbf.attendTokenMajor(shifted).tokenValues
        #expect(Double(try out.maxAbsDifference(outShifted)) <= 1e-4 * max(1, Double(out.maxMagnitude)))
        let dotOut = try attention.attendTokenMajor(inputs).tokenValues
        let dotShifted = try attention.attendTokenMajor(shifted).tokenValues
        #expect(try dotOut.maxAbsDifference(dotShifted) > 1e-3)
    }

    @Test("§6.4 rows of W sum to 1; a fully masked row gives a zero output without NaN", arguments: 1...4)
    func rowSums(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(400 + seed))
        var d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        d.Cv = 1
        var inputs = RandomProblem.inputs(&g, d, keyScale: 2)
        inputs.values = Tensor(shape: [d.M, 1], repeating: 1)   // output_i = Σ_j W_ij
        var mask = g.uniformTensor([d.H, d.M], 0, 1)
        mask.storage = mask.storage.map { $0 < 0.3 ? 0 : 1 }
        let masked = g.int(0...(d.H - 1))
        for j in 0..<d.M { mask.storage[masked * d.M + j] = 0 }
        for i in 0..<d.H where i != masked { mask.storage[i * d.M + (i % d.M)] = 1 }
        inputs.weightMask = mask
        let out = try attention.attendTokenMajor(inputs).tokenValues
        #expect(out.isFinite)
        for i in 0..<d.H {
            if i == masked { #expect(out.storage[i] == 0) } else { #expect(abs(out.storage[i] - 1) <= 2e-5) }
        }
    }

    @Test("§6.5 magnitude priors with β ≠ 0 add β/2‖μ_j‖²; with v_init the logits are αq·ζ + βv⁰·μ",
          arguments: 1...4)
    func valueTerms(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(500 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        let alpha = 1 / Double(d.C).squareRoot(), beta = g.uniform(0.1, 0.8)
        inputs.beta = .uniform(Float(beta))
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys), mu = doubleRows(inputs.values)
        let out = try attention.attendTokenMajor(inputs).tokenValues
        let expected = softmaxOracle(q.map { qi in (0..<d.M).map {
            alpha * dot(qi, k[$0]) + 0.5 * beta * DoubleOracle.squaredNorm(mu[$0]) } }, values: inputs.values)
        #expect(maxDifference(out, expected) <= tolerance(out))

        inputs.initialValues = g.tensor(d.H, d.Cv)
        let v0 = doubleRows(inputs.initialValues!)
        let outInit = try attention.attendTokenMajor(inputs).tokenValues
        let expectedInit = softmaxOracle((0..<d.H).map { i in (0..<d.M).map {
            alpha * dot(q[i], k[$0]) + beta * dot(v0[i], mu[$0]) } }, values: inputs.values)
        #expect(maxDifference(outInit, expectedInit) <= tolerance(outInit))
    }

    @Test("§6.6 with R, S and magnitude priors the logits are α(q_i·ζ_j + q_i·R_ij + ζ_j·S_ji)", arguments: 1...3)
    func positionalLogits(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(600 + seed))
        let d = RandomProblem.dims(&g)
        var inputs = RandomProblem.inputs(&g, d)
        let alpha = 1 / Double(d.C).squareRoot()
        let r = g.uniformTensor([d.C, d.H, d.H], -1, 1), s = g.uniformTensor([d.C, d.H, d.H], -1, 1)
        inputs.queryPositions = r
        inputs.keyPositions = s
        let out = try attention.attendTokenMajor(inputs).tokenValues
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        let logits = (0..<d.H).map { i in (0..<d.H).map { j in
            var l = dot(q[i], k[j])
            for c in 0..<d.C {
                l += q[i][c] * Double(r[c, i, j]) + k[j][c] * Double(s[c, j, i])
            }
            return alpha * l
        } }
        #expect(maxDifference(out, softmaxOracle(logits, values: inputs.values)) <= tolerance(out))
    }

    @Test("§6.7 v_pos_emb: 2Cv interleaved channels, even = W·μ, odd = Σ_j W_ij P[:,i,j]; P leaves W unchanged at β=0",
          arguments: 1...3)
    func valuePositionalChannels(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(700 + seed))
        let d = RandomProblem.dims(&g)
        let inputs = RandomProblem.inputs(&g, d)
        let p = g.uniformTensor([d.Cv, d.H, d.H], -1, 1)
        func channelMajor(_ t: Tensor) throws -> Tensor {
            try t.transposed().reshaped([1, 1, t.shape[1], t.shape[0]])
        }
        let layout = ReferenceLayoutInputs(
            q: try channelMajor(inputs.queries), zeta: try channelMajor(inputs.keys),
            mu: try channelMajor(inputs.values), alpha: .scalar(1 / Float(d.C).squareRoot()), beta: .scalar(0),
            vPosEmb: p)
        let out = try attention.attendReferenceLayout(layout)
        #expect(out.shape == [1, 1, 2 * d.Cv, d.H])
        let plain = try attention.attendTokenMajor(inputs).tokenValues
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        let alpha = 1 / Double(d.C).squareRoot()
        let weights = q.map { qi -> [Double] in
            let l = k.map { alpha * dot(qi, $0) }
            let m = l.max()!
            let e = l.map { exp($0 - m) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        }
        var worst = 0.0
        for c in 0..<d.Cv {
            for i in 0..<d.H {
                worst = max(worst, Double(abs(out[0, 0, 2 * c, i] - plain[i, c])))
                let expected = (0..<d.H).reduce(0.0) { $0 + weights[i][$1] * Double(p[c, i, $1]) }
                worst = max(worst, abs(Double(out[0, 0, 2 * c + 1, i]) - expected))
            }
        }
        #expect(worst <= tolerance(out))
    }

    @Test("§6.8 permuting units leaves the output unchanged; permuting queries permutes the output", arguments: 1...4)
    func permutationEquivariance(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(800 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: seed % 2 == 0)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.alpha = RandomProblem.perUnit(&g, d.M, 0.1, 0.5)
        inputs.beta = RandomProblem.perUnit(&g, d.M, 0.1, 0.5)
        inputs.fixed = RandomProblem.fixed(&g, d)
        inputs.priors = g.uniformTensor([d.H, d.M], 0.1, 1)
        inputs.keyPriorPrecision = g.uniformTensor([d.M, d.C], 0.5, 2)
        inputs.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.5, 2)
        let options = ProbabilisticAttentionOptions(
            magnitudePriors: true, keyAdaptation: true, keyAdaptationIterations: 2, valuePropagationIterations: 2)
        let op = ProbabilisticAttention(options: options)
        let out = try op.attendTokenMajor(inputs).tokenValues

        let unitOrder = Array(0..<d.M).shuffled(using: &g)
        var units = inputs
        func permuteRows(_ t: Tensor, _ order: [Int]) -> Tensor {
            let w = t.shape[1]
            return try! Tensor(shape: t.shape, storage: order.flatMap { t.storage[($0 * w)..<(($0 + 1) * w)] })
        }
        units.keys = permuteRows(inputs.keys, unitOrder)
        units.values = permuteRows(inputs.values, unitOrder)
        units.keyPriorPrecision = permuteRows(inputs.keyPriorPrecision!, unitOrder)
        units.valuePriorPrecision = permuteRows(inputs.valuePriorPrecision!, unitOrder)
        if case .perUnit(let a) = inputs.alpha { units.alpha = .perUnit(unitOrder.map { a[$0] }) }
        if case .perUnit(let b) = inputs.beta { units.beta = .perUnit(unitOrder.map { b[$0] }) }
        units.priors = try permuteRows(inputs.priors!.transposed(), unitOrder).transposed()
        let outUnits = try op.attendTokenMajor(units).tokenValues
        #expect(Double(try out.maxAbsDifference(outUnits)) <= tolerance(out))

        let tokenOrder = Array(0..<d.H).shuffled(using: &g)
        var tokens = inputs
        tokens.queries = permuteRows(inputs.queries, tokenOrder)
        tokens.fixed = permuteRows(inputs.fixed!, tokenOrder)
        tokens.priors = permuteRows(inputs.priors!, tokenOrder)
        let outTokens = try op.attendTokenMajor(tokens).tokenValues
        #expect(Double(try permuteRows(out, tokenOrder).maxAbsDifference(outTokens)) <= tolerance(out))
    }

    @Test("§6.9 α→∞ in RBF mode picks the nearest key; keys = queries gives W = I and output μ", arguments: 1...4)
    func sharpLimit(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(900 + seed))
        var d = RandomProblem.dims(&g, unitsDiffer: true)
        d.C = max(d.C, 6)   // distinct points: the smallest squared distance stays well above 1/α
        var inputs = RandomProblem.inputs(&g, d)
        inputs.alpha = .uniform(1e4)
        let rbf = ProbabilisticAttention(options: ProbabilisticAttentionOptions(magnitudePriors: false))
        let out = try rbf.attendTokenMajor(inputs).tokenValues
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        for i in 0..<d.H {
            let distances = k.map { DoubleOracle.squaredDistance(q[i], $0) }
            let sorted = distances.sorted()
            if sorted[1] - sorted[0] < 1e-2 { continue }   // near tie: not one-hot at this α
            let nearest = distances.firstIndex(of: sorted[0])!
            for c in 0..<d.Cv { #expect(out[i, c] == inputs.values[nearest, c]) }
        }
        var same = inputs
        same.keys = inputs.queries
        same.values = g.tensor(d.H, d.Cv)
        let identity = try rbf.attendTokenMajor(same).tokenValues
        #expect(try identity.maxAbsDifference(same.values) == 0)
    }
}
