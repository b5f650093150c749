import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation

/// The dataset-level figures of an evaluation: what `probattn eval` prints and writes as `summary.json`.
/// The first nine keys are the interface of issue 5 (`dataset`, `images`, `noc85`, `noc90`, `fail90`, `miou_at`,
/// `seconds_per_click`, `seconds_per_image_open`, `config`); the others are extras.
public struct EvaluationSummary: Sendable, Equatable, Codable {
    public var dataset: String
    public var images: Int
    public var noc85: Double
    public var noc90: Double
    /// Instances whose NoC@90 is `maxClicks` (RITM's ≥20@90).
    public var fail90: Int
    /// mIoU after clicks 1 ... maxClicks, each in [0, 1].
    public var miouAt: [Double]
    /// Mean wall time of the per-click work (`SegmentationPipeline.segment`), over every click of every image.
    public var secondsPerClick: Double
    /// Mean wall time of what is done once per image (`SegmentationPipeline.prepare`: encoding, key adaptation).
    public var secondsPerImageOpen: Double
    /// The settings used: stages and their options, protocol details (see `EvaluationCommand`).
    public var config: JSONValue

    // Extras.
    public var split: String
    public var maxClicks: Int
    public var fail85: Int
    /// Over every (click step, click in force at that step) pair: the fraction whose pixel had the click's class in
    /// the mask of that step (clicks listed as `overridden` are not in force and not counted). Falls back to the
    /// newest click of each step for results that list no active clicks.
    public var clickedClassKept: Double
    /// The largest drop of the mean IoU from one click to the next (0 when the curve never decreases).
    public var maxMiouDrop: Double
    /// Mean wall time to decode an instance's image and mask files (not part of the pipeline).
    public var secondsPerImageDecode: Double
    /// Total wall time of the evaluation loop.
    public var secondsTotal: Double

    enum CodingKeys: String, CodingKey {
        case dataset, images, noc85, noc90, fail90
        case miouAt = "miou_at"
        case secondsPerClick = "seconds_per_click"
        case secondsPerImageOpen = "seconds_per_image_open"
        case config, split
        case maxClicks = "max_clicks"
        case fail85
        case clickedClassKept = "clicked_class_kept"
        case maxMiouDrop = "max_miou_drop"
        case secondsPerImageDecode = "seconds_per_image_decode"
        case secondsTotal = "seconds_total"
    }

    /// Aggregates per-instance results.
    public init(dataset: String, split: String, results: [InstanceResult], maxClicks: Int, config: JSONValue,
                secondsTotal: Double) {
        self.dataset = dataset
        self.split = split
        self.images = results.count
        self.maxClicks = maxClicks
        self.config = config
        self.secondsTotal = secondsTotal
        let n = Double(max(results.count, 1))
        noc85 = Double(results.map(\.noc85).reduce(0, +)) / n
        noc90 = Double(results.map(\.noc90).reduce(0, +)) / n
        fail85 = ClickMetrics.failures(nocs: results.map(\.noc85), maxClicks: maxClicks)
        fail90 = ClickMetrics.failures(nocs: results.map(\.noc90), maxClicks: maxClicks)
        miouAt = ClickMetrics.meanIoUCurve(results.map(\.ious), clicks: maxClicks)
        let clickTimes = results.flatMap(\.secondsPerClick)
        secondsPerClick = clickTimes.reduce(0, +) / Double(max(clickTimes.count, 1))
        secondsPerImageOpen = results.map(\.secondsOpen).reduce(0, +) / n
        secondsPerImageDecode = results.map(\.secondsDecode).reduce(0, +) / n
        let checked = results.flatMap(\.activeClicksChecked).reduce(0, +)
        if checked > 0 {
            clickedClassKept = Double(results.flatMap(\.activeClicksKept).reduce(0, +)) / Double(checked)
        } else {
            let kept = results.flatMap(\.clickedClassKept)
            clickedClassKept = kept.isEmpty ? 1 : Double(kept.filter { $0 }.count) / Double(kept.count)
        }
        var drop = 0.0
        for k in miouAt.indices.dropFirst() { drop = max(drop, miouAt[k - 1] - miouAt[k]) }
        maxMiouDrop = drop
    }

    /// mIoU after `clicks` clicks, nil beyond the curve.
    public func miou(after clicks: Int) -> Double? {
        clicks >= 1 && clicks <= miouAt.count ? miouAt[clicks - 1] : nil
    }

    /// The human-readable summary `probattn eval` prints.
    public var text: String {
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        var lines = ["\(dataset) (\(split)): \(images) images, \(maxClicks) clicks each"]
        lines.append("NoC@85 \(f(noc85))   NoC@90 \(f(noc90))   >=\(maxClicks)@90 \(fail90)   >=\(maxClicks)@85 \(fail85)")
        let ks = [1, 2, 3, 5, 10, 20].filter { $0 <= maxClicks }
        lines.append(ks.map { "mIoU@\($0) \(f(miou(after: $0) ?? 0, 3))" }.joined(separator: "   "))
        lines.append("seconds per click \(String(format: "%.4f", secondsPerClick))   seconds per image open "
                     + "\(String(format: "%.3f", secondsPerImageOpen))   total \(f(secondsTotal, 1)) s")
        lines.append("clicked pixels kept their class in \(f(clickedClassKept * 100, 1))% of (click, active click) pairs; "
                     + "largest mIoU drop between consecutive clicks \(f(maxMiouDrop * 100, 2)) points")
        return lines.joined(separator: "\n")
    }
}
