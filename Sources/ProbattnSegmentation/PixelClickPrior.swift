import Foundation
import ProbattnImaging
import ProbattnStages

/// The pixel-level click prior of the boundary refinement (propagator option `pixel_click_weight`): a click's class
/// as evidence for the pixels connected to it in the image, so that a click on a thin error along the outline (the
/// 1–3 px seam the error analysis finds, or a thin part) moves the boundary along the stretch of similar colour it
/// lies in, not only within its disc.
///
/// For every class c, D_c(p) is the geodesic distance from pixel p to the nearest click of class c over the
/// 8-connected pixel grid, each step from p to q costing |p − q| + ΔE(p, q) (pixels; one CIELAB ΔE of colour change
/// costs as much as one pixel of path). The refinement's unary cost of every class other than c at p then grows by
/// w · exp(−D_c(p)² / (2ρ²)), ρ = `pixel_click_radius` (pixels), cut off at D = 3ρ.
/// Every step costs at least its length, so a pixel within the cut-off of a click lies within 3ρ pixels of it: the
/// prior reaches no further (the incremental path grows a changed click's rectangle by that much), and the distances
/// inside a rectangle need only the pixels within 3ρ of it, which makes them the same in a crop as in the whole image.
///
/// Called by `BeliefPropagator.render` once per click, for the band pixels of the rectangle it renders; stateless.
struct PixelClickPrior: Sendable, Equatable {
    /// w: the unary cost (nats) added to the other classes at a click's own pixel.
    var weight: Float
    /// ρ, in pixels of a path of constant colour.
    var radius: Float
    /// The CIELAB ΔE whose change costs as much as one pixel of path.
    var colourScale: Float = 1

    /// How far (pixels) from a click the prior reaches.
    var reach: Int { Int((3 * radius).rounded(.up)) }

    /// `band.count × classCount` unary increments for the pixels of `band` (indices into `image`, all inside
    /// `rect`): entry (i, c') is Σ over classes c ≠ c' of w · exp(−D_c² / (2ρ²)).
    func unaryOffsets(image: RGBImage, band: [Int32], rect: PixelRect, clicks: [Click], classCount k: Int)
        -> [Float] {
        var offsets = [Float](repeating: 0, count: band.count * k)
        guard weight > 0, radius > 0, !band.isEmpty else { return offsets }
        let w = image.width, h = image.height
        let window = rect.expanded(by: reach, clippedTo: w, h)
        let cutoff = 3 * radius
        let lab = Self.colours(of: image, in: window)
        for c in 0..<k {
            let seeds = clicks.filter {
                $0.classIndex == c && $0.x >= window.x && $0.x < window.maxX && $0.y >= window.y && $0.y < window.maxY
            }
            guard !seeds.isEmpty else { continue }
            let distance = geodesicDistances(from: seeds, window: window, lab: lab, cutoff: cutoff)
            let scale: Float = 1 / (2 * radius * radius)
            for (i, p) in band.enumerated() {
                let pi = Int(p), x = pi % w - window.x, y = pi / w - window.y
                let d: Float = distance[y * window.width + x]
                guard d <= cutoff else { continue }
                let bonus = weight * expf(-d * d * scale)
                for other in 0..<k where other != c { offsets[i * k + other] += bonus }
            }
        }
        return offsets
    }

    /// Multi-source Dijkstra from `seeds` over the pixels of `window` (indices relative to it), stopping at
    /// `cutoff`; unreached pixels get `.infinity`.
    private func geodesicDistances(from seeds: [Click], window: PixelRect, lab: [Float], cutoff: Float) -> [Float] {
        let ww = window.width, wh = window.height
        var distance = [Float](repeating: .infinity, count: ww * wh)
        var heap = BackgroundPrior.MinHeap()
        for seed in seeds {
            let i = (seed.y - window.y) * ww + seed.x - window.x
            distance[i] = 0
            heap.push(0, i)
        }
        let steps = BoundaryRefinement.neighbours
        distance.withUnsafeMutableBufferPointer { distance in
        lab.withUnsafeBufferPointer { lab in
            while let (key, i) = heap.pop() {
                let d = Float(key)
                guard d <= distance[i] else { continue }
                let x = i % ww, y = i / ww
                for step in steps {
                    let xx = x + step.dx, yy = y + step.dy
                    guard xx >= 0, xx < ww, yy >= 0, yy < wh else { continue }
                    let j = yy * ww + xx
                    let dl = lab[3 * i] - lab[3 * j], da = lab[3 * i + 1] - lab[3 * j + 1]
                    let db = lab[3 * i + 2] - lab[3 * j + 2]
                    let next = d + 1 / step.inverseDistance + (dl * dl + da * da + db * db).squareRoot() / colourScale
                    if next < distance[j], next <= cutoff {
                        distance[j] = next
                        heap.push(Double(next), j)
                    }
                }
            }
        }
        }
        return distance
    }

    /// The CIELAB colour (`QuantisedLab`) of every pixel of `window`, row by row, 3 floats each.
    private static func colours(of image: RGBImage, in window: PixelRect) -> [Float] {
        var lab = [Float](repeating: 0, count: window.area * 3)
        let table = QuantisedLab.table, w = image.width
        var o = 0
        for y in window.y..<window.maxY {
            for x in window.x..<window.maxX {
                let p = 3 * (y * w + x)
                let q = QuantisedLab.index(image.pixels[p], image.pixels[p + 1], image.pixels[p + 2])
                lab[o] = table[q]; lab[o + 1] = table[q + 1]; lab[o + 2] = table[q + 2]
                o += 3
            }
        }
        return lab
    }
}
