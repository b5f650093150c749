import Foundation
import ProbattnCore
import ProbattnKernelBench
import Testing

/// `probattn bench kernel` in short mode: the code path runs and the JSON has exactly the documented keys.
/// (Timing is not asserted: performance is measured by the benchmark command, not by tests.)
@Suite struct KernelBenchmarkTests {
    @Test func shortRunProducesTheDocumentedJSON() throws {
        var settings = KernelBenchmarkSettings(sizes: [(H: 256, M: 256), (H: 200, M: 130)])
        settings.threads = 2
        settings.repeats = 2
        settings.timeBudgetSeconds = 2
        var reported = 0
        let results = try KernelBenchmark.run(settings) { _ in reported += 1 }
        #expect(reported == 2)
        #expect(results.map(\.H) == [256, 200] && results.map(\.M) == [256, 130])
        for r in results {
            #expect(r.msMedian > 0 && r.msP90 >= r.msMedian)
            #expect(r.gflops > 0 && r.sgemmPeakGflops > 0)
            #expect(abs(r.peakFraction - r.gflops / r.sgemmPeakGflops) < 1e-9)
            #expect(r.C == 64 && r.Cv == 8 && r.ka == 3 && r.vbp == 3 && r.threads == 2)
        }
        let objects = try #require(JSONSerialization.jsonObject(with: KernelBenchmark.json(results)) as? [[String: Any]])
        #expect(objects.count == 2)
        let expectedKeys: Set<String> = ["H", "M", "C", "Cv", "ka", "vbp", "threads", "ms_median", "ms_p90", "gflops",
                                         "sgemm_peak_gflops", "peak_fraction", "peak_rss_mb"]
        for object in objects { #expect(Set(object.keys) == expectedKeys) }
    }

    @Test("the FLOP count follows the issue's formula")
    func flopFormula() {
        // U = 7: 7·2·H·M·C + 3·2·H·M·C + 3·(2·H·M·Cv + 2·H·M) + 2·H·M·Cv with H = M = 10, C = 4, Cv = 2.
        let weightUpdates: Double = 7 * 800
        let keyAdaptation: Double = 3 * 800
        let valuePropagation: Double = 3 * (400 + 200)
        let expected: Double = weightUpdates + keyAdaptation + valuePropagation + 400
        #expect(KernelBenchmark.flops(H: 10, M: 10, C: 4, Cv: 2, ka: 3, vbp: 3) == expected)
        #expect(KernelBenchmark.flops(H: 10, M: 10, C: 4, Cv: 2, ka: 3, vbp: 3, initialValues: true)
                == expected + 7 * 400)
    }

    @Test func benchmarkInputsFixTheRequestedFraction() throws {
        var settings = KernelBenchmarkSettings(sizes: [])
        settings.fixedFraction = 0.01
        let inputs = try KernelBenchmark.inputs(H: 1000, M: 500, settings: settings)
        let fixed = try #require(inputs.fixed)
        let count = (0..<1000).filter { fixed[$0, settings.Cv] == 1 }.count
        #expect(count == 10)
        #expect(inputs.keys.shape == [500, 64])
    }
}
