import Foundation
import ProbattnEvaluation
import ProbattnImaging
@testable import ProbattnSegmentation
import ProbattnStages
import Testing

/// Counts the chunks running at once and keeps the largest count seen (a lock-guarded high-water mark).
final class ConcurrencyGauge: @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private(set) var highWater = 0
    private var ran: [Int] = []

    func enter(_ chunk: Int) {
        lock.withLock {
            running += 1
            highWater = max(highWater, running)
            ran.append(chunk)
        }
    }

    func leave() { lock.withLock { running -= 1 } }

    var chunksRun: [Int] { lock.withLock { ran.sorted() } }
    var peak: Int { lock.withLock { highWater } }
}

/// Real work for a chunk (about a millisecond of arithmetic), so that the workers' chunks overlap in time.
func chunkWork(_ chunk: Int) -> Double {
    var sum = 0.0
    for i in 0..<50_000 { sum += sin(Double(i + chunk) * 1e-3) }
    return sum
}

@Suite struct ComputeBudgetTests {
    @Test("a budget of k threads never runs more than k chunks at once and runs every chunk once",
          arguments: [1, 3, 8])
    func neverMoreWorkersThanTheBudget(k: Int) {
        let gauge = ConcurrencyGauge()
        let chunks = 48
        let sums = ComputeBudget(threads: k).mapChunks(count: chunks) { chunk -> Double in
            gauge.enter(chunk)
            defer { gauge.leave() }
            return chunkWork(chunk)
        }
        #expect(gauge.peak <= k, "budget \(k): \(gauge.peak) chunks ran at once")
        #expect(gauge.peak >= 1)
        #expect(gauge.chunksRun == Array(0..<chunks))
        // The values come back in chunk order.
        #expect(sums == (0..<chunks).map(chunkWork))
    }

    @Test func fewerChunksThanThreadsUseOneWorkerPerChunk() {
        #expect(ComputeBudget(threads: 8).workers(forChunks: 3) == 3)
        #expect(ComputeBudget(threads: 2).workers(forChunks: 3) == 2)
        #expect(ComputeBudget(threads: 0).threads == 1)
        #expect(ComputeBudget.range(ofChunk: 2, count: 3, total: 10) == 6..<10)
        var order: [Int] = []
        ComputeBudget.single.forEachChunk(count: 4) { order.append($0) }
        #expect(order == [0, 1, 2, 3])
    }

    @Test func thePoolHandsOutAtMostItsCores() {
        let pool = CorePool(cores: 3, maximumPerCall: 2)
        let a = pool.tryTake(), b = pool.tryTake()
        #expect(a?.threads == 2)
        #expect(b?.threads == 1)
        #expect(pool.tryTake() == nil)
        #expect(pool.freeCores == 0)
        pool.give(a!)
        // With b still holding its core, a new call takes its fair share (3 cores / 2 calls), although 2 are free.
        #expect(pool.withBudget { $0.threads } == 1)
        pool.give(b!)
        #expect(pool.freeCores == 3)
        #expect(pool.withBudget { $0.threads } == 2)
        // An idle pool gives one call every core it allows.
        #expect(CorePool(cores: 4).withBudget { $0.threads } == 4)
    }

    @Test func aCallSharesTheCoresWithTheRequestsInProgress() {
        let pool = CorePool(cores: 4)
        // One request in progress: its call gets every core.
        #expect(pool.withRequest { pool.withBudget { $0.threads } } == 4)
        // Two requests in progress, the other one between its stage calls (holding no core): a call still takes
        // only its half.
        let share = pool.withRequest { pool.withRequest { pool.withBudget { $0.threads } } }
        #expect(share == 2)
        // Five requests on four cores: at least one each.
        let least = pool.withRequest { pool.withRequest { pool.withRequest { pool.withRequest {
            pool.withRequest { pool.withBudget { $0.threads } } } } } }
        #expect(least == 1)
        // The requests ended: the pool is idle again.
        #expect(pool.withBudget { $0.threads } == 4)
    }

    @Test("concurrent calls on a pool of k cores never run more than k threads in all", arguments: [1, 3, 8])
    func concurrentCallsShareThePool(k: Int) {
        let pool = CorePool(cores: k)
        let gauge = ConcurrencyGauge()
        // Twelve "clicks" at once, each running its chunks within the budget it took from the pool.
        DispatchQueue.concurrentPerform(iterations: 12) { call in
            pool.withBudget { budget in
                budget.forEachChunk(count: 6) { chunk in
                    gauge.enter(call * 6 + chunk)
                    defer { gauge.leave() }
                    _ = chunkWork(chunk)
                }
            }
        }
        #expect(gauge.peak <= k, "\(gauge.peak) chunks ran at once on \(k) cores")
        #expect(gauge.chunksRun.count == 72)
        #expect(pool.freeCores == k)
    }
}

/// The default pipeline's propagator gives byte-identical masks and probabilities for every budget.
@Suite struct PropagatorBudgetTests {
    static let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/datasets").standardized.path
    static var grabCutPresent: Bool { FileManager.default.fileExists(atPath: datasets + "/GrabCut/data_GT") }

    /// Runs the real BeliefPropagator on `image` with clicks from the standard simulator, with budgets 1, 2 and 4,
    /// and compares the token probabilities, the upsampling's band and the masks byte for byte.
    func expectSameOutputForEveryBudget(image: RGBImage, truth: GroundTruthMask) throws {
        let pipeline = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        let propagator = try #require(pipeline.propagator as? BeliefPropagator)
        var prepared: [PreparedImage] = []
        for budget in [1, 2, 4] {
            let context = StageContext.standalone.with(budget: ComputeBudget(threads: budget))
            prepared.append(try pipeline.prepare(image, context: context))
        }
        #expect(prepared[1].adapted.keys == prepared[0].adapted.keys)
        #expect(prepared[2].adapted.keys == prepared[0].adapted.keys)
        let encoded = prepared[0].encoded, adapted = prepared[0].adapted
        // The image is large enough for every split: several row chunks, two token chunks, a split graph cut.
        #expect(encoded.tokenCount >= MixturePropagation.parallelTokens)
        #expect(image.width * image.height >= 2 * BeliefPropagator.pixelsPerChunk)

        var simulator = ClickSimulator(truth: truth)
        var prediction = [Bool](repeating: false, count: truth.width * truth.height)
        for _ in 0..<3 {
            _ = simulator.nextClick(prediction: prediction)
            let clicks = simulator.clicks.map(\.click)
            var masks: [[UInt8]] = [], probabilities: [[Float]] = [], bands: [[Float]] = []
            for budget in [1, 2, 4] {
                let b = ComputeBudget(threads: budget)
                let context = StageContext.standalone.with(budget: b)
                masks.append(try propagator.propagate(encoded: encoded, adapted: adapted, clicks: clicks,
                                                      classCount: 2, context: context).mask.labels)
                let clicked = propagator.clickedTokens(encoded: encoded, clicks: clicks, classCount: 2)
                let p = try propagator.propagateValues(encoded: encoded, adapted: adapted, clicked: clicked,
                                                       classCount: 2, budget: b)
                probabilities.append(p)
                let upsampled = propagator.pixelLabels(encoded: encoded, probabilities: p, classCount: 2,
                                                       collectingBand: true, budget: b)
                bands.append(upsampled.bandProbabilities + upsampled.band.map(Float.init))
            }
            for i in 1..<3 {
                #expect(masks[i] == masks[0], "mask, budget \([1, 2, 4][i]), \(clicks.count) clicks")
                #expect(probabilities[i].withUnsafeBytes { Array($0) } == probabilities[0].withUnsafeBytes { Array($0) },
                        "token probabilities, budget \([1, 2, 4][i])")
                #expect(bands[i].withUnsafeBytes { Array($0) } == bands[0].withUnsafeBytes { Array($0) },
                        "band, budget \([1, 2, 4][i])")
            }
            prediction = masks[0].map { $0 == 0 }
        }
    }

    @Test(.enabled(if: grabCutPresent)) func aGrabCutImageGivesTheSameMasksForEveryBudget() throws {
        let instance = try #require(try BenchmarkDataset.instances(.grabcut, root: Self.datasets + "/GrabCut")
            .first { $0.name == "banana1" })
        let (image, truth) = try instance.load(maxPixels: nil)
        try expectSameOutputForEveryBudget(image: image, truth: truth)
    }

    @Test func aLargeSyntheticImageGivesTheSameMasksForEveryBudget() throws {
        let scene = DiscScene(width: 640, height: 480, seed: 5)
        let truth = try GroundTruthMask(width: 640, height: 480, values: scene.inside.map { $0 ? 1 : 0 })
        try expectSameOutputForEveryBudget(image: scene.image, truth: truth)
    }
}
