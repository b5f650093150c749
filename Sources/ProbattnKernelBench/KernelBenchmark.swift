import Foundation
import ProbattnCore

/// One row of `probattn bench kernel`'s results; the JSON keys are part of the command's interface.
public struct KernelBenchmarkResult: Codable, Equatable, Sendable {
    public var H: Int
    public var M: Int
    public var C: Int
    public var Cv: Int
    public var ka: Int
    public var vbp: Int
    public var threads: Int
    public var msMedian: Double
    public var msP90: Double
    /// Useful work per second by the FLOP formula.
    public var gflops: Double
    /// The rate OpenBLAS reaches in the same run on the same-shape (H×C)·(C×M) sgemm with the same threads.
    public var sgemmPeakGflops: Double
    /// gflops / sgemmPeakGflops.
    public var peakFraction: Double
    /// VmHWM of the process while this size ran (reset before it where the kernel allows), in MB.
    public var peakRssMb: Double
    /// How many timed runs the statistics come from (not part of the JSON).
    public var runs: Int = 0

    enum CodingKeys: String, CodingKey {
        case H, M, C, Cv, ka, vbp, threads
        case msMedian = "ms_median", msP90 = "ms_p90", gflops
        case sgemmPeakGflops = "sgemm_peak_gflops", peakFraction = "peak_fraction", peakRssMb = "peak_rss_mb"
    }
}

/// Settings of one benchmark run. The attention configuration is fixed so that runs compare: uniform precisions,
/// magnitude priors, α = 1/√C, β = 0.5, key and value prior precisions given, `fixedFraction` of the tokens fixed,
/// no v_init.
public struct KernelBenchmarkSettings: Sendable {
    public var sizes: [(H: Int, M: Int)]
    public var C = 64
    public var Cv = 8
    public var keyIterations = 3
    public var valueIterations = 3
    public var threads = KernelBenchmark.processorCount
    public var fixedFraction = 0.01
    /// Timed runs per size (at most); fewer when `timeBudgetSeconds` runs out (at least one).
    public var repeats = 7
    public var timeBudgetSeconds = 20.0
    public var kernel = AttentionKernel.automatic
    public var seed: UInt64 = 1

    public init(sizes: [(H: Int, M: Int)]) { self.sizes = sizes }
}

/// The `probattn bench kernel` measurement: times the operator and the same-shape sgemm, reads peak RSS.
public enum KernelBenchmark {
    public static var processorCount: Int { UsableCores.count() }

    /// FLOPs of one (n, g) slice by the formula: U = 1 + KA + VBP weight updates;
    /// F = U·2HMC (+ U·2HMCv with v_init) + KA·2HMC + VBP·(2HMCv + 2HM) + 2HMCv.
    public static func flops(H: Int, M: Int, C: Int, Cv: Int, ka: Int, vbp: Int, initialValues: Bool = false) -> Double {
        let hm = Double(H) * Double(M)
        let u = Double(1 + ka + vbp)
        var f = u * 2 * hm * Double(C)
        if initialValues { f += u * 2 * hm * Double(Cv) }
        f += Double(ka) * 2 * hm * Double(C)
        f += Double(vbp) * (2 * hm * Double(Cv) + 2 * hm)
        f += 2 * hm * Double(Cv)
        return f
    }

    /// The benchmark's inputs for one size (seeded).
    public static func inputs(H: Int, M: Int, settings: KernelBenchmarkSettings) throws -> TokenMajorInputs {
        var generator = SplitMix64(seed: settings.seed &+ UInt64(H) &* 31 &+ UInt64(M))
        let C = settings.C, Cv = settings.Cv
        let queries = try Tensor(shape: [H, C], storage: generator.normals(H * C))
        let keys = try Tensor(shape: [M, C], storage: generator.normals(M * C))
        let values = try Tensor(shape: [M, Cv], storage: generator.normals(M * Cv))
        var fixed = Tensor(shape: [H, Cv + 1])
        let fixedCount = max(1, Int((Double(H) * settings.fixedFraction).rounded()))
        let step = max(1, H / fixedCount)
        for k in 0..<fixedCount {
            let i = (k * step + step / 2) % H
            let label = k % Cv
            fixed.storage[i * (Cv + 1) + label] = 1
            fixed.storage[i * (Cv + 1) + Cv] = 1
        }
        return TokenMajorInputs(
            queries: queries, keys: keys, values: values, alpha: .uniform(1 / Float(C).squareRoot()),
            beta: .uniform(0.5), fixed: fixed,
            keyPriorPrecision: Tensor(shape: [M, C], repeating: 1),
            valuePriorPrecision: Tensor(shape: [M, Cv], repeating: 1))
    }

    /// Runs every size; `progress` receives each result as it completes.
    public static func run(_ settings: KernelBenchmarkSettings,
                           progress: (KernelBenchmarkResult) -> Void = { _ in }) throws -> [KernelBenchmarkResult] {
        guard settings.threads >= 1 else { throw ProbattnCoreError.invalidArgument("threads must be ≥ 1") }
        guard settings.C >= 1, settings.Cv >= 1, settings.keyIterations >= 0, settings.valueIterations >= 0,
              settings.repeats >= 1, settings.fixedFraction >= 0, settings.fixedFraction <= 1 else {
            throw ProbattnCoreError.invalidArgument(
                "need C ≥ 1, Cv ≥ 1, ka ≥ 0, vbp ≥ 0, repeats ≥ 1 and 0 ≤ fixed ≤ 1")
        }
        var results: [KernelBenchmarkResult] = []
        for (H, M) in settings.sizes {
            guard H >= 1, M >= 1 else { throw ProbattnCoreError.invalidArgument("sizes must be ≥ 1, got H=\(H) M=\(M)") }
            let result = try runOne(H: H, M: M, settings: settings)
            progress(result)
            results.append(result)
        }
        return results
    }

    static func runOne(H: Int, M: Int, settings: KernelBenchmarkSettings) throws -> KernelBenchmarkResult {
        let inputs = try inputs(H: H, M: M, settings: settings)
        let operatorOptions = ProbabilisticAttentionOptions(
            magnitudePriors: true, keyAdaptation: true, keyAdaptationIterations: settings.keyIterations,
            valuePropagationIterations: settings.valueIterations, kernel: settings.kernel, threads: settings.threads)
        let attention = ProbabilisticAttention(options: operatorOptions)
        defer { BLAS.threadCount = BLAS.initialThreadCount }

        // Peak memory of the operator alone: reset the mark, run once, read it (before any sgemm buffer exists).
        PeakMemory.reset()
        let clock = ContinuousClock()
        let started = clock.now
        var failure: Error?
        func timeOperator() throws -> Double {
            // The plain path's products use OpenBLAS's own threads; the blocked kernel runs its chunks on
            // `threads` threads (its budget) with OpenBLAS single-threaded inside, as the executables set it.
            BLAS.threadCount = settings.kernel == .plain ? settings.threads : 1
            let elapsed = clock.measure {
                do { _ = try attention.attendTokenMajor(inputs) } catch { failure = error }
            }
            if let failure { throw failure }
            return elapsed.seconds
        }
        let warmup = try timeOperator()
        let peakRss = PeakMemory.peakResidentMegabytes()

        // Timed runs, each followed by one same-shape sgemm, so that both see the same machine load. A warm-up that
        // already exhausts the budget counts as the (only) sample.
        let sgemm = SameShapeProduct(H: H, M: M, C: settings.C, threads: settings.threads)
        var samples: [Double] = []
        var sgemmSamples: [Double] = []
        sgemm.run()   // warm-up
        if warmup * Double(settings.repeats) > settings.timeBudgetSeconds {
            samples.append(warmup)
            sgemmSamples.append(clock.measure { sgemm.run() }.seconds)
        }
        while samples.count < settings.repeats
            && (samples.isEmpty || (clock.now - started).seconds < settings.timeBudgetSeconds) {
            samples.append(try timeOperator())
            sgemmSamples.append(clock.measure { sgemm.run() }.seconds)
        }
        let sgemmRate = 2 * Double(H) * Double(M) * Double(settings.C) / Self.median(sgemmSamples) / 1e9

        samples.sort()
        let medianSeconds = Self.median(samples)
        let p90 = samples[min(samples.count - 1, Int((0.9 * Double(samples.count)).rounded(.up)) - 1)]
        let gflops = flops(H: H, M: M, C: settings.C, Cv: settings.Cv, ka: settings.keyIterations,
                           vbp: settings.valueIterations) / medianSeconds / 1e9
        return KernelBenchmarkResult(
            H: H, M: M, C: settings.C, Cv: settings.Cv, ka: settings.keyIterations, vbp: settings.valueIterations,
            threads: settings.threads, msMedian: medianSeconds * 1e3, msP90: p90 * 1e3, gflops: gflops,
            sgemmPeakGflops: sgemmRate, peakFraction: sgemmRate > 0 ? gflops / sgemmRate : 0, peakRssMb: peakRss,
            runs: samples.count)
    }

    /// The median of a non-empty list.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }

    /// GFLOP/s of the (H×C)·(C×M) sgemm with `threads` OpenBLAS threads (median of `runs` runs).
    public static func sameShapeSgemmRate(H: Int, M: Int, C: Int, threads: Int, runs: Int = 5) -> Double {
        let product = SameShapeProduct(H: H, M: M, C: C, threads: threads)
        product.run()
        let clock = ContinuousClock()
        let samples = (0..<max(1, runs)).map { _ in clock.measure { product.run() }.seconds }
        return 2 * Double(H) * Double(M) * Double(C) / median(samples) / 1e9
    }

    /// The results as the `--json` file: a list of objects with the documented keys.
    public static func json(_ results: [KernelBenchmarkResult]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(results)
    }
}

/// The reference product of the benchmark: (H×C)·(C×M) through `cblas_sgemm`. For large H·M it runs in row chunks
/// of at most 16 Mi output elements (the same shape class) so that its output buffer stays small.
final class SameShapeProduct {
    let H: Int, M: Int, C: Int
    /// OpenBLAS threads for the product (set before every run: the operator may reset the process setting).
    let threads: Int
    let chunkRows: Int
    let a: [Float], b: [Float]
    var c: [Float]

    init(H: Int, M: Int, C: Int, threads: Int) {
        self.threads = threads
        self.H = H
        self.M = M
        self.C = C
        chunkRows = max(1, min(H, (16 << 20) / max(1, M)))
        var generator = SplitMix64(seed: 7)
        a = generator.normals(chunkRows * C)
        b = generator.normals(M * C)
        c = [Float](repeating: 0, count: chunkRows * M)
    }

    func run() {
        let (H, M, C, chunkRows) = (self.H, self.M, self.C, self.chunkRows)
        BLAS.threadCount = threads
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    var row = 0
                    while row < H {
                        let rows = min(chunkRows, H - row)
                        BLAS.sgemm(transposeA: false, transposeB: true, m: rows, n: M, k: C, alpha: 1,
                                   a: a.baseAddress!, lda: C, b: b.baseAddress!, ldb: C, beta: 0,
                                   c: c.baseAddress!, ldc: M)
                        row += rows
                    }
                }
            }
        }
    }
}

/// Peak resident memory from /proc/self/status (Linux).
public enum PeakMemory {
    /// Resets the kernel's peak-RSS mark (writes 5 to /proc/self/clear_refs); silently does nothing where that is
    /// not allowed.
    public static func reset() {
        if let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            handle.write(Data("5".utf8))
            try? handle.close()
        }
    }

    /// VmHWM in MB (0 when /proc is unavailable).
    public static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let digits = line.split(separator: " ").compactMap { Double($0) }
            if let kilobytes = digits.first { return kilobytes / 1024 }
        }
        return 0
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }
}
