import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation

/// A small SVG line plot: one or more series of y values against x = 1, 2, 3, ... (clicks), on a fixed y range, with
/// axes, grid, ticks and a legend. Used for `miou.svg` in eval reports and by `probattn eval-plot`.
public struct SVGLinePlot: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var values: [Double]
        public init(name: String, values: [Double]) { self.name = name; self.values = values }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var yRange: ClosedRange<Double>
    public var width = 720.0
    public var height = 480.0

    /// Distinguishable colours (Okabe–Ito), reused cyclically.
    static let colours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

    public init(title: String, xLabel: String, yLabel: String, series: [Series], yRange: ClosedRange<Double> = 0...1) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.yRange = yRange
    }

    /// The SVG document.
    public func svg() -> String {
        let left = 64.0, right = 24.0, top = 40.0
        let legendRows = Double(series.count)
        let bottom = 56.0 + 18.0 * legendRows
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let count = max(series.map(\.values.count).max() ?? 1, 2)
        func px(_ i: Int) -> Double { left + plotWidth * Double(i - 1) / Double(count - 1) }
        func py(_ v: Double) -> Double {
            let clamped = min(max(v, yRange.lowerBound), yRange.upperBound)
            return top + plotHeight * (1 - (clamped - yRange.lowerBound) / (yRange.upperBound - yRange.lowerBound))
        }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }

        var out: [String] = []
        out.append(#"<svg xmlns="http://www.w3.org/2000/svg" width="\#(n(width))" height="\#(n(height))" "#
                   + #"viewBox="0 0 \#(n(width)) \#(n(height))" font-family="sans-serif" font-size="12">"#)
        out.append(#"<rect width="100%" height="100%" fill="white"/>"#)
        out.append(#"<text x="\#(n(width / 2))" y="22" text-anchor="middle" font-size="14">\#(escape(title))</text>"#)
        // Horizontal grid and y ticks: 10 steps.
        for step in 0...10 {
            let v = yRange.lowerBound + (yRange.upperBound - yRange.lowerBound) * Double(step) / 10
            let y = py(v)
            out.append(#"<line x1="\#(n(left))" y1="\#(n(y))" x2="\#(n(left + plotWidth))" y2="\#(n(y))" "#
                       + #"stroke="rgb(224,224,224)"/>"#)
            out.append(#"<text x="\#(n(left - 6))" y="\#(n(y + 4))" text-anchor="end">\#(String(format: "%.2f", v))</text>"#)
        }
        // Vertical grid and x ticks: every click up to 20, else every 5.
        let xStep = count <= 20 ? 1 : 5
        for i in stride(from: 1, through: count, by: xStep) {
            let x = px(i)
            out.append(#"<line x1="\#(n(x))" y1="\#(n(top))" x2="\#(n(x))" y2="\#(n(top + plotHeight))" stroke="rgb(240,240,240)"/>"#)
            out.append(#"<text x="\#(n(x))" y="\#(n(top + plotHeight + 16))" text-anchor="middle">\#(i)</text>"#)
        }
        // Axes and labels.
        out.append(#"<rect x="\#(n(left))" y="\#(n(top))" width="\#(n(plotWidth))" height="\#(n(plotHeight))" "#
                   + #"fill="none" stroke="rgb(64,64,64)"/>"#)
        out.append(#"<text x="\#(n(left + plotWidth / 2))" y="\#(n(top + plotHeight + 36))" "#
                   + #"text-anchor="middle">\#(escape(xLabel))</text>"#)
        out.append(#"<text x="16" y="\#(n(top + plotHeight / 2))" text-anchor="middle" "#
                   + #"transform="rotate(-90 16 \#(n(top + plotHeight / 2)))">\#(escape(yLabel))</text>"#)
        // Series and legend.
        for (index, s) in series.enumerated() {
            let colour = Self.colours[index % Self.colours.count]
            let points = s.values.enumerated().map { "\(n(px($0.offset + 1))),\(n(py($0.element)))" }
            if points.count > 1 {
                out.append(#"<polyline fill="none" stroke="\#(colour)" stroke-width="2" "#
                           + #"points="\#(points.joined(separator: " "))"/>"#)
            }
            for (i, v) in s.values.enumerated() {
                out.append(#"<circle cx="\#(n(px(i + 1)))" cy="\#(n(py(v)))" r="2.5" fill="\#(colour)"/>"#)
            }
            let legendY = top + plotHeight + 52 + 18 * Double(index)
            out.append(#"<line x1="\#(n(left))" y1="\#(n(legendY - 4))" x2="\#(n(left + 24))" y2="\#(n(legendY - 4))" "#
                       + #"stroke="\#(colour)" stroke-width="2"/>"#)
            let last = s.values.last.map { String(format: " (mIoU@%d %.3f)", s.values.count, $0) } ?? ""
            out.append(#"<text x="\#(n(left + 30))" y="\#(n(legendY))">\#(escape(s.name + last))</text>"#)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
