import Foundation
import ProbattnImaging

/// The class boundaries of a reduced image's mask placed at the image's own resolution: a joint-bilateral upsampling
/// (Kopf et al. 2007) of the working mask, guided by the full-resolution image.
///
/// The mask of a reduced image (`WorkingResolution.isReduced`) starts as the block expansion of the working mask
/// (every f × f block its working pixel's label). Every pixel of a *boundary block* — a block whose working pixel has
/// a 4- or 8-neighbour of another label — is then relabelled: it takes the class with the largest
///
///     Σ over the 3 × 3 working pixels q around its block of  exp(−d²/(2σs²) − ΔE²/(2σc²)) · [label(q) = class]
///
/// with d the distance from the pixel's centre to q's block centre in working pixels (image pixels divided by f)
/// and ΔE the CIELAB distance (`QuantisedLab`) between the pixel's own colour and q's colour in the working image
/// (its block's mean). A tie, or no weight at all, keeps the block's label. The blocks of the working pixels in
/// `protected` (those of the clicks in force) keep their label, so a clicked pixel keeps its click's class.
///
/// A block's labels depend only on the working labels of its 3 × 3 neighbourhood (`reach` = 1 working pixel),
/// whether it is protected, and the image: after a click, relabelling the blocks of the propagator's changed
/// rectangle grown by `reach` (and the blocks whose protection changed) gives exactly the mask relabelling the whole
/// image would. Called by the session core after every propagation of a reduced image (stage `mask_upsample`).
/// Value type, no I/O.
public struct BoundaryUpsampler: Sendable, Equatable {
    /// σs in working pixels: 0.5 makes a pixel's own block dominate only in the block's middle, so near a block
    /// edge the neighbouring block across it weighs about as much and the colour decides.
    public var spatialSigma: Float
    /// σc in CIELAB units (ΔE): about the colour difference of neighbouring regions a person tells apart at a
    /// glance; much smaller and the block means of blocks straddling an edge (a mix of both sides) match nothing.
    public var colourSigma: Float

    public static let standard: BoundaryUpsampler = {  // TUNING-ONLY
        if let v = getenv("PROBATTN_JBU").map({ String(cString: $0) }) {
            let p = v.split(separator: ",").map { Float($0)! }
            return BoundaryUpsampler(spatialSigma: p[0], colourSigma: p[1])
        }
        return BoundaryUpsampler(spatialSigma: 0.5, colourSigma: 10)
    }()

    /// Working pixels around a block whose labels its relabelling reads.
    public static let reach = 1

    public init(spatialSigma: Float, colourSigma: Float) {
        precondition(spatialSigma > 0 && colourSigma > 0, "BoundaryUpsampler: sigmas must be positive")
        self.spatialSigma = spatialSigma
        self.colourSigma = colourSigma
    }

    /// Relabels, in `mask` (at image resolution, holding the block expansion of `working` inside the working
    /// rectangle `rect`: `WorkingResolution.expand(_:rect:into:)`), the boundary blocks of `rect` that are not
    /// `protected`, as described above. `image` is the image at its own size, `workingImage` its working copy
    /// (`resolution.reduce(image)`); `protected` holds working pixel indices (`y · workingWidth + x`). Returns the
    /// image rectangle of `rect` (clipped). With `rect` the whole working image this gives the from-scratch mask;
    /// with the changed rectangle grown by `reach` (expanded first) it updates the previous version's mask.
    @discardableResult
    public func relabel(_ working: LabelMask, rect: PixelRect, image: RGBImage, workingImage: RGBImage,
                        resolution: WorkingResolution, protected: Set<Int>, into mask: inout LabelMask) -> PixelRect {
        precondition(working.width == resolution.workingWidth && working.height == resolution.workingHeight
                     && workingImage.width == working.width && workingImage.height == working.height
                     && image.width == resolution.width && image.height == resolution.height
                     && mask.width == resolution.width && mask.height == resolution.height,
                     "BoundaryUpsampler: size mismatch")
        let clipped = PixelRect(x: max(0, rect.x), y: max(0, rect.y),
                                width: min(working.width, rect.maxX) - max(0, rect.x),
                                height: min(working.height, rect.maxY) - max(0, rect.y))
        guard !clipped.isEmpty else { return .empty }
        let f = resolution.factor, w = resolution.width, h = resolution.height
        let ww = working.width, wh = working.height
        let spatial = spatialExponents(factor: f)
        let colourScale = 1 / (2 * colourSigma * colourSigma)
        let lab = QuantisedLab.table, exps = NegativeExponential.table
        working.labels.withUnsafeBufferPointer { labels in
            image.pixels.withUnsafeBufferPointer { px in
                workingImage.pixels.withUnsafeBufferPointer { wpx in
                    mask.labels.withUnsafeMutableBufferPointer { out in
                        for by in clipped.y..<clipped.maxY {
                            for bx in clipped.x..<clipped.maxX {
                                let own = labels[by * ww + bx]
                                let x0 = bx * f, x1 = min(w, x0 + f), y0 = by * f, y1 = min(h, y0 + f)
                                // The 3 × 3 neighbourhood inside the working image, as offsets k = 3·(dy+1) + (dx+1).
                                var boundary = false
                                var neighbours: [(k: Int, label: UInt8, l: Float, a: Float, b: Float)] = []
                                neighbours.reserveCapacity(9)
                                for dy in -1...1 {
                                    let ny = by + dy
                                    guard ny >= 0 && ny < wh else { continue }
                                    for dx in -1...1 {
                                        let nx = bx + dx
                                        guard nx >= 0 && nx < ww else { continue }
                                        let n = ny * ww + nx, label = labels[n]
                                        if label != own { boundary = true }
                                        let q = QuantisedLab.index(wpx[3 * n], wpx[3 * n + 1], wpx[3 * n + 2])
                                        neighbours.append((3 * (dy + 1) + dx + 1, label, lab[q], lab[q + 1], lab[q + 2]))
                                    }
                                }
                                if !boundary || protected.contains(by * ww + bx) { continue }
                                // The distinct labels of the neighbourhood (the block's own first) and each
                                // neighbour's slot among them.
                                var classes: [UInt8] = [own]
                                let slots = neighbours.map { n -> Int in
                                    if let i = classes.firstIndex(of: n.label) { return i }
                                    classes.append(n.label)
                                    return classes.count - 1
                                }
                                var sums = [Float](repeating: 0, count: classes.count)
                                for y in y0..<y1 {
                                    for x in x0..<x1 {
                                        let p = y * w + x
                                        let q = QuantisedLab.index(px[3 * p], px[3 * p + 1], px[3 * p + 2])
                                        let l = lab[q], a = lab[q + 1], b = lab[q + 2]
                                        let row = ((y - y0) * f + (x - x0)) * 9
                                        for i in 0..<sums.count { sums[i] = 0 }
                                        for i in 0..<neighbours.count {
                                            let n = neighbours[i]
                                            let dl = l - n.l, da = a - n.a, db = b - n.b
                                            let e = spatial[row + n.k] + (dl * dl + da * da + db * db) * colourScale
                                            sums[slots[i]] += NegativeExponential.value(e, table: exps)
                                        }
                                        // The block's own label unless another class weighs strictly more.
                                        var best = 0
                                        for i in 1..<sums.count where sums[i] > sums[best] { best = i }
                                        out[p] = classes[best]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return resolution.imageRect(clipped)
    }

    /// The whole mask at image resolution: the block expansion with every boundary block relabelled.
    public func upsample(_ working: LabelMask, image: RGBImage, workingImage: RGBImage,
                         resolution: WorkingResolution, protected: Set<Int>) -> LabelMask {
        var mask = resolution.expand(working)
        relabel(working, rect: PixelRect(x: 0, y: 0, width: working.width, height: working.height), image: image,
                workingImage: workingImage, resolution: resolution, protected: protected, into: &mask)
        return mask
    }

    /// d²/(2σs²) for every pixel of a block (row-major, `f × f`) and each of the 3 × 3 neighbouring block centres
    /// (k = 3·(dy+1) + (dx+1)), d in working pixels.
    func spatialExponents(factor f: Int) -> [Float] {
        let scale = 1 / (2 * spatialSigma * spatialSigma)
        var out = [Float](repeating: 0, count: f * f * 9)
        for py in 0..<f {
            for px in 0..<f {
                let u = (Float(px) + 0.5) / Float(f) - 0.5, v = (Float(py) + 0.5) / Float(f) - 0.5
                for dy in -1...1 {
                    for dx in -1...1 {
                        let du = u - Float(dx), dv = v - Float(dy)
                        out[(py * f + px) * 9 + 3 * (dy + 1) + dx + 1] = (du * du + dv * dv) * scale
                    }
                }
            }
        }
        return out
    }
}
