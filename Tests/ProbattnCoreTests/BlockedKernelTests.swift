import ProbattnCore
import Testing

/// The blocked kernel equals the plain path within the reference tolerance on every configuration it covers.
@Suite struct BlockedKernelTests {
    @Test("blocked = plain on random covered configurations (several row blocks, 1–3 threads)", arguments: 1...8)
    func blockedMatchesPlain(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(4000 + seed))
        // Enough tokens for several 64-row blocks and a ragged last block.
        let d = RandomProblem.Dims(H: g.int(65...300), M: g.int(20...260), C: g.int(4...24), Cv: g.int(1...6))
        var inputs = RandomProblem.inputs(&g, d)
        if seed % 2 == 0 { inputs.alpha = RandomProblem.perUnit(&g, d.M, 0.1, 0.4) }
        inputs.beta = seed % 3 == 0 ? RandomProblem.perUnit(&g, d.M, 0.05, 0.5) : .uniform(Float(g.uniform(0, 0.5)))
        inputs.fixed = RandomProblem.fixed(&g, d, fraction: 0.05)
        if seed % 2 == 1 { inputs.keyPriorPrecision = g.uniformTensor([d.M, d.C], 0.1, 2) }
        if seed % 4 < 2 { inputs.valuePriorPrecision = g.uniformTensor([d.M, d.Cv], 0.1, 2) }
        if seed % 3 == 1 { inputs.initialValues = g.tensor(d.H, d.Cv) }
        var options = ProbabilisticAttentionOptions(
            magnitudePriors: seed % 4 != 3, keyAdaptation: true, keyAdaptationIterations: g.int(0...3),
            valuePropagationIterations: g.int(0...3), priorCentre: seed % 2 == 0 ? .initial : .previousIterate,
            clampFixedOutputs: seed % 5 == 0, maskFixedValuesByIndicator: seed % 3 == 2)
        options.kernel = .plain
        let plain = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        options.kernel = .blocked
        options.threads = 1 + seed % 3
        let blocked = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        #expect(Double(try blocked.tokenValues.maxAbsDifference(plain.tokenValues)) <= tolerance(plain.tokenValues))
        #expect(Double(try blocked.adaptedKeys.maxAbsDifference(plain.adaptedKeys)) <= tolerance(plain.adaptedKeys))
        #expect(Double(try blocked.adaptedValues.maxAbsDifference(plain.adaptedValues)) <= tolerance(plain.adaptedValues))
        #expect(blocked.tokenValues.isFinite)
    }

    @Test("automatic dispatch uses the blocked kernel when it applies and the plain path otherwise")
    func automaticDispatch() throws {
        var g = SeededGenerator(seed: 4100)
        let d = RandomProblem.Dims(H: 70, M: 70, C: 8, Cv: 2)
        var inputs = RandomProblem.inputs(&g, d)
        inputs.weightMask = Tensor(shape: [d.H, d.M], repeating: 1)
        var options = softmaxOptions
        options.kernel = .blocked
        #expect(throws: ProbattnCoreError.self) { try ProbabilisticAttention(options: options).attendTokenMajor(inputs) }
        options.kernel = .automatic
        let automatic = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        options.kernel = .plain
        let plain = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
        #expect(automatic == plain)
    }

    @Test("the blocked kernel applies the same zero-responsibility policies as the plain path")
    func blockedGuard() throws {
        var g = SeededGenerator(seed: 4200)
        let d = RandomProblem.Dims(H: 100, M: 100, C: 8, Cv: 3)
        var inputs = RandomProblem.inputs(&g, d)
        for c in 0..<d.C { inputs.keys[7, c] = -40 }
        inputs.alpha = .uniform(2)
        for policy in [ZeroResponsibilityPolicy.logDomain, .keepPrevious] {
            var options = ProbabilisticAttentionOptions(magnitudePriors: false, keyAdaptation: true,
                                                        keyAdaptationIterations: 3, zeroResponsibility: policy,
                                                        kernel: .blocked, threads: 2)
            let blocked = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
            options.kernel = .plain
            let plain = try ProbabilisticAttention(options: options).attendTokenMajor(inputs)
            #expect(blocked.tokenValues.isFinite)
            #expect(Double(try blocked.adaptedKeys.maxAbsDifference(plain.adaptedKeys)) <= tolerance(plain.adaptedKeys))
            #expect(Double(try blocked.tokenValues.maxAbsDifference(plain.tokenValues)) <= tolerance(plain.tokenValues))
            if policy == .keepPrevious { for c in 0..<d.C { #expect(blocked.adaptedKeys[7, c] == -40) } }
            else { #expect(blocked.adaptedKeys[7, 0] != -40) }
        }
    }
}

/// The blocked kernel's chunks do not depend on its compute budget, so neither does its result.
@Suite struct BlockedKernelBudgetTests {
    @Test("the blocked kernel gives bit-identical results with budgets 1, 2 and 4", arguments: 1...3)
    func sameResultForEveryBudget(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(4300 + seed))
        // Many row blocks (M ≤ 260 gives 256-row blocks): both sums passes and the output pass are cut.
        let d = RandomProblem.Dims(H: g.int(900...1400), M: g.int(40...260), C: g.int(4...16), Cv: g.int(1...4))
        var inputs = RandomProblem.inputs(&g, d)
        inputs.fixed = RandomProblem.fixed(&g, d, fraction: 0.1)
        var options = ProbabilisticAttentionOptions(magnitudePriors: seed != 2, keyAdaptation: true,
                                                    keyAdaptationIterations: 3, valuePropagationIterations: 2,
                                                    kernel: .blocked)
        var results: [TokenMajorOutputs] = []
        for budget in [1, 2, 4] {
            options.threads = budget
            results.append(try ProbabilisticAttention(options: options).attendTokenMajor(inputs))
        }
        for (budget, result) in zip([2, 4], results.dropFirst()) {
            #expect(result.tokenValues.storage == results[0].tokenValues.storage, "budget \(budget): token values")
            #expect(result.adaptedKeys.storage == results[0].adaptedKeys.storage, "budget \(budget): keys")
            #expect(result.adaptedValues.storage == results[0].adaptedValues.storage, "budget \(budget): values")
        }
    }
}
