import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation
import ProbattnStages

/// One simulated annotator click: where, and whether it marks the object (positive) or the background (negative).
public struct SimulatedClick: Sendable, Equatable, Codable {
    public var x: Int
    public var y: Int
    public var isPositive: Bool
    public init(x: Int, y: Int, isPositive: Bool) { self.x = x; self.y = y; self.isPositive = isPositive }

    enum CodingKeys: String, CodingKey {
        case x, y
        case isPositive = "positive"
    }

    /// The pipeline click: class 0 (object) when positive, class 1 (background) when negative.
    public var click: Click { Click(x: x, y: y, classIndex: isPositive ? 0 : 1) }
}

/// The standard click simulator of interactive segmentation, exactly as RITM's `Clicker._get_next_click`
/// (`../shared/spec/evaluation.md` §1):
/// 1. FN = object ∧ ¬prediction, FP = ¬object ∧ prediction, both over non-ignored pixels;
/// 2. exact Euclidean distance transform of each, with a 1-pixel zero frame (the image border is a boundary);
/// 3. pixels already clicked are zeroed;
/// 4. positive iff max DT(FN) > max DT(FP) (a tie, including 0 = 0, is negative); the click goes at the first pixel
///    in row-major order reaching the winning maximum.
///
/// Stateful over one instance: remembers the clicked pixels. Called by the evaluation loop once per click, with the
/// prediction after the previous click (all false before the first).
public struct ClickSimulator: Sendable {
    public let truth: GroundTruthMask
    /// `clicked[y * width + x]`: the pixel was already clicked (RITM's `not_clicked_map`, negated).
    public private(set) var clicked: [Bool]
    public private(set) var clicks: [SimulatedClick] = []

    public init(truth: GroundTruthMask) {
        self.truth = truth
        self.clicked = [Bool](repeating: false, count: truth.width * truth.height)
    }

    /// Chooses, records and returns the next click for a row-major binary `prediction` (true = object).
    public mutating func nextClick(prediction: [Bool]) -> SimulatedClick {
        let click = ClickSimulator.choose(truth: truth, prediction: prediction, clicked: clicked)
        clicked[click.y * truth.width + click.x] = true
        clicks.append(click)
        return click
    }

    /// The click rule itself, without state.
    public static func choose(truth: GroundTruthMask, prediction: [Bool], clicked: [Bool]) -> SimulatedClick {
        let w = truth.width, h = truth.height, count = w * h
        var falseNegative = [Bool](repeating: false, count: count)
        var falsePositive = [Bool](repeating: false, count: count)
        truth.values.withUnsafeBufferPointer { t in
            prediction.withUnsafeBufferPointer { p in
                for i in 0..<min(count, p.count) where t[i] != -1 {
                    falseNegative[i] = t[i] == 1 && !p[i]
                    falsePositive[i] = t[i] == 0 && p[i]
                }
            }
        }
        var fnDistance = DistanceTransform.squaredDistancesWithZeroFrame(falseNegative, width: w, height: h)
        var fpDistance = DistanceTransform.squaredDistancesWithZeroFrame(falsePositive, width: w, height: h)
        var fnMax = 0, fpMax = 0
        for i in 0..<min(count, clicked.count) where clicked[i] {
            fnDistance[i] = 0
            fpDistance[i] = 0
        }
        for i in 0..<count {
            fnMax = max(fnMax, fnDistance[i])
            fpMax = max(fpMax, fpDistance[i])
        }
        let isPositive = fnMax > fpMax
        let (distances, target) = isPositive ? (fnDistance, fnMax) : (fpDistance, fpMax)
        // Always found: the maximum is attained somewhere (when it is 0, at the first pixel).
        let index = distances.firstIndex(of: target) ?? 0
        return SimulatedClick(x: index % w, y: index / w, isPositive: isPositive)
    }
}

/// The metrics of `evaluation.md` §1 (RITM's `utils.get_iou` and `compute_noc_metric`).
public enum ClickMetrics {
    /// IoU of a row-major binary prediction with the object, over non-ignored pixels only. When both the object and
    /// the prediction are empty (union 0) the masks agree perfectly and the IoU is 1.
    public static func iou(truth: GroundTruthMask, prediction: [Bool]) -> Double {
        var intersection = 0, union = 0
        for i in truth.values.indices {
            let t = truth.values[i]
            guard t != -1 else { continue }
            let object = t == 1
            if object && prediction[i] { intersection += 1 }
            if object || prediction[i] { union += 1 }
        }
        return union == 0 ? 1 : Double(intersection) / Double(union)
    }

    /// NoC@τ of one instance: 1 + the index of the first IoU ≥ τ, else `maxClicks`.
    public static func numberOfClicks(ious: [Double], threshold: Double, maxClicks: Int) -> Int {
        if let first = ious.firstIndex(where: { $0 >= threshold }) { return first + 1 }
        return maxClicks
    }

    /// The count of instances whose NoC equals `maxClicks` (RITM's "≥20@τ", which counts an instance that first
    /// reaches τ exactly at the last click as a failure too).
    public static func failures(nocs: [Int], maxClicks: Int) -> Int {
        nocs.filter { $0 == maxClicks }.count
    }

    /// mIoU@k for k = 1 ... `clicks`: the mean over instances of the IoU after k clicks. An instance with fewer IoUs
    /// than k (it cannot happen when every click is run) contributes its last IoU.
    public static func meanIoUCurve(_ ious: [[Double]], clicks: Int) -> [Double] {
        guard !ious.isEmpty else { return [] }
        return (0..<clicks).map { k in
            ious.map { $0.isEmpty ? 0 : $0[min(k, $0.count - 1)] }.reduce(0, +) / Double(ious.count)
        }
    }
}
