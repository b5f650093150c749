import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation

/// The files of `probattn eval --report DIR`:
/// - `summary.json`: `EvaluationSummary`;
/// - `instances.json`: every instance's clicks, IoU sequence, NoCs and timings (`InstanceResult`);
/// - `instances.csv`: one row per instance: name, split, noc85, noc90, iou_1 ... iou_N;
/// - `miou.svg`: mIoU against the number of clicks;
/// - with `--save-masks`, `masks/<name>.png` and `masks/<name>.rle.json` (`MaskExport`).
public enum EvaluationReport {
    public static let summaryFile = "summary.json"
    public static let instancesFile = "instances.json"
    public static let csvFile = "instances.csv"
    public static let plotFile = "miou.svg"

    /// Writes the summary, the per-instance JSON and CSV, and the plot into `directory` (created if needed).
    public static func write(summary: EvaluationSummary, results: [InstanceResult], to directory: String) throws {
        try createDirectory(directory)
        try writeJSON(summary, to: (directory as NSString).appendingPathComponent(summaryFile))
        try writeJSON(results, to: (directory as NSString).appendingPathComponent(instancesFile))
        try write(csv(results: results, maxClicks: summary.maxClicks),
                  to: (directory as NSString).appendingPathComponent(csvFile))
        let plot = SVGLinePlot(title: "mIoU vs clicks: \(summary.dataset) (\(summary.split), \(summary.images) images)",
                               xLabel: "clicks", yLabel: "mIoU",
                               series: [.init(name: summary.dataset, values: summary.miouAt)])
        try write(plot.svg(), to: (directory as NSString).appendingPathComponent(plotFile))
    }

    /// Reads a `summary.json`, given the file or the report folder that holds it.
    public static func readSummary(_ path: String) throws -> EvaluationSummary {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? (path as NSString).appendingPathComponent(summaryFile) : path
        guard let data = FileManager.default.contents(atPath: file) else {
            throw EvaluationError("cannot read \(file)")
        }
        do {
            return try JSONDecoder().decode(EvaluationSummary.self, from: data)
        } catch {
            throw EvaluationError("\(file) is not an evaluation summary: \(error)")
        }
    }

    /// The CSV text: a header and one row per instance.
    public static func csv(results: [InstanceResult], maxClicks: Int) -> String {
        var lines = [(["name", "split", "noc85", "noc90"] + (1...maxClicks).map { "iou_\($0)" }).joined(separator: ",")]
        for r in results {
            let ious = (0..<maxClicks).map { $0 < r.ious.count ? String(format: "%.6f", r.ious[$0]) : "" }
            lines.append(([csvField(r.name), r.split?.rawValue ?? "", String(r.noc85), String(r.noc90)] + ious)
                .joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(value) } catch { throw EvaluationError("cannot encode \(path): \(error)") }
        try write(data, to: path)
    }

    static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }

    static func write(_ data: Data, to path: String) throws {
        do {
            try data.write(to: URL(fileURLWithPath: path))
        } catch {
            throw EvaluationError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    static func createDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw EvaluationError("cannot create \(path): \(error.localizedDescription)")
        }
    }
}
