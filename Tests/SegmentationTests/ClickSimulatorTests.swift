import ProbattnImaging
@testable import ProbattnSegmentation
import Testing
import ProbattnEvaluation
import ProbattnJSON

/// Builds a ground truth from rows of characters: '#' object, '.' background, '?' ignore.
func truth(_ rows: [String]) -> GroundTruthMask {
    let values: [Int8] = rows.flatMap { row in row.map { c -> Int8 in c == "#" ? 1 : (c == "?" ? -1 : 0) } }
    return try! GroundTruthMask(width: rows[0].count, height: rows.count, values: values)
}

/// A row-major prediction from rows of characters: '#' predicted object.
func prediction(_ rows: [String]) -> [Bool] { rows.flatMap { row in row.map { $0 == "#" } } }

/// Double-precision brute force: squared distance from every pixel to the nearest false pixel or the 1-px frame.
func bruteForceSquaredDistances(_ mask: [Bool], width: Int, height: Int) -> [Int] {
    var zeros: [(Int, Int)] = []
    for y in -1...height {
        for x in -1...width {
            let inside = x >= 0 && y >= 0 && x < width && y < height
            if !inside || !mask[y * width + x] { zeros.append((x, y)) }
        }
    }
    return (0..<(width * height)).map { i in
        let x = i % width, y = i / width
        return zeros.map { ($0.0 - x) * ($0.0 - x) + ($0.1 - y) * ($0.1 - y) }.min()!
    }
}

@Suite struct DistanceTransformTests {
    @Test(arguments: [(13, 9, UInt32(1)), (1, 7, 2), (8, 1, 3), (20, 17, 4), (31, 5, 5)])
    func matchesBruteForce(width: Int, height: Int, seed: UInt32) {
        var state = seed
        for density in [0.3, 0.8, 0.97] {
            let mask = (0..<(width * height)).map { _ -> Bool in
                state = state &* 1_664_525 &+ 1_013_904_223
                return Double(state >> 8) / Double(1 << 24) < density
            }
            #expect(DistanceTransform.squaredDistancesWithZeroFrame(mask, width: width, height: height)
                    == bruteForceSquaredDistances(mask, width: width, height: height))
        }
    }

    @Test func allObjectIsBoundedByTheFrame() {
        // A 5 × 3 all-true mask: the frame makes the middle row 2 away from the top and bottom.
        let d = DistanceTransform.squaredDistancesWithZeroFrame([Bool](repeating: true, count: 15), width: 5, height: 3)
        #expect(d == [1, 1, 1, 1, 1,
                      1, 4, 4, 4, 1,
                      1, 1, 1, 1, 1])
    }
}

@Suite struct ClickSimulatorTests {
    @Test func firstClickIsPositiveAtTheDistanceTransformMaximum() {
        let gt = truth(["..........",
                        "..######..",
                        "..######..",
                        "..######..",
                        "..######..",
                        "..........",
                        ".##......."])
        var simulator = ClickSimulator(truth: gt)
        let click = simulator.nextClick(prediction: [Bool](repeating: false, count: 70))
        // Rows 2 and 3 are 2 from the background above/below; columns 3...6 are at least 2 from the sides. The first
        // pixel in row-major order with squared distance 4 is (3, 2).
        #expect(click == SimulatedClick(x: 3, y: 2, isPositive: true))
    }

    @Test func theImageBorderCountsAsABoundary() {
        // The object fills the left half and touches three borders: with the zero frame, its farthest interior point
        // is in the middle of the half, not at the left edge (which would be 5 away from the background column).
        let gt = truth(Array(repeating: "#####.....", count: 6))
        let click = ClickSimulator.choose(truth: gt, prediction: [Bool](repeating: false, count: 60),
                                          clicked: [Bool](repeating: false, count: 60))
        #expect(click == SimulatedClick(x: 2, y: 2, isPositive: true))
    }

    @Test func equalErrorsGiveANegativeClick() {
        // The object is the left square, the prediction the right square: FN and FP have the same thickness.
        let gt = truth([".........",
                        ".###.....",
                        ".###.....",
                        ".###.....",
                        "........."])
        let pred = prediction([".........",
                               ".....###.",
                               ".....###.",
                               ".....###.",
                               "........."])
        let click = ClickSimulator.choose(truth: gt, prediction: pred, clicked: [Bool](repeating: false, count: 45))
        #expect(click == SimulatedClick(x: 6, y: 2, isPositive: false))
    }

    @Test func thickerFalsePositiveWinsAndThinnerLoses() {
        let gt = truth(["..........",
                        ".###......",
                        ".###......",
                        ".###......",
                        ".........."])
        // The FP block (5 × 5, against the right, top and bottom borders) is 3 thick; the FN square only 2.
        let fatFP = prediction(Array(repeating: ".....#####", count: 5))
        #expect(ClickSimulator.choose(truth: gt, prediction: fatFP, clicked: .init(repeating: false, count: 50))
                == SimulatedClick(x: 7, y: 2, isPositive: false))
        let thinFP = prediction(["..........",
                                 "......#...",
                                 "..........",
                                 "..........",
                                 ".........."])
        let click = ClickSimulator.choose(truth: gt, prediction: thinFP, clicked: .init(repeating: false, count: 50))
        #expect(click == SimulatedClick(x: 2, y: 2, isPositive: true))
    }

    @Test func perfectPredictionGivesANegativeClickAtTheFirstPixel() {
        let gt = truth(["....", ".##.", "...."])
        let click = ClickSimulator.choose(truth: gt, prediction: prediction(["....", ".##.", "...."]),
                                          clicked: [Bool](repeating: false, count: 12))
        #expect(click == SimulatedClick(x: 0, y: 0, isPositive: false))
    }

    @Test func aClickedPixelIsNotChosenAgain() {
        let gt = truth([".....", ".###.", ".###.", ".###.", "....."])
        var simulator = ClickSimulator(truth: gt)
        let empty = [Bool](repeating: false, count: 25)
        let first = simulator.nextClick(prediction: empty)
        #expect(first == SimulatedClick(x: 2, y: 2, isPositive: true))
        // Same prediction again: the centre is masked out, the next maximum (squared distance 1) is the first object
        // pixel in row-major order.
        #expect(simulator.nextClick(prediction: empty) == SimulatedClick(x: 1, y: 1, isPositive: true))
        #expect(simulator.clicks.count == 2)
    }

    @Test func ignoredPixelsAreNeverClickedNorScored() {
        // Object surrounded by an ignore band; the prediction marks everything as object, so the band would be
        // the thickest FP region if it counted.
        let gt = truth(["??????????",
                        "??????????",
                        "??####????",
                        "??####????",
                        "??????????",
                        "?????????."])
        let all = [Bool](repeating: true, count: 60)
        let click = ClickSimulator.choose(truth: gt, prediction: all, clicked: .init(repeating: false, count: 60))
        #expect(click == SimulatedClick(x: 9, y: 5, isPositive: false))  // the only scored background pixel
        // Errors on ignored pixels do not change the IoU.
        let exact = prediction(["..........", "..........", "..####....", "..####....", "..........", ".........."])
        #expect(ClickMetrics.iou(truth: gt, prediction: exact) == 1)
        var noisy = exact
        for i in [0, 1, 12, 26, 47, 58] { noisy[i] = true }  // all ignored pixels
        #expect(ClickMetrics.iou(truth: gt, prediction: noisy) == 1)
        #expect(ClickMetrics.iou(truth: gt, prediction: all) == 8.0 / 9.0)
    }
}

@Suite struct ClickMetricsTests {
    @Test func iouCountsIntersectionOverUnion() {
        let gt = truth(["##..", "##.."])
        #expect(ClickMetrics.iou(truth: gt, prediction: prediction(["#...", "#..."])) == 0.5)
        #expect(ClickMetrics.iou(truth: gt, prediction: prediction(["###.", "###."])) == 4.0 / 6.0)
        #expect(ClickMetrics.iou(truth: gt, prediction: prediction(["....", "...."])) == 0)
        #expect(ClickMetrics.iou(truth: truth(["...."]), prediction: prediction(["...."])) == 1)
    }

    @Test func nocIsTheFirstClickReachingTheThresholdElseMax() {
        let ious = [0.5, 0.86, 0.89, 0.9, 0.95]
        #expect(ClickMetrics.numberOfClicks(ious: ious, threshold: 0.85, maxClicks: 20) == 2)
        #expect(ClickMetrics.numberOfClicks(ious: ious, threshold: 0.90, maxClicks: 20) == 4)
        let never = [Double](repeating: 0.7, count: 20)
        #expect(ClickMetrics.numberOfClicks(ious: never, threshold: 0.9, maxClicks: 20) == 20)
        // Reaching the threshold exactly at the last click is counted as a failure, as RITM's code does.
        let atLast = [Double](repeating: 0.7, count: 19) + [0.93]
        let noc = ClickMetrics.numberOfClicks(ious: atLast, threshold: 0.9, maxClicks: 20)
        #expect(noc == 20)
        #expect(ClickMetrics.failures(nocs: [noc, 3, 20, 19], maxClicks: 20) == 2)
    }

    @Test func meanIoUCurveAveragesPerClick() {
        let curve = ClickMetrics.meanIoUCurve([[0.2, 0.6, 1.0], [0.4, 0.8, 0.9]], clicks: 3)
        #expect(zip(curve, [0.3, 0.7, 0.95]).allSatisfy { abs($0 - $1) < 1e-12 })
    }
}
