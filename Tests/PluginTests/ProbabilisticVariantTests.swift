// The `probabilistic` plugin (ProbattnCore's operator behind the C ABI), loaded through dlopen: against the
// double-precision oracle, against softmax, the keys-already-adapted flag, and the reference cases.

import Foundation
import ProbattnPluginHost
import Testing

private func problem(tokens: Int, units: Int, channels: Int = 8, valueChannels: Int = 3, fixed: Bool,
                     using generator: inout SeededGenerator) -> Problem {
    Problem(tokens: tokens, units: units, channels: channels, valueChannels: valueChannels,
            queries: randomFloats(tokens * channels, using: &generator),
            keys: randomFloats(units * channels, using: &generator),
            values: randomFloats(units * valueChannels, scale: 2, using: &generator),
            fixed: fixed ? randomFixed(tokens: tokens, valueChannels: valueChannels, using: &generator) : nil)
}

private func attend(_ p: Problem, _ options: [String: PluginOptionValue], keysAlreadyAdapted: Bool = false,
                    variant name: String = "probabilistic") throws -> AttentionOutput {
    let variant = try builtPlugins.variant(named: name)
    let input = AttentionInput(tokens: p.tokens, units: p.units, channels: p.channels, valueChannels: p.valueChannels,
                               queries: p.queries, keys: p.keys, values: p.values, fixed: p.fixed,
                               keysAlreadyAdapted: keysAlreadyAdapted)
    return try variant.attend(input, options: try variant.resolveOptions(options))
}

@Suite struct ProbabilisticVariantTests {
    @Test(arguments: 0..<5) func matchesTheOracle(configuration: Int) throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var generator = SeededGenerator(seed: seed)
        let p = problem(tokens: 28, units: configuration == 4 ? 19 : 28, fixed: true, using: &generator)
        let alphaDefault = 1 / 8.0.squareRoot()
        let (options, oracle): ([String: PluginOptionValue], ProbabilisticOracle) = switch configuration {
        case 0:  // the defaults: one ML key step, one ML propagation step, clamping
            ([:], ProbabilisticOracle(alpha: alphaDefault, keyIterations: 1, valueIterations: 1, clamp: true))
        case 1:  // priors centred on the initial keys/values (textbook), β > 0 in the magnitude prior
            (["alpha": .float(0.4), "beta": .float(0.3), "key_adaptation_iterations": .int(3),
              "key_prior_precision": .float(0.7), "value_propagation_iterations": .int(2),
              "value_prior_precision": .float(0.5), "clamp_fixed": .bool(false)],
             ProbabilisticOracle(alpha: 0.4, beta: 0.3, keyIterations: 3, keyPrior: 0.7, valueIterations: 2,
                                 valuePrior: 0.5))
        case 2:  // the same with the reference layer's drifting prior centre
            (["alpha": .float(0.4), "beta": .float(0.3), "key_adaptation_iterations": .int(3),
              "key_prior_precision": .float(0.7), "value_propagation_iterations": .int(2),
              "value_prior_precision": .float(0.5), "clamp_fixed": .bool(false), "prior_mode": .string("reference")],
             ProbabilisticOracle(alpha: 0.4, beta: 0.3, keyIterations: 3, keyPrior: 0.7, valueIterations: 2,
                                 valuePrior: 0.5, textbook: false))
        case 3:  // RBF weights (no magnitude priors)
            (["magnitude_priors": .bool(false), "alpha": .int(1), "key_adaptation_iterations": .int(2),
              "value_propagation_iterations": .int(1)],
             ProbabilisticOracle(alpha: 1, magnitudePriors: false, keyIterations: 2, valueIterations: 1,
                                 clamp: true))
        default:  // fewer units than tokens
            (["key_adaptation_iterations": .int(2), "value_propagation_iterations": .int(3)],
             ProbabilisticOracle(alpha: alphaDefault, keyIterations: 2, valueIterations: 3, clamp: true))
        }
        let output = try attend(p, options)
        let expected = oracle.run(p)
        let check = withinTolerance(output.tokenValues, expected.tokens)
        #expect(check.ok, "token values: max error \(check.error) > \(check.bound) (seed \(seed))")
        let keys = withinTolerance(output.adaptedKeys ?? [], expected.keys.flatMap { $0 })
        #expect(keys.ok, "adapted keys: max error \(keys.error) > \(keys.bound) (seed \(seed))")
        let values = withinTolerance(output.adaptedValues ?? [], expected.values.flatMap { $0 })
        #expect(values.ok, "adapted values: max error \(values.error) > \(values.bound) (seed \(seed))")
    }

    @Test func withoutFixedValuesSoftmaxSettingsEqualTheSoftmaxVariant() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var generator = SeededGenerator(seed: seed)
        let p = problem(tokens: 33, units: 21, channels: 16, fixed: false, using: &generator)
        let softmaxSettings: [String: PluginOptionValue] = [
            "alpha": .float(0), "beta": .float(0), "magnitude_priors": .bool(true),
            "key_adaptation_iterations": .int(0), "value_propagation_iterations": .int(0),
        ]
        let probabilistic = try attend(p, softmaxSettings).tokenValues
        let softmax = try attend(p, [:], variant: "softmax").tokenValues
        #expect(zip(probabilistic, softmax).map { abs($0 - $1) }.max()! <= 2e-5, "seed \(seed)")
    }

    @Test func keysAlreadyAdaptedAreNotAdaptedAgain() throws {
        var generator = SeededGenerator(seed: UInt64.random(in: 0...UInt64.max))
        var p = problem(tokens: 24, units: 24, fixed: false, using: &generator)
        let options: [String: PluginOptionValue] = ["key_adaptation_iterations": .int(2)]
        let first = try attend(p, options)
        let adapted = try #require(first.adaptedKeys)
        #expect(adapted != p.keys)
        p.keys = adapted
        let cached = try attend(p, options, keysAlreadyAdapted: true)
        #expect(zip(cached.tokenValues, first.tokenValues).map { abs($0 - $1) }.max()! <= 1e-6)
        #expect(cached.adaptedKeys == adapted)
        // Without the flag the keys would be adapted a second time, which changes the answer.
        let again = try attend(p, options)
        #expect(zip(again.tokenValues, first.tokenValues).map { abs($0 - $1) }.max()! > 1e-6)
    }

    @Test func badOptionValuesAreClearErrors() throws {
        var generator = SeededGenerator(seed: 7)
        let p = problem(tokens: 6, units: 6, fixed: false, using: &generator)
        for (options, fragment) in [
            (["prior_mode": PluginOptionValue.string("bayes")], "option 'prior_mode' must be 'textbook' or 'reference'"),
            (["alpha": .float(-1)], "option 'alpha' must be a finite number >= 0"),
            (["key_adaptation_iterations": .int(-2)], "option 'key_adaptation_iterations' must be >= 0"),
            (["value_prior_precision": .float(-0.5)], "option 'value_prior_precision' must be a finite number >= 0"),
        ] {
            do {
                _ = try attend(p, options)
                Issue.record("expected an error for \(options)")
            } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
    }
}

/// ABI 2: the weights the probabilistic variant gives when asked, and when it must refuse to give them.
@Suite struct ProbabilisticWeightsTests {
    private func call(_ p: Problem, _ options: [String: PluginOptionValue]) throws -> AttentionOutput {
        let variant = try builtPlugins.variant(named: "probabilistic")
        #expect(variant.abiVersion == PluginRegistry.hostABIVersion)
        let input = AttentionInput(tokens: p.tokens, units: p.units, channels: p.channels,
                                   valueChannels: p.valueChannels, queries: p.queries, keys: p.keys,
                                   values: p.values, fixed: p.fixed, wantsWeights: true)
        return try variant.attend(input, options: try variant.resolveOptions(options))
    }

    @Test(arguments: [true, false]) func weightsAreTheOraclesAfterKeyAdaptation(magnitudePriors: Bool) throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var generator = SeededGenerator(seed: seed)
        let p = problem(tokens: 30, units: 17, fixed: true, using: &generator)
        let options: [String: PluginOptionValue] = [
            "magnitude_priors": .bool(magnitudePriors), "alpha": .float(0.6), "key_adaptation_iterations": .int(2),
            "key_prior_precision": .float(0.5), "value_propagation_iterations": .int(1), "clamp_fixed": .bool(false)]
        let output = try call(p, options)
        let weights = try #require(output.weights, "seed \(seed)")
        let oracle = ProbabilisticOracle(alpha: 0.6, magnitudePriors: magnitudePriors, keyIterations: 2, keyPrior: 0.5,
                                         valueIterations: 1)
        let expected = oracle.run(p)
        // W of the adapted keys, from the oracle's own weight function.
        let w = oracle.weights(p, keys: expected.keys, values: expected.values)
        let check = withinTolerance(weights, w.flatMap { $0 })
        #expect(check.ok, "weights: max error \(check.error) > \(check.bound) (seed \(seed))")
        // The contract: the output is the two-hop propagation through these weights.
        var twoHop = [Double](repeating: 0, count: p.tokens * p.valueChannels)
        for j in 0..<p.units {
            var total = 0.0
            var sums = [Double](repeating: 0, count: p.valueChannels)
            for i in 0..<p.tokens {
                total += w[i][j] * p.weight(i)
                for c in 0..<p.valueChannels { sums[c] += w[i][j] * p.weight(i) * p.fixedValue(i, c) }
            }
            for i in 0..<p.tokens {
                for c in 0..<p.valueChannels { twoHop[i * p.valueChannels + c] += w[i][j] * sums[c] / total }
            }
        }
        let outputCheck = withinTolerance(output.tokenValues, twoHop)
        #expect(outputCheck.ok, "two-hop: max error \(outputCheck.error) > \(outputCheck.bound) (seed \(seed))")
    }

    @Test func noWeightsWhenTheyDoNotDetermineTheOutput() throws {
        var generator = SeededGenerator(seed: 5)
        let p = problem(tokens: 12, units: 12, fixed: true, using: &generator)
        let base: [String: PluginOptionValue] = ["clamp_fixed": .bool(false)]
        #expect(try call(p, base).weights != nil)
        // W depends on the values (β > 0 with magnitude priors), a value prior, clamping, or no propagation step.
        for change in [["beta": PluginOptionValue.float(0.5)], ["value_prior_precision": .float(1)],
                       ["clamp_fixed": .bool(true)], ["value_propagation_iterations": .int(0)]] {
            let options = base.merging(change) { $1 }
            #expect(try call(p, options).weights == nil, "\(change)")
        }
        // β > 0 without magnitude priors leaves W independent of the values.
        #expect(try call(p, ["beta": .float(0.5), "magnitude_priors": .bool(false), "clamp_fixed": .bool(false)])
                    .weights != nil)
    }

    @Test func variantsWithoutTheTwoHopFormGiveNoWeights() throws {
        var generator = SeededGenerator(seed: 6)
        let p = problem(tokens: 16, units: 16, fixed: true, using: &generator)
        for name in ["softmax", "uniform"] {
            let variant = try builtPlugins.variant(named: name)
            let input = AttentionInput(tokens: 16, units: 16, channels: p.channels, valueChannels: p.valueChannels,
                                       queries: p.queries, keys: p.keys, values: p.values, fixed: p.fixed,
                                       gridRows: 4, gridCols: 4, wantsWeights: true)
            #expect(try variant.attend(input, options: try variant.resolveOptions([:])).weights == nil, "\(name)")
        }
    }
}
