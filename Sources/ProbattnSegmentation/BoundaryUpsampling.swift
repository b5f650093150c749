import ProbattnImaging
import ProbattnStages

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
/// whether it is protected, and the image: after a click, rewriting (`write`) the propagator's changed rectangle
/// and the blocks whose protection changed, grown by `reach`, gives exactly the mask written over the whole image.
/// Called by the session core after every propagation of a reduced image (stage `mask_upsample`), and must leave
/// every pixel outside the rectangle it is given as it was.
/// Value type, no I/O.
public struct BoundaryUpsampler: Sendable, Equatable {
    /// σs in working pixels: 0.5 makes a pixel's own block dominate only in the block's middle, so near a block
    /// edge the neighbouring block across it weighs about as much and the colour decides.
    public var spatialSigma: Float
    /// σc in CIELAB units (ΔE): about the colour difference of neighbouring regions a person tells apart at a
    /// glance; much smaller and the block means of blocks straddling an edge (a mix of both sides) match nothing.
    public var colourSigma: Float

    /// The session core's upsampler.
    public static let standard = BoundaryUpsampler(spatialSigma: 0.5, colourSigma: 10)

    /// Working pixels around a block whose labels its relabelling reads.
    public static let reach = 1

    public init(spatialSigma: Float, colourSigma: Float) {
        precondition(spatialSigma > 0 && colourSigma > 0, "BoundaryUpsampler: sigmas must be positive")
        self.spatialSigma = spatialSigma
        self.colourSigma = colourSigma
    }

    /// Writes, in `mask` (at image resolution), the blocks of the working rectangle `rect` from `working`: each block
    /// its working pixel's label (the block expansion), boundary blocks that are not `protected` relabelled as
    /// described above. `image` is the image at its own size, `workingImage` its working copy
    /// (`resolution.reduce(image)`); `protected` holds working pixel indices (`y · workingWidth + x`). With
    /// `previous`, the working mask and protected set `mask` was computed from, a block whose 3 × 3 labels and
    /// protection are the same in both is left as it is (it already holds its labels). Returns the image rectangle
    /// of `rect` (clipped), outside which `mask` is untouched. With `rect` the whole working image (and no
    /// `previous`) this gives the from-scratch mask; after a click, with the changed rectangle and the blocks whose
    /// protection changed grown by `reach`, it updates the previous version's mask to exactly that.
    @discardableResult
    public func write(_ working: LabelMask, rect: PixelRect, image: RGBImage, workingImage: RGBImage,
                      resolution: WorkingResolution, protected: Set<Int>,
                      previous: (working: LabelMask, protected: Set<Int>)? = nil, into mask: inout LabelMask,
                      budget: ComputeBudget = .single) -> PixelRect {
        precondition(working.width == resolution.workingWidth && working.height == resolution.workingHeight
                     && workingImage.width == working.width && workingImage.height == working.height
                     && image.width == resolution.width && image.height == resolution.height
                     && mask.width == resolution.width && mask.height == resolution.height
                     && (previous.map { $0.working.width == working.width && $0.working.height == working.height }
                         ?? true),
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
        let before = previous?.working.labels ?? []
        let protectionChanged = previous.map { protected.symmetricDifference($0.protected) } ?? []
        // Chunks of working rows (their count depends on the rectangle only): each writes only its blocks' pixels.
        let chunks = min(clipped.height, 16)
        working.labels.withUnsafeBufferPointer { labels in
            before.withUnsafeBufferPointer { before in
                image.pixels.withUnsafeBufferPointer { px in
                    workingImage.pixels.withUnsafeBufferPointer { wpx in
                        lab.withUnsafeBufferPointer { lab in
                            exps.withUnsafeBufferPointer { exps in
                                spatial.withUnsafeBufferPointer { spatial in
                                    mask.labels.withUnsafeMutableBufferPointer { out in
                                        budget.forEachChunk(count: chunks) { chunk in
                                            let rows = ComputeBudget.range(ofChunk: chunk, count: chunks,
                                                                           total: clipped.height)
                                            for by in (clipped.y + rows.lowerBound)..<(clipped.y + rows.upperBound) {
                                                for bx in clipped.x..<clipped.maxX {
                                                    let block = by * ww + bx
                                                    if !before.isEmpty, !protectionChanged.contains(block),
                                                       Self.sameNeighbourhood(bx, by, labels, before, ww, wh) {
                                                        continue
                                                    }
                                                    let own = labels[block]
                                                    let x0 = bx * f, x1 = min(w, x0 + f)
                                                    for y in (by * f)..<min(h, by * f + f) {
                                                        for x in x0..<x1 { out[y * w + x] = own }
                                                    }
                                                    if protected.contains(block) { continue }
                                                    Self.relabelBlock(bx, by, labels: labels, px: px, wpx: wpx,
                                                                      lab: lab, exps: exps, spatial: spatial,
                                                                      colourScale: colourScale, f: f, w: w, h: h,
                                                                      ww: ww, wh: wh, out: out)
                                                }
                                            }
                                        }
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

    /// Whether block (bx, by) has the same 3 × 3 labels in `labels` and `before`.
    @inline(__always)
    private static func sameNeighbourhood(_ bx: Int, _ by: Int, _ labels: UnsafeBufferPointer<UInt8>,
                                          _ before: UnsafeBufferPointer<UInt8>, _ ww: Int, _ wh: Int) -> Bool {
        for y in max(0, by - 1)...min(wh - 1, by + 1) {
            for x in max(0, bx - 1)...min(ww - 1, bx + 1) where labels[y * ww + x] != before[y * ww + x] {
                return false
            }
        }
        return true
    }

    /// Relabels the pixels of block (bx, by) if it is a boundary block (its 3 × 3 neighbourhood holds another label).
    @inline(__always)
    private static func relabelBlock(_ bx: Int, _ by: Int, labels: UnsafeBufferPointer<UInt8>,
                                     px: UnsafeBufferPointer<UInt8>, wpx: UnsafeBufferPointer<UInt8>,
                                     lab: UnsafeBufferPointer<Float>, exps: UnsafeBufferPointer<Float>,
                                     spatial: UnsafeBufferPointer<Float>, colourScale: Float, f: Int, w: Int,
                                     h: Int, ww: Int, wh: Int, out: UnsafeMutableBufferPointer<UInt8>) {
        let own = labels[by * ww + bx]
        var boundary = false
        for dy in -1...1 where by + dy >= 0 && by + dy < wh {
            for dx in -1...1 where bx + dx >= 0 && bx + dx < ww && labels[(by + dy) * ww + bx + dx] != own {
                boundary = true
            }
        }
        guard boundary else { return }
        // The neighbourhood: per neighbour its offset k = 3·(dy+1) + (dx+1), colour and class slot (0: own).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 9 * 3 + 9) { floats in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 9 * 2) { ints in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 9) { classes in
                    let colour = floats.baseAddress!, sums = colour + 27
                    let offset = ints.baseAddress!, slot = offset + 9
                    classes[0] = own
                    var classCount = 1, count = 0
                    for dy in -1...1 where by + dy >= 0 && by + dy < wh {
                        for dx in -1...1 where bx + dx >= 0 && bx + dx < ww {
                            let n = (by + dy) * ww + bx + dx, label = labels[n]
                            let q = QuantisedLab.index(wpx[3 * n], wpx[3 * n + 1], wpx[3 * n + 2])
                            colour[3 * count] = lab[q]; colour[3 * count + 1] = lab[q + 1]
                            colour[3 * count + 2] = lab[q + 2]
                            offset[count] = 3 * (dy + 1) + dx + 1
                            var s = 0
                            while s < classCount && classes[s] != label { s += 1 }
                            if s == classCount {
                                classes[s] = label
                                classCount += 1
                            }
                            slot[count] = s
                            count += 1
                        }
                    }
                    let x0 = bx * f, x1 = min(w, x0 + f), y0 = by * f, y1 = min(h, y0 + f)
                    for y in y0..<y1 {
                        for x in x0..<x1 {
                            let p = y * w + x
                            let q = QuantisedLab.index(px[3 * p], px[3 * p + 1], px[3 * p + 2])
                            let l = lab[q], a = lab[q + 1], b = lab[q + 2]
                            let row = ((y - y0) * f + (x - x0)) * 9
                            for c in 0..<classCount { sums[c] = 0 }
                            for i in 0..<count {
                                let dl = l - colour[3 * i], da = a - colour[3 * i + 1], db = b - colour[3 * i + 2]
                                let e = spatial[row + offset[i]] + (dl * dl + da * da + db * db) * colourScale
                                guard e < 16 else { continue }
                                let position = e * 256
                                let j = Int(position)
                                let t = position - Float(j)
                                sums[slot[i]] += exps[j] + t * (exps[j + 1] - exps[j])
                            }
                            // The block's own label unless another class weighs strictly more.
                            var best = 0
                            for c in 1..<classCount where sums[c] > sums[best] { best = c }
                            out[p] = classes[best]
                        }
                    }
                }
            }
        }
    }

    /// The whole mask at image resolution: the block expansion with every boundary block relabelled.
    public func upsample(_ working: LabelMask, image: RGBImage, workingImage: RGBImage,
                         resolution: WorkingResolution, protected: Set<Int>) -> LabelMask {
        var mask = LabelMask(width: resolution.width, height: resolution.height, filledWith: 0)
        write(working, rect: PixelRect(x: 0, y: 0, width: working.width, height: working.height), image: image,
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
