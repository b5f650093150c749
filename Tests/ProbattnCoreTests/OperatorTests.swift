import Foundation
import ProbattnCore
import Testing

/// The project's extensions and the operator's behaviour on awkward inputs.
@Suite struct OperatorTests {
    @Test("M ≠ H with every option (per-unit precisions, π, v_init, priors, KA and VBP) matches the double oracle",
          arguments: 1...6)
    func unitsDifferFromTokens(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(3000 + seed))
        let d = RandomProblem.dims(&g, unitsDiffer: true)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.alpha = RandomProblem.perUnit(&g, d.M, 0.1, 0.5)
        inputs.beta = seed % 2 == 0 ? RandomProblem.perUnit(&g, d.M, 0.1, 0.5) : .uniform(0.3)
        inputs.fixed = RandomProblem.fixed(&g, d)
        inputs.keyPriorPrecision = g.uniformTensor([d.M, d.C], 0.1, 2)
        inputs.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.1, 2)
        if seed % 3 == 0 { inputs.priors = g.uniformTensor([d.H, d.M], 0.05, 1) }
        if seed % 2 == 1 { inputs.initialValues = g.tensor(d.H, d.Cv) }
        if seed % 3 == 1 {
            var mask = g.uniformTensor([d.H, d.M], 0, 1)
            mask.storage = mask.storage.map { $0 < 0.2 ? 0 : 1 }
            inputs.weightMask = mask
        }
        let options = ProbabilisticAttentionOptions(
            magnitudePriors: seed % 4 != 0, keyAdaptation: true, keyAdaptationIterations: g.int(1...3),
            valuePropagationIterations: g.int(1...3), priorCentre: seed % 2 == 0 ? .initial : .previousIterate)
        let result = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        let oracle = DoubleOracle(inputs, options: options).run()
        #expect(result.tokenValues.shape == [d.H, d.Cv])
        #expect(result.adaptedKeys.shape == [d.M, d.C])
        #expect(maxDifference(result.tokenValues, oracle.output) <= tolerance(oracle.output))
        #expect(maxDifference(result.adaptedKeys, oracle.keys) <= tolerance(oracle.keys))
        #expect(maxDifference(result.adaptedValues, oracle.values) <= tolerance(oracle.values))
    }

    @Test("indicator weights in (0, 1) act as weights (masking on) and clamping blends by them", arguments: 1...3)
    func softIndicators(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(3100 + seed))
        let d = RandomProblem.dims(&g)
        var inputs = RandomProblem.inputs(&g, d)
        var fixed = RandomProblem.fixed(&g, d, fraction: 0.4)
        for i in 0..<d.H where fixed[i, d.Cv] == 1 { fixed[i, d.Cv] = Float(g.uniform(0.2, 1)) }
        inputs.fixed = fixed
        var options = ProbabilisticAttentionOptions(magnitudePriors: true, valuePropagationIterations: 2,
                                                    maskFixedValuesByIndicator: true)
        let out = try ProbabilisticAttention(options: options).attendTokenMajor(inputs).tokenValues
        let oracle = DoubleOracle(inputs, options: options).run()
        #expect(maxDifference(out, oracle.output) <= tolerance(oracle.output))
        options.clampFixedOutputs = true
        let clamped = try ProbabilisticAttention(options: options).attendTokenMajor(inputs).tokenValues
        for i in 0..<d.H {
            let m = Double(fixed[i, d.Cv])
            for c in 0..<d.Cv {
                let expected = m >= 1 ? Double(fixed[i, c]) : (1 - m) * Double(out[i, c]) + m * Double(fixed[i, c])
                #expect(abs(Double(clamped[i, c]) - expected) <= 1e-6 * max(1, abs(expected)))
            }
        }
    }

    @Test("a unit whose responsibility underflows: log-domain ML update (default), keep its key, or NaN when dividing")
    func zeroResponsibilityPolicies() throws {
        var g = SeededGenerator(seed: 3200)
        let d = RandomProblem.Dims(H: 24, M: 24, C: 8, Cv: 3)
        var inputs = RandomProblem.inputs(&g, d)
        // One key far from every query: its responsibility is exactly 0 in float32 (and in float64).
        for c in 0..<d.C { inputs.keys[5, c] = -40 }
        let alpha = 2.0
        inputs.alpha = .uniform(Float(alpha))
        var options = ProbabilisticAttentionOptions(magnitudePriors: false, keyAdaptation: true,
                                                    keyAdaptationIterations: 1)
        #expect(options.zeroResponsibility == .logDomain)
        let rescued = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        #expect(rescued.tokenValues.isFinite && rescued.adaptedKeys.isFinite)
        // Oracle: softmax over tokens of log W_i5 = −α/2‖q_i − ζ_5‖² − log Z_i, then the weighted mean of the queries.
        let q = doubleRows(inputs.queries), k = doubleRows(inputs.keys)
        let logW = q.map { qi -> Double in
            let logits = k.map { -0.5 * alpha * DoubleOracle.squaredDistance(qi, $0) }
            let m = logits.max()!
            return logits[5] - (m + log(logits.reduce(0) { $0 + exp($1 - m) }))
        }
        let top = logW.max()!
        let w = logW.map { exp($0 - top) }
        let expected = (0..<d.C).map { c in (0..<d.H).reduce(0) { $0 + w[$1] * q[$1][c] } / w.reduce(0, +) }
        for c in 0..<d.C { #expect(abs(Double(rescued.adaptedKeys[5, c]) - expected[c]) <= 2e-5 * max(1, abs(expected[c]))) }

        options.keyAdaptationIterations = 3
        #expect(try ProbabilisticAttention(options: options).attendTokenMajor(inputs).tokenValues.isFinite)
        options.zeroResponsibility = .keepPrevious
        let kept = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        #expect(kept.tokenValues.isFinite)
        for c in 0..<d.C { #expect(kept.adaptedKeys[5, c] == -40) }
        options.zeroResponsibility = .divide
        let divided = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        #expect(!divided.adaptedKeys.isFinite)
    }

    @Test("the reference layout batches N×G slices and skips propagation for the whole batch without indicators")
    func batchSemantics() throws {
        var g = SeededGenerator(seed: 3300)
        let N = 2, G = 2, C = 6, Cv = 2, H = 10
        let q = g.uniformTensor([N, G, C, H], -1, 1), zeta = g.uniformTensor([N, G, C, H], -1, 1)
        let mu = g.uniformTensor([N, G, Cv, H], -1, 1)
        var fixed = Tensor(shape: [N, G, Cv + 1, H])
        // Only slice (0, 0) has a fixed token; the others then propagate nothing (μ → 0 without a prior).
        fixed[0, 0, 0, 3] = 0.7
        fixed[0, 0, 1, 3] = -0.2
        fixed[0, 0, Cv, 3] = 1
        let options = ProbabilisticAttentionOptions(magnitudePriors: true, valuePropagationIterations: 1)
        let op = ProbabilisticAttention(options: options)
        let layout = ReferenceLayoutInputs(q: q, zeta: zeta, mu: mu, alpha: .scalar(0.4), beta: .scalar(0), vFixed: fixed)
        let out = try op.attendReferenceLayout(layout)
        #expect(out.shape == [N, G, Cv, H])
        for i in 0..<H {
            #expect(abs(out[0, 0, 0, i] - 0.7) <= 1e-5)
            #expect(out[1, 1, 0, i] == 0)
        }
        // Slice by slice through the token-major API gives the same answer for slice (0, 0).
        func slice(_ t: Tensor, _ n: Int, _ gg: Int) throws -> Tensor {
            let rows = t.shape[2], cols = t.shape[3]
            let start = (n * G + gg) * rows * cols
            return try Tensor(shape: [rows, cols], storage: Array(t.storage[start..<(start + rows * cols)])).transposed()
        }
        let single = try op.attendTokenMajor(queries: slice(q, 0, 0), keys: slice(zeta, 0, 0), values: slice(mu, 0, 0),
                                             fixed: slice(fixed, 0, 0), alpha: .uniform(0.4))
        for i in 0..<H { for c in 0..<Cv { #expect(single.tokenValues[i, c] == out[0, 0, c, i]) } }
        // Without any indicator the whole batch keeps its plain output.
        let none = ReferenceLayoutInputs(q: q, zeta: zeta, mu: mu, alpha: .scalar(0.4), beta: .scalar(0),
                                         vFixed: Tensor(shape: [N, G, Cv + 1, H]))
        let plain = ReferenceLayoutInputs(q: q, zeta: zeta, mu: mu, alpha: .scalar(0.4), beta: .scalar(0))
        #expect(try op.attendReferenceLayout(none) == op.attendReferenceLayout(plain))
    }

    @Test("inconsistent shapes throw ProbattnCoreError instead of trapping")
    func shapeErrors() throws {
        var g = SeededGenerator(seed: 3400)
        let op = ProbabilisticAttention(options: softmaxOptions)
        let q = g.tensor(8, 4)
        #expect(throws: ProbattnCoreError.self) {
            try op.attendTokenMajor(queries: q, keys: g.tensor(6, 5), values: g.tensor(6, 2), alpha: .uniform(1))
        }
        #expect(throws: ProbattnCoreError.self) {
            try op.attendTokenMajor(queries: q, keys: g.tensor(6, 4), values: g.tensor(5, 2), alpha: .uniform(1))
        }
        #expect(throws: ProbattnCoreError.self) {
            try op.attendTokenMajor(queries: q, keys: g.tensor(6, 4), values: g.tensor(6, 2), alpha: .perUnit([1, 2]))
        }
        #expect(throws: ProbattnCoreError.self) {
            try op.attendTokenMajor(queries: q, keys: g.tensor(6, 4), values: g.tensor(6, 2), fixed: g.tensor(8, 2),
                                    alpha: .uniform(1))
        }
        var positional = TokenMajorInputs(queries: q, keys: g.tensor(6, 4), values: g.tensor(6, 2), alpha: .uniform(1))
        positional.queryPositions = Tensor(shape: [4, 8, 8])
        #expect(throws: ProbattnCoreError.self) { try op.attendTokenMajor(positional) }
        var negative = ProbabilisticAttentionOptions(valuePropagationIterations: -1)
        negative.magnitudePriors = true
        #expect(throws: ProbattnCoreError.self) {
            try ProbabilisticAttention(options: negative).attendTokenMajor(
                queries: q, keys: g.tensor(6, 4), values: g.tensor(6, 2), alpha: .uniform(1))
        }
    }
}

/// Tensor, BLAS and softmax building blocks.
@Suite struct BuildingBlockTests {
    @Test func matmulMatchesDoubleProduct() throws {
        var g = SeededGenerator(seed: 3500)
        for _ in 0..<4 {
            let m = g.int(1...20), k = g.int(1...20), n = g.int(1...20)
            let a = g.tensor(m, k), b = g.tensor(n, k)
            let product = try a.matmul(b, transposeOther: true)
            let viaTranspose = try a.matmul(b.transposed())
            #expect(product.shape == [m, n])
            let ad = doubleRows(a), bd = doubleRows(b)
            let expected = ad.map { row in bd.map { dot(row, $0) } }
            #expect(maxDifference(product, expected) <= 1e-5 * Double(k))
            #expect(try product.maxAbsDifference(viaTranspose) <= 1e-5 * Float(k))
            let left = try a.matmul(g.tensor(m, 3), transposeSelf: true)
            #expect(left.shape == [k, 3])
        }
        #expect(throws: ProbattnCoreError.self) { try g.tensor(2, 3).matmul(g.tensor(2, 3)) }
    }

    @Test func softmaxIsStableAndSumsToOne() throws {
        let t = try Tensor(shape: [3, 3], storage: [1000, 999, -1000, 0, 0, 0, -.infinity, -.infinity, -.infinity])
        let s = try Softmax.softmaxRows(t)
        #expect(s.isFinite)
        #expect(abs(s[0, 0] + s[0, 1] + s[0, 2] - 1) < 1e-6)
        #expect(abs(s[0, 0] - 1 / (1 + expf(-1))) < 1e-6)
        #expect(abs(s[1, 2] - 1.0 / 3) < 1e-6)
        #expect(s[2, 0] == 0 && s[2, 1] == 0 && s[2, 2] == 0)
        let lse = try Softmax.logSumExpRows(t)
        #expect(abs(lse[0] - (1000 + logf(1 + expf(-1)))) < 1e-3)
        #expect(lse[2] == -.infinity)
    }

    @Test func tensorShapeChecks() throws {
        #expect(throws: ProbattnCoreError.self) { try Tensor(shape: [2, 3], storage: [1, 2]) }
        let t = try Tensor(shape: [2, 3], storage: [1, 2, 3, 4, 5, 6])
        #expect(t[1, 2] == 6)
        #expect(try t.transposed()[2, 1] == 6)
        #expect(try t.reshaped([3, 2])[2, 1] == 6)
        #expect(throws: ProbattnCoreError.self) { try t.reshaped([4, 2]) }
        #expect(throws: ProbattnCoreError.self) { try t.maxAbsDifference(Tensor(shape: [3, 2])) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
