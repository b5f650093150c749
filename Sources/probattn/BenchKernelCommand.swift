import ArgumentParser
import Foundation
import ProbattnCore
import ProbattnKernelBench

/// `probattn bench kernel`: times the probabilistic attention operator per size (median, p90), converts to GFLOP/s by
/// the formula, compares with the same-shape sgemm rate measured in the same run, and reports peak RSS.
struct BenchKernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Benchmark the attention kernel against the same-shape OpenBLAS sgemm.")

    @Option(name: .customLong("H"), parsing: .upToNextOption, help: "Token counts (one or more).")
    var H: [Int] = [1024, 2048, 4096]

    @Option(name: .customLong("M"), parsing: .upToNextOption,
            help: "Unit counts: one per H, or one for all (default: M = H).")
    var M: [Int] = []

    @Option(name: .customLong("C"), help: "Query/key channels.")
    var C: Int = 64

    @Option(name: .customLong("Cv"), help: "Value channels.")
    var Cv: Int = 8

    @Option(help: "Key-adaptation iterations.")
    var ka: Int = 3

    @Option(help: "Value-propagation iterations.")
    var vbp: Int = 3

    @Option(help: "Threads for the kernel and for the reference sgemm (default: all processors).")
    var threads: Int = KernelBenchmark.processorCount

    @Option(help: "Fraction of tokens fixed.")
    var fixed: Double = 0.01

    @Option(help: "Timed runs per size (at most).")
    var repeats: Int = 7

    @Option(help: "Time budget per size in seconds (at least one run).")
    var budget: Double = 20

    @Option(help: "Implementation: automatic, plain or blocked.")
    var kernel: String = AttentionKernel.automatic.rawValue

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    func validate() throws {
        guard !H.isEmpty, H.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--H needs one or more sizes ≥ 1") }
        guard M.isEmpty || M.count == 1 || M.count == H.count, M.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--M needs one size for all, or one per --H, each ≥ 1")
        }
        guard C >= 1, Cv >= 1 else { throw ValidationError("--C and --Cv must be ≥ 1") }
        guard ka >= 0, vbp >= 0 else { throw ValidationError("--ka and --vbp must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard (0...1).contains(fixed) else { throw ValidationError("--fixed must be in [0, 1]") }
        guard repeats >= 1, budget > 0 else { throw ValidationError("--repeats must be ≥ 1 and --budget > 0") }
        guard AttentionKernel(rawValue: kernel) != nil else {
            throw ValidationError("--kernel must be automatic, plain or blocked")
        }
    }

    func run() throws {
        let units = M.isEmpty ? H : (M.count == 1 ? [Int](repeating: M[0], count: H.count) : M)
        var settings = KernelBenchmarkSettings(sizes: Array(zip(H, units)).map { (H: $0.0, M: $0.1) })
        settings.C = C
        settings.Cv = Cv
        settings.keyIterations = ka
        settings.valueIterations = vbp
        settings.threads = threads
        settings.fixedFraction = fixed
        settings.repeats = repeats
        settings.timeBudgetSeconds = budget
        settings.kernel = AttentionKernel(rawValue: kernel) ?? .automatic
        print("probabilistic attention kernel: C=\(C) Cv=\(Cv) ka=\(ka) vbp=\(vbp) threads=\(threads) "
              + "fixed=\(fixed) kernel=\(kernel)")
        let results = try KernelBenchmark.run(settings) { r in
            print(String(format: "H=%d M=%d: median %.1f ms, p90 %.1f ms, %.1f GFLOP/s, sgemm %.1f GFLOP/s, "
                         + "fraction %.2f, peak RSS %.0f MB (%d runs)",
                         r.H, r.M, r.msMedian, r.msP90, r.gflops, r.sgemmPeakGflops, r.peakFraction, r.peakRssMb,
                         r.runs))
        }
        if let json {
            do {
                try KernelBenchmark.json(results).write(to: URL(fileURLWithPath: json))
            } catch {
                throw ValidationError("cannot write \(json): \(error.localizedDescription)")
            }
        }
    }
}
