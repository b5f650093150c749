// Every built variant, loaded through dlopen, against the double-precision oracles on fresh random inputs, plus the
// equivalences and properties each variant promises.

import Foundation
import ProbattnPluginHost
import Testing
import Synchronization

/// A fresh random problem; `grid` makes units = tokens on a rows × cols grid.
private func randomProblem(tokens: Int = 30, units: Int? = nil, channels: Int = 8, valueChannels: Int = 3,
                           grid: (Int, Int)? = nil, fixed: Bool = false,
                           using generator: inout SeededGenerator) -> Problem {
    let h = grid.map { $0.0 * $0.1 } ?? tokens
    let m = grid != nil ? h : (units ?? h)
    var problem = Problem(tokens: h, units: m, channels: channels, valueChannels: valueChannels,
                          queries: randomFloats(h * channels, using: &generator),
                          keys: randomFloats(m * channels, using: &generator),
                          values: randomFloats(m * valueChannels, scale: 2, using: &generator))
    if fixed { problem.fixed = randomFixed(tokens: h, valueChannels: valueChannels, using: &generator) }
    if let grid { (problem.gridRows, problem.gridCols) = grid }
    return problem
}

private func input(_ p: Problem) -> AttentionInput {
    AttentionInput(tokens: p.tokens, units: p.units, channels: p.channels, valueChannels: p.valueChannels,
                   queries: p.queries, keys: p.keys, values: p.values, fixed: p.fixed,
                   gridRows: p.gridRows, gridCols: p.gridCols)
}

/// Runs `variant` through the loaded plugin.
private func run(_ variant: String, _ p: Problem, _ options: [String: PluginOptionValue] = [:]) throws -> [Float] {
    let loaded = try builtPlugins.variant(named: variant)
    return try loaded.attend(input(p), options: try loaded.resolveOptions(options)).tokenValues
}

private func expectClose(_ actual: [Float], _ expected: [Double], _ what: String, seed: UInt64,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    let check = withinTolerance(actual, expected)
    #expect(check.ok, "\(what): max error \(check.error) > \(check.bound) (seed \(seed))", sourceLocation: sourceLocation)
}

private func freshSeed() -> UInt64 { UInt64.random(in: 0...UInt64.max) }

@Suite struct SoftmaxVariantTests {
    @Test func matchesTheOracleWithAndWithoutFixedValues() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        // Fewer units than tokens, default scale 1/√C, more value channels than the narrow (sgemv) product takes.
        let plain = randomProblem(tokens: 37, units: 23, channels: 16, valueChannels: 6, using: &generator)
        expectClose(try run("softmax", plain), Oracle.softmaxAttention(plain, scale: 1 / 4, iterations: 0),
                    "softmax M≠H", seed: seed)
        // Label propagation with fixed tokens (hard and soft weights, garbage in free tokens' channels).
        let fixed = randomProblem(tokens: 40, channels: 8, fixed: true, using: &generator)
        let wide = randomProblem(tokens: 31, channels: 8, valueChannels: 7, fixed: true, using: &generator)
        expectClose(try run("softmax", wide, ["iterations": .int(3)]),
                    Oracle.softmaxAttention(wide, scale: 1 / 8.0.squareRoot(), iterations: 3),
                    "softmax label propagation, 7 value channels", seed: seed)
        expectClose(try run("softmax", fixed, ["iterations": .int(6), "scale": .float(0.7)]),
                    Oracle.softmaxAttention(fixed, scale: 0.7, iterations: 6), "softmax label propagation",
                    seed: seed)
        expectClose(try run("softmax", fixed, ["iterations": .int(0)]),
                    Oracle.softmaxAttention(fixed, scale: 1 / 8.0.squareRoot(), iterations: 0),
                    "softmax clamp only", seed: seed)
    }

    @Test func fixedTokensWithFullWeightKeepTheirValues() throws {
        var generator = SeededGenerator(seed: freshSeed())
        let p = randomProblem(tokens: 24, fixed: true, using: &generator)
        let out = try run("softmax", p)
        for i in 0..<p.tokens where p.weight(i) == 1 {
            for c in 0..<p.valueChannels { #expect(Double(out[i * p.valueChannels + c]) == p.fixedValue(i, c)) }
        }
    }

    @Test func tooManyDenseWeightsIsAnErrorNotACrash() throws {
        // 16 400 × 16 400 weights exceed the 2^28 limit; the inputs themselves are small (C = Cv = 1).
        let n = 16_400
        let p = Problem(tokens: n, units: n, channels: 1, valueChannels: 1, queries: [Float](repeating: 0.1, count: n),
                        keys: [Float](repeating: 0.2, count: n), values: [Float](repeating: 1, count: n))
        for variant in ["softmax", "sigmoid"] {
            do {
                _ = try run(variant, p)
                Issue.record("\(variant): expected an error")
            } catch {
                #expect("\(error)".contains("too many dense attention weights"), "\(error)")
            }
        }
    }

    @Test func propagationNeedsUnitsEqualTokens() throws {
        var generator = SeededGenerator(seed: freshSeed())
        var p = randomProblem(tokens: 12, units: 5, using: &generator)
        p.fixed = randomFixed(tokens: 12, valueChannels: p.valueChannels, using: &generator)
        p.fixed?[p.valueChannels] = 1  // token 0 fixed
        #expect(throws: PluginHostError.self) { try run("softmax", p) }
        #expect(throws: Never.self) { try run("softmax", p, ["iterations": .int(0)]) }
    }
}

@Suite struct SigmoidVariantTests {
    @Test func matchesTheOracle() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let plain = randomProblem(tokens: 33, units: 21, channels: 16, using: &generator)
        expectClose(try run("sigmoid", plain), Oracle.sigmoidAttention(plain, scale: 0.25, bias: -log(21.0),
                                                                      iterations: 0), "sigmoid default bias",
                    seed: seed)
        expectClose(try run("sigmoid", plain, ["bias": .float(0.5), "length_bias": .bool(false)]),
                    Oracle.sigmoidAttention(plain, scale: 0.25, bias: 0.5, iterations: 0), "sigmoid bias 0.5",
                    seed: seed)
        let fixed = randomProblem(tokens: 30, fixed: true, using: &generator)
        expectClose(try run("sigmoid", fixed, ["iterations": .int(2)]),
                    Oracle.sigmoidAttention(fixed, scale: 1 / 8.0.squareRoot(), bias: -log(30.0), iterations: 2),
                    "sigmoid label propagation", seed: seed)
    }

    @Test func zeroLogitsGiveEveryWeightOneOverNPlusOne() throws {
        // Zero queries: every logit is 0, so every weight is σ(−ln n) = 1/(n+1) (spec §6 item 22).
        let n = 9
        let p = Problem(tokens: 2, units: n, channels: 4, valueChannels: 1, queries: [Float](repeating: 0, count: 8),
                        keys: (0..<(n * 4)).map { Float($0 % 7) - 3 }, values: [Float](repeating: 1, count: n))
        let out = try run("sigmoid", p)
        for value in out { #expect(abs(Double(value) - Double(n) / Double(n + 1)) < 1e-6) }
    }

    @Test func addingAConstantToOneRowsLogitsChangesItsOutputUnlikeSoftmax() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let base = randomProblem(tokens: 10, units: 10, channels: 6, using: &generator)
        // One extra channel: keys carry 1 there, queries 0, except the shifted row, so row 3's logits all gain +1.5.
        func withExtraChannel(shift: Float) -> Problem {
            var p = base
            p.channels = 7
            p.queries = []
            p.keys = []
            for i in 0..<10 {
                let row = i * 6
                p.queries += base.queries[row..<(row + 6)]
                p.queries.append(i == 3 ? shift : 0)
                p.keys += base.keys[row..<(row + 6)]
                p.keys.append(1)
            }
            return p
        }
        let options: [String: PluginOptionValue] = ["scale": .float(1)]
        let sigmoidBefore = try run("sigmoid", withExtraChannel(shift: 0), options)
        let sigmoidAfter = try run("sigmoid", withExtraChannel(shift: 1.5), options)
        let softmaxBefore = try run("softmax", withExtraChannel(shift: 0), options)
        let softmaxAfter = try run("softmax", withExtraChannel(shift: 1.5), options)
        let row3 = 9..<12
        #expect(zip(sigmoidBefore[row3], sigmoidAfter[row3]).map { abs($0 - $1) }.max()! > 1e-3,
                "sigmoid ignored a row shift (seed \(seed))")
        #expect(zip(softmaxBefore[row3], softmaxAfter[row3]).map { abs($0 - $1) }.max()! < 1e-5)
        // Other rows are untouched in both.
        #expect(Array(sigmoidBefore[0..<9]) == Array(sigmoidAfter[0..<9]))
        #expect(Array(sigmoidBefore[12...]) == Array(sigmoidAfter[12...]))
    }

    @Test func aVeryNegativeBiasGivesZero() throws {
        var generator = SeededGenerator(seed: freshSeed())
        let p = randomProblem(tokens: 12, units: 9, using: &generator)
        for bias in [-1e30, -Double.infinity] {
            let out = try run("sigmoid", p, ["bias": .float(bias)])
            #expect(out.allSatisfy { $0 == 0 }, "bias \(bias)")
        }
        // And the output shrinks monotonically towards 0 as b decreases.
        let magnitudes = try [-2.0, -6.0, -12.0].map { bias in
            try run("sigmoid", p, ["bias": .float(bias)]).map { abs($0) }.max()!
        }
        #expect(magnitudes[0] > magnitudes[1] && magnitudes[1] > magnitudes[2])
    }
}

@Suite struct NeighborhoodVariantTests {
    @Test func matchesTheOracle() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let p = randomProblem(channels: 8, grid: (7, 9), using: &generator)
        for (kernel, dilation) in [(3, 1), (5, 1), (3, 2), (5, 2), (1, 1)] {
            expectClose(try run("neighborhood", p, ["kernel_size": .int(Int64(kernel)),
                                                    "dilation": .int(Int64(dilation))]),
                        Oracle.neighborhoodAttention(p, kernel: kernel, dilation: dilation, scale: 1 / 8.0.squareRoot(),
                                                     iterations: 0),
                        "neighborhood k=\(kernel) d=\(dilation)", seed: seed)
        }
        let fixed = randomProblem(channels: 8, grid: (6, 5), fixed: true, using: &generator)
        expectClose(try run("neighborhood", fixed, ["kernel_size": .int(3), "iterations": .int(4)]),
                    Oracle.neighborhoodAttention(fixed, kernel: 3, dilation: 1, scale: 1 / 8.0.squareRoot(),
                                                 iterations: 4), "neighborhood label propagation", seed: seed)
    }

    @Test func aWindowCoveringTheGridEqualsSoftmax() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let p = randomProblem(channels: 8, grid: (5, 6), fixed: true, using: &generator)
        let neighborhood = try run("neighborhood", p, ["kernel_size": .int(11)])
        let softmax = try run("softmax", p)
        #expect(zip(neighborhood, softmax).map { abs($0 - $1) }.max()! < 2e-5, "seed \(seed)")
    }

    @Test func aWindowOfOneReturnsEachTokensOwnValue() throws {
        var generator = SeededGenerator(seed: freshSeed())
        let p = randomProblem(channels: 4, grid: (4, 5), using: &generator)
        #expect(try run("neighborhood", p, ["kernel_size": .int(1)]) == p.values)
    }

    @Test func anEvenKernelIsRefused() throws {
        var generator = SeededGenerator(seed: freshSeed())
        let p = randomProblem(channels: 4, grid: (4, 5), using: &generator)
        #expect(throws: PluginHostError.self) { try run("neighborhood", p, ["kernel_size": .int(4)]) }
    }
}

@Suite struct ContextPoolVariantTests {
    @Test func matchesTheOracleWithDerivedAndExplicitSupport() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let p = randomProblem(channels: 8, grid: (6, 7), using: &generator)
        let scale = 1 / 8.0.squareRoot()
        expectClose(try run("context_pool", p),
                    Oracle.contextPoolAttention(p, support: 0, maxSupport: 1.5, radius: 2, scale: scale,
                                                iterations: 0), "context_pool derived support", seed: seed)
        expectClose(try run("context_pool", p, ["support": .float(0.8), "radius": .int(1)]),
                    Oracle.contextPoolAttention(p, support: 0.8, maxSupport: 1.5, radius: 1, scale: scale,
                                                iterations: 0), "context_pool support 0.8", seed: seed)
        let fixed = randomProblem(channels: 8, grid: (5, 5), fixed: true, using: &generator)
        expectClose(try run("context_pool", fixed, ["max_support": .float(2.5), "iterations": .int(3)]),
                    Oracle.contextPoolAttention(fixed, support: 0, maxSupport: 2.5, radius: 2, scale: scale,
                                                iterations: 3), "context_pool label propagation", seed: seed)
    }

    @Test func supportTendingToZeroEqualsSoftmax() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let p = randomProblem(channels: 8, grid: (5, 6), fixed: true, using: &generator)
        let softmax = try run("softmax", p)
        let pooled = try run("context_pool", p, ["support": .float(1e-3)])
        #expect(zip(pooled, softmax).map { abs($0 - $1) }.max()! < 2e-5, "seed \(seed)")
        // A wide support really pools: the output moves away from softmax.
        let wide = try run("context_pool", p, ["support": .float(2)])
        #expect(zip(wide, softmax).map { abs($0 - $1) }.max()! > 1e-3, "seed \(seed)")
    }

    @Test func derivedSupportIsLargestInFlatRegions() {
        // Keys constant on the left half, noisy on the right: left units get the maximum support.
        var generator = SeededGenerator(seed: freshSeed())
        let (rows, cols, c) = (4, 8, 3)
        var keys = [Float](repeating: 0.5, count: rows * cols * c)
        for r in 0..<rows { for s in 4..<cols { for k in 0..<c { keys[(r * cols + s) * c + k] = .random(in: -2...2, using: &generator) } } }
        let p = Problem(tokens: rows * cols, units: rows * cols, channels: c, valueChannels: 1, queries: keys,
                        keys: keys, values: [Float](repeating: 0, count: rows * cols), gridRows: rows, gridCols: cols)
        let supports = Oracle.contextPoolSupports(p, support: 0, maxSupport: 1.5)
        #expect(supports[0] == 1.5 && supports[rows * cols - 1] < 1.0)
    }
}

@Suite struct UniformCPluginTests {
    @Test func theCPluginLoadsAndRuns() throws {
        let seed = freshSeed()
        var generator = SeededGenerator(seed: seed)
        let uniform = try builtPlugins.variant(named: "uniform")
        #expect(uniform.file == "libprobattn-uniform.so")
        #expect(uniform.options.map(\.name) == ["clamp_fixed"])
        let plain = randomProblem(tokens: 13, units: 7, using: &generator)
        expectClose(try run("uniform", plain), Oracle.uniform(plain, clampFixed: true), "uniform", seed: seed)
        let fixed = randomProblem(tokens: 20, fixed: true, using: &generator)
        expectClose(try run("uniform", fixed), Oracle.uniform(fixed, clampFixed: true), "uniform fixed", seed: seed)
        expectClose(try run("uniform", fixed, ["clamp_fixed": .bool(false)]), Oracle.uniform(fixed, clampFixed: false),
                    "uniform fixed, no clamp", seed: seed)
    }

    @Test func theExampleBuildsOutsideThePackageWithTheDocumentedCommand() throws {
        // docs/PLUGINS.md and uniform.c: `cc -shared -fPIC -I <header folder> uniform.c -o libprobattn-uniform.so`.
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try String(contentsOf: repositoryRoot.appendingPathComponent("Plugins/Uniform/uniform.c"),
                                encoding: .utf8)
        try compileSharedObject(source, named: "libprobattn-uniform.so", in: folder)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.failures.isEmpty, "\(registry.failures)")
        #expect(registry.variantNames == ["uniform"])
    }
}

@Suite struct ConcurrencyTests {
    @Test func variantsMayBeCalledFromSeveralThreadsAtOnce() throws {
        var generator = SeededGenerator(seed: freshSeed())
        let problems = (0..<8).map { _ in randomProblem(channels: 8, grid: (5, 6), fixed: true, using: &generator) }
        for name in ["softmax", "neighborhood", "context_pool", "sigmoid", "uniform", "probabilistic"] {
            let serial = try problems.map { try run(name, $0) }
            let results = ResultBox(count: problems.count)
            DispatchQueue.concurrentPerform(iterations: problems.count) { index in
                results.set(index, try? run(name, problems[index]))
            }
            for index in problems.indices {
                let concurrent = results.get(index) ?? []
                #expect(concurrent.count == serial[index].count, "\(name) #\(index) failed")
                #expect(zip(concurrent, serial[index]).allSatisfy { abs($0 - $1) <= 1e-6 }, "\(name) #\(index)")
            }
        }
    }
}

/// Results written from several threads.
private final class ResultBox: Sendable {
    private let values: Mutex<[[Float]?]>
    init(count: Int) { values = Mutex(Array(repeating: nil, count: count)) }
    func set(_ index: Int, _ value: [Float]?) { values.withLock { $0[index] = value } }
    func get(_ index: Int) -> [Float]? { values.withLock { $0[index] } }
}
