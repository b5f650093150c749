/// The resolution the segmentation stages work at for an image of a given size, and the mapping between it and the
/// image's own pixels.
///
/// An image of at most `maxPixels` pixels is worked on as it is (`factor` 1). A larger one is shrunk by the smallest
/// integer `factor` that brings ⌈width / factor⌉ × ⌈height / factor⌉ within `maxPixels`: every working pixel is the
/// mean of a `factor` × `factor` block of image pixels (narrower at the right and bottom edges), a click at image
/// pixel (x, y) is a click at working pixel (x / factor, y / factor), and the mask at image resolution gives every
/// pixel of a block the label of its working pixel. So a clicked image pixel gets the label its working pixel gets,
/// and the per-click work is that of an image of at most `maxPixels` pixels whatever the camera's resolution.
/// Built by the session core when it opens an image; value type, no I/O.
public struct WorkingResolution: Sendable, Equatable {
    /// The default budget of working pixels (`limits.working_pixels`): 640 × 480, the size of the benchmark images
    /// the stages' pixel sizes (click discs, refinement reach, token stride) were chosen on.
    public static let defaultMaxPixels = 640 * 480

    /// The image's own size.
    public let width: Int
    public let height: Int
    /// Image pixels per working pixel along each axis (1: the image's own resolution).
    public let factor: Int

    /// The working resolution of a `width` × `height` image within `maxPixels` working pixels.
    public init(width: Int, height: Int, maxPixels: Int) {
        precondition(width > 0 && height > 0 && maxPixels > 0, "WorkingResolution: empty size or budget")
        var f = 1
        while f < max(width, height), Self.ceilDiv(width, f) * Self.ceilDiv(height, f) > maxPixels { f += 1 }
        self.init(width: width, height: height, factor: f)
    }

    /// A given factor (1: the image's own resolution).
    public init(width: Int, height: Int, factor: Int) {
        precondition(width > 0 && height > 0 && factor >= 1, "WorkingResolution: empty size or factor")
        self.width = width
        self.height = height
        self.factor = factor
    }

    public var workingWidth: Int { Self.ceilDiv(width, factor) }
    public var workingHeight: Int { Self.ceilDiv(height, factor) }
    /// Whether the stages work on a reduced copy of the image.
    public var isReduced: Bool { factor > 1 }

    /// The working pixel an image coordinate falls in (along either axis).
    public func working(_ coordinate: Int) -> Int { coordinate / factor }

    /// The image pixels of a rectangle of working pixels (clipped to the image).
    public func imageRect(_ rect: PixelRect) -> PixelRect {
        guard !rect.isEmpty else { return .empty }
        let x0 = rect.x * factor, y0 = rect.y * factor
        return PixelRect(x: x0, y: y0, width: min(width, rect.maxX * factor) - x0,
                         height: min(height, rect.maxY * factor) - y0)
    }

    /// The working copy of `image` (which must have this resolution's image size): `image` itself at factor 1, else
    /// the block means, rounded.
    public func reduce(_ image: RGBImage) -> RGBImage {
        precondition(image.width == width && image.height == height, "WorkingResolution: image size mismatch")
        return factor == 1 ? image : image.boxAveraged(factor: factor)
    }

    /// Writes the labels of `working` (a mask at working resolution) inside the working rectangle `rect` into
    /// `mask` (at image resolution), every working pixel filling its block; returns the image rectangle written.
    /// Called after every click with the rectangle the propagator recomputed, so the rest of `mask` keeps the
    /// previous version's labels. Linear in the image pixels of the rectangle (each image row is one expanded
    /// working row, copied to the other rows of its block).
    @discardableResult
    public func expand(_ working: LabelMask, rect: PixelRect, into mask: inout LabelMask) -> PixelRect {
        precondition(working.width == workingWidth && working.height == workingHeight
                     && mask.width == width && mask.height == height, "WorkingResolution: mask size mismatch")
        let target = imageRect(rect)
        guard !target.isEmpty else { return .empty }
        let f = factor, ww = workingWidth
        working.labels.withUnsafeBufferPointer { source in
            mask.labels.withUnsafeMutableBufferPointer { out in
                for wy in rect.y..<rect.maxY {
                    let first = wy * f * width
                    // The block's first image row, expanded from the working row.
                    for wx in rect.x..<rect.maxX {
                        let x0 = wx * f, x1 = min(width, x0 + f), label = source[wy * ww + wx]
                        for x in x0..<x1 { out[first + x] = label }
                    }
                    // The block's other rows are copies of it.
                    let rows = min(height, wy * f + f) - wy * f
                    for r in 1..<max(1, rows) {
                        let row = first + r * width
                        (out.baseAddress! + row + target.x).update(from: out.baseAddress! + first + target.x,
                                                                    count: target.width)
                    }
                }
            }
        }
        return target
    }

    /// The next version of the mask at image resolution: `previous` (left as it is) with the image rectangle of the
    /// working rectangle `rect` expanded from `working`, as `expand(_:rect:into:)` writes it into a copy of
    /// `previous`, byte for byte. Built afresh in bands of block rows (about `pixelsPerBand` image pixels each) that
    /// `forEachChunk(count, body)` runs, each band copying its rows of `previous` and expanding its part of the
    /// rectangle, so the copy and the expansion of a large image share the caller's cores. Returns the mask and the
    /// image rectangle written.
    public func expanded(_ working: LabelMask, rect: PixelRect, over previous: LabelMask,
                         pixelsPerBand: Int = 1 << 20,
                         forEachChunk: (Int, (Int) -> Void) -> Void) -> (mask: LabelMask, rect: PixelRect) {
        precondition(working.width == workingWidth && working.height == workingHeight
                     && previous.width == width && previous.height == height, "WorkingResolution: mask size mismatch")
        let target = imageRect(rect)
        guard !target.isEmpty else { return (previous, .empty) }
        let f = factor, w = width, h = height, ww = workingWidth, wh = workingHeight
        let bands = max(1, min(wh, w * h / max(1, pixelsPerBand)))
        var labels = [UInt8](unsafeUninitializedCapacity: w * h) { _, count in count = w * h }
        working.labels.withUnsafeBufferPointer { source in
        previous.labels.withUnsafeBufferPointer { old in
        labels.withUnsafeMutableBufferPointer { out in
            let source = source.baseAddress!, old = old.baseAddress!, out = out.baseAddress!
            forEachChunk(bands) { band in
                let blockRows = (band * wh / bands)..<((band + 1) * wh / bands)
                for wy in blockRows {
                    let y0 = wy * f, y1 = min(h, y0 + f)
                    // Every row of the block as it was; then, inside the rectangle, the expanded working row.
                    (out + y0 * w).update(from: old + y0 * w, count: (y1 - y0) * w)
                    guard wy >= rect.y, wy < rect.maxY else { continue }
                    let first = y0 * w
                    for wx in rect.x..<rect.maxX {
                        let x0 = wx * f, x1 = min(w, x0 + f), label = source[wy * ww + wx]
                        for x in x0..<x1 { out[first + x] = label }
                    }
                    for y in (y0 + 1)..<max(y0 + 1, y1) {
                        (out + y * w + target.x).update(from: out + first + target.x, count: target.width)
                    }
                }
            }
        }
        }
        }
        return (LabelMask(width: w, height: h, labels: labels), target)
    }

    /// The whole mask at image resolution from a mask at working resolution.
    public func expand(_ working: LabelMask) -> LabelMask {
        guard factor > 1 else { return working }
        var mask = LabelMask(width: width, height: height, filledWith: 0)
        expand(working, rect: PixelRect(x: 0, y: 0, width: workingWidth, height: workingHeight), into: &mask)
        return mask
    }

    private static func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
}

extension RGBImage {
    /// The image shrunk by `factor`: each output pixel is the mean of its `factor × factor` block (fewer pixels at
    /// the right and bottom edges), rounded.
    public func boxAveraged(factor f: Int) -> RGBImage {
        precondition(f >= 1, "boxAveraged: factor below 1")
        let w = width, h = height
        let rw = (w + f - 1) / f, rh = (h + f - 1) / f
        var out = [UInt8](repeating: 0, count: rw * rh * 3)
        var sums = [UInt32](repeating: 0, count: rw * 3)
        pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                sums.withUnsafeMutableBufferPointer { s in
                    for ry in 0..<rh {
                        for i in 0..<s.count { s[i] = 0 }
                        let y0 = ry * f, y1 = min(h, y0 + f)
                        for y in y0..<y1 {
                            let row = y * w * 3
                            var x = 0
                            for rx in 0..<rw {
                                let end = min(w, x + f), k = rx * 3
                                var r: UInt32 = 0, g: UInt32 = 0, b: UInt32 = 0
                                while x < end {
                                    let q = row + x * 3
                                    r += UInt32(p[q]); g += UInt32(p[q + 1]); b += UInt32(p[q + 2])
                                    x += 1
                                }
                                s[k] += r; s[k + 1] += g; s[k + 2] += b
                            }
                        }
                        for rx in 0..<rw {
                            let count = UInt32((min(w, rx * f + f) - rx * f) * (y1 - y0))
                            for c in 0..<3 {
                                o[(ry * rw + rx) * 3 + c] = UInt8((s[rx * 3 + c] + count / 2) / count)
                            }
                        }
                    }
                }
            }
        }
        return RGBImage(width: rw, height: rh, pixels: out)
    }
}
