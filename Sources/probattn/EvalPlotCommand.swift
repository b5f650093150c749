import ArgumentParser
import Foundation
import ProbattnEvaluation
import ProbattnJSON

/// `probattn eval-plot REPORT... [--out FILE]`: draws the mIoU-vs-clicks curves of several `probattn eval` reports on
/// one SVG plot, one line each, for comparisons (ablations, attention variants, datasets).
struct EvalPlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-plot",
        abstract: "Plot the mIoU-vs-clicks curves of several eval reports on one SVG.")

    @Argument(help: "Report folders written by `probattn eval --report` (or their summary.json files).")
    var reports: [String]

    @Option(help: "The SVG file to write.")
    var out = "miou-comparison.svg"

    @Option(name: .customLong("label"), help: "A legend label per report, in order (default: the report folder's name).")
    var labels: [String] = []

    @Option(help: "The plot's title.")
    var title = "mIoU vs clicks"

    func validate() throws {
        if reports.isEmpty { throw ValidationError("give at least one report folder") }
        if !labels.isEmpty && labels.count != reports.count {
            throw ValidationError("give one --label per report (\(reports.count)), or none")
        }
    }

    func run() throws {
        var series: [SVGLinePlot.Series] = []
        for (index, path) in reports.enumerated() {
            let summary = try EvaluationReport.readSummary(path)
            let label = labels.isEmpty ? defaultLabel(path, summary) : labels[index]
            series.append(.init(name: label, values: summary.miouAt))
            print("\(label): \(summary.dataset) (\(summary.split)), \(summary.images) images, "
                  + String(format: "NoC@90 %.2f, mIoU@1 %.3f", summary.noc90, summary.miouAt.first ?? 0))
        }
        let plot = SVGLinePlot(title: title, xLabel: "clicks", yLabel: "mIoU", series: series)
        do {
            try plot.svg().write(toFile: out, atomically: true, encoding: .utf8)
        } catch {
            throw ValidationError("cannot write \(out): \(error.localizedDescription)")
        }
        print("plot written to \(out)")
    }

    private func defaultLabel(_ path: String, _ summary: EvaluationSummary) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        let folder = trimmed.hasSuffix(".json") ? (trimmed as NSString).deletingLastPathComponent : trimmed
        let name = (folder as NSString).lastPathComponent
        return name.isEmpty || name == "." ? "\(summary.dataset) (\(summary.split))" : name
    }
}
