import Foundation
import ProbattnImaging
import ProbattnStages

/// The built-in encoder (`type: grid_features`): tokens are cells of a regular grid, optionally refined into
/// superpixels that follow colour edges (SLIC, each superpixel keeping the grid index of its seed, so the tokens stay
/// on a grid for the variants that need one). Each token's query is
///
///     [ L, a, b ] / colour_sigma                       mean CIELAB colour of the footprint
///     [ x, y ]    / (position_sigma · diagonal)         centre of the footprint
///     [ g1, g2, s ] / texture_sigma                     mean |∇L| at 1 px and at 2 px scale, std of L in the footprint
///
/// so that under RBF attention with α = 1 a difference of one sigma in a feature costs one unit of squared distance.
/// docs/ENCODER.md explains the choices. Called once per image (`encode`); thread-safe (immutable).
public struct GridFeatureEncoder: ImageEncoder {
    /// The stage type name in the config.
    public static let typeName = "grid_features"

    /// Grid cell side in pixels (the token stride); enlarged when the image would get more than `maxTokens` tokens.
    public var stride: Int
    public var maxTokens: Int
    /// SLIC iterations refining the grid cells into superpixels (0 = plain grid cells).
    public var superpixelIterations: Int
    /// SLIC compactness: the colour distance (ΔE) that weighs as much as one stride of spatial distance.
    public var compactness: Double
    public var colourSigma: Double
    public var positionSigma: Double
    public var textureSigma: Double
    /// Whether images whose grid cells are at least twice `stride` are encoded at reduced resolution (`scale`);
    /// off by default (docs/ENCODER.md: it bounds the open of large images but costs NoC on them).
    public var reducedResolution: Bool

    /// The feature dimension C of this encoder.
    public static let featureDimension = 8

    public init(stride: Int = 8, maxTokens: Int = 5000, superpixelIterations: Int = 4, compactness: Double = 10,
                colourSigma: Double = 7, positionSigma: Double = 0.03, textureSigma: Double = 4,
                reducedResolution: Bool = false) {
        self.stride = stride
        self.maxTokens = maxTokens
        self.superpixelIterations = superpixelIterations
        self.compactness = compactness
        self.colourSigma = colourSigma
        self.positionSigma = positionSigma
        self.textureSigma = textureSigma
        self.reducedResolution = reducedResolution
    }

    /// Builds the encoder from its config options (strict: unknown options are an error).
    public init(options: [String: ConfigValue]) throws {
        var r = StageOptionReader(stage: "encoder '\(Self.typeName)'", options: options)
        let d = GridFeatureEncoder()
        self.init(stride: try r.int("stride", default: d.stride, in: 2...512),
                  maxTokens: try r.int("max_tokens", default: d.maxTokens, in: 1...65536),
                  superpixelIterations: try r.int("superpixel_iterations", default: d.superpixelIterations, in: 0...50),
                  compactness: try r.double("compactness", default: d.compactness, in: 0.01...1000),
                  colourSigma: try r.double("colour_sigma", default: d.colourSigma, in: 0.01...1000),
                  positionSigma: try r.double("position_sigma", default: d.positionSigma, in: 0.0001...100),
                  textureSigma: try r.double("texture_sigma", default: d.textureSigma, in: 0.01...1000),
                  reducedResolution: try r.bool("reduced_resolution", default: d.reducedResolution))
        try r.finish()
    }

    /// The `grid_features` stage's options: the encoder's settings, decoded strictly.
    public struct Configuration: StageConfiguration {
        public var encoder: GridFeatureEncoder
        public init(options: [String: ConfigValue]) throws { encoder = try GridFeatureEncoder(options: options) }
    }

    /// The registration of `type: grid_features`.
    public static let descriptor = EncoderDescriptor(
        role: .encoder, typeName: typeName,
        summary: "grid cells refined into superpixels; CIELAB colour, position and texture features",
        configuration: Configuration.self
    ) { configuration, _ in configuration.encoder }

    /// The token grid for an image: rows × cols cells of about `stride` pixels, at most `maxTokens` cells.
    public func grid(width: Int, height: Int) -> TokenGrid {
        var s = Double(stride)
        let area = Double(width * height)
        if area / (s * s) > Double(maxTokens) { s = (area / Double(maxTokens)).squareRoot() }
        var rows = max(1, min(height, Int((Double(height) / s).rounded())))
        var cols = max(1, min(width, Int((Double(width) / s).rounded())))
        while rows * cols > maxTokens {
            if rows >= cols, rows > 1 { rows -= 1 } else if cols > 1 { cols -= 1 } else { break }
        }
        return TokenGrid(rows: rows, cols: cols)
    }

    /// The factor by which `encode` shrinks an image before computing superpixels and features: the largest integer
    /// that keeps a grid cell at least `stride` pixels on its shorter side (1 — full resolution — for images whose
    /// cells are smaller than twice the stride, e.g. every image up to 640 × 480 at the default budget, and always
    /// with `reducedResolution` off, the default). The token grid is the full image's; only the pixel work shrinks, by `scale²`.
    public func scale(width: Int, height: Int) -> Int {
        guard reducedResolution else { return 1 }
        let grid = grid(width: width, height: height)
        let cell = min(Double(width) / Double(grid.cols), Double(height) / Double(grid.rows))
        return max(1, min(width, height, Int(cell / Double(stride))))
    }

    /// Encodes `image` on the calling thread (the work per image is small next to the adapter's; `context` is
    /// unused). At `scale` f > 1 the superpixels and features are computed on the f × f box average of the image,
    /// and each full-resolution pixel belongs to the token of the reduced pixel it falls in; token centres are given
    /// in full-resolution pixels. The encoded image keeps the full-resolution image for the pixel stages.
    public func encode(_ image: RGBImage, context: StageContext) throws -> EncodedImage {
        let grid = grid(width: image.width, height: image.height)
        let f = scale(width: image.width, height: image.height)
        guard f > 1 else { return encode(image, grid: grid) }
        let reduced = image.boxAveraged(factor: f)
        let small = encode(reduced, grid: grid)
        let w = image.width, h = image.height, rw = reduced.width
        var label = [Int32](repeating: 0, count: w * h)
        small.tokenOfPixel.withUnsafeBufferPointer { source in
            label.withUnsafeMutableBufferPointer { target in
                for y in 0..<h {
                    let sourceRow = (y / f) * rw, targetRow = y * w
                    for x in 0..<w { target[targetRow + x] = source[sourceRow + x / f] }
                }
            }
        }
        // A reduced pixel's centre is at full-resolution f·x + (f − 1)/2 (edge blocks are narrower; the difference
        // is below one reduced pixel).
        let offset = Float(f - 1) / 2
        let centres = small.tokenCentres.map { $0 * Float(f) + offset }
        return EncodedImage(image: image, tokenCount: small.tokenCount, featureDimension: small.featureDimension,
                            features: small.features, grid: grid, tokenOfPixel: label,
                            tokenColours: small.tokenColours, tokenCentres: centres)
    }

    /// Encodes `image` on a given token grid (the grid of the image itself at full resolution, or of the full image
    /// when `image` is its reduced version).
    private func encode(_ image: RGBImage, grid: TokenGrid) -> EncodedImage {
        let w = image.width, h = image.height, n = w * h
        let rows = grid.rows, cols = grid.cols, tokens = rows * cols
        let lab = LabConverter().planes(of: image)
        let cellH = Double(h) / Double(rows), cellW = Double(w) / Double(cols)
        let baseRow = (0..<h).map { min(rows - 1, Int(Double($0) / cellH)) }
        let baseCol = (0..<w).map { min(cols - 1, Int(Double($0) / cellW)) }

        // Initial footprint: the grid cells.
        var label = [Int32](repeating: 0, count: n)
        for y in 0..<h { for x in 0..<w { label[y * w + x] = Int32(baseRow[y] * cols + baseCol[x]) } }

        // Cluster centres (x, y, L, a, b) per token.
        var centre = [Float](repeating: 0, count: tokens * 5)
        Self.updateCentres(&centre, label: label, lab: lab, width: w, height: h, keepEmpty: false,
                           cellW: cellW, cellH: cellH, cols: cols)
        let spatialWeight = Float((compactness / ((cellW * cellH).squareRoot())) * (compactness / ((cellW * cellH).squareRoot())))
        for _ in 0..<superpixelIterations {
            centre.withUnsafeBufferPointer { c in
                lab.l.withUnsafeBufferPointer { L in
                    lab.a.withUnsafeBufferPointer { A in
                        lab.b.withUnsafeBufferPointer { B in
                            label.withUnsafeMutableBufferPointer { lb in
                                for y in 0..<h {
                                    let br = baseRow[y], fy = Float(y)
                                    let r0 = max(0, br - 1), r1 = min(rows - 1, br + 1)
                                    for x in 0..<w {
                                        let bc = baseCol[x], p = y * w + x, fx = Float(x)
                                        let c0 = max(0, bc - 1), c1 = min(cols - 1, bc + 1)
                                        let l = L[p], a = A[p], b = B[p]
                                        var best = Float.infinity, bestToken = Int32(br * cols + bc)
                                        for r in r0...r1 {
                                            for cc in c0...c1 {
                                                let t = r * cols + cc, o = t * 5
                                                let dx = fx - c[o], dy = fy - c[o + 1]
                                                let dl = l - c[o + 2], da = a - c[o + 3], db = b - c[o + 4]
                                                let d = dl * dl + da * da + db * db + spatialWeight * (dx * dx + dy * dy)
                                                if d < best { best = d; bestToken = Int32(t) }
                                            }
                                        }
                                        lb[p] = bestToken
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Self.updateCentres(&centre, label: label, lab: lab, width: w, height: h, keepEmpty: true,
                               cellW: cellW, cellH: cellH, cols: cols)
        }

        // Texture: gradient magnitude of L at 1 px (central differences) and at 2 px (on the 2×2-averaged image).
        let g1 = Self.gradientMagnitude(lab.l, width: w, height: h)
        let hw = max(1, w / 2), hh = max(1, h / 2)
        var half = [Float](repeating: 0, count: hw * hh)
        for y in 0..<hh {
            for x in 0..<hw {
                let x0 = min(w - 1, 2 * x), x1 = min(w - 1, 2 * x + 1), y0 = min(h - 1, 2 * y), y1 = min(h - 1, 2 * y + 1)
                half[y * hw + x] = 0.25 * (lab.l[y0 * w + x0] + lab.l[y0 * w + x1] + lab.l[y1 * w + x0] + lab.l[y1 * w + x1])
            }
        }
        let g2half = Self.gradientMagnitude(half, width: hw, height: hh)

        // Per-token sums over the footprint.
        var sums = [Double](repeating: 0, count: tokens * 9)  // count, x, y, L, a, b, g1, g2, L²
        for y in 0..<h {
            let hy = min(hh - 1, y / 2)
            for x in 0..<w {
                let p = y * w + x, o = Int(label[p]) * 9
                let l = Double(lab.l[p])
                sums[o] += 1
                sums[o + 1] += Double(x); sums[o + 2] += Double(y)
                sums[o + 3] += l; sums[o + 4] += Double(lab.a[p]); sums[o + 5] += Double(lab.b[p])
                sums[o + 6] += Double(g1[p]); sums[o + 7] += Double(g2half[hy * hw + min(hw - 1, x / 2)])
                sums[o + 8] += l * l
            }
        }

        let diagonal = (Double(w * w + h * h)).squareRoot()
        let cDim = Self.featureDimension
        var features = [Float](repeating: 0, count: tokens * cDim)
        var colours = [Float](repeating: 0, count: tokens * 3)
        var centres = [Float](repeating: 0, count: tokens * 2)
        for t in 0..<tokens {
            let o = t * 9
            let count = sums[o]
            var cx, cy, l, a, b, t1, t2, sd: Double
            if count > 0 {
                cx = sums[o + 1] / count; cy = sums[o + 2] / count
                l = sums[o + 3] / count; a = sums[o + 4] / count; b = sums[o + 5] / count
                t1 = sums[o + 6] / count; t2 = sums[o + 7] / count
                sd = max(0, sums[o + 8] / count - l * l).squareRoot()
            } else {
                // A superpixel that lost all its pixels keeps its centre; it has no texture of its own.
                cx = Double(centre[t * 5]); cy = Double(centre[t * 5 + 1])
                l = Double(centre[t * 5 + 2]); a = Double(centre[t * 5 + 3]); b = Double(centre[t * 5 + 4])
                t1 = 0; t2 = 0; sd = 0
            }
            let f = t * cDim
            features[f] = Float(l / colourSigma)
            features[f + 1] = Float(a / colourSigma)
            features[f + 2] = Float(b / colourSigma)
            features[f + 3] = Float(cx / (positionSigma * diagonal))
            features[f + 4] = Float(cy / (positionSigma * diagonal))
            features[f + 5] = Float(t1 / textureSigma)
            features[f + 6] = Float(t2 / textureSigma)
            features[f + 7] = Float(sd / textureSigma)
            colours[t * 3] = Float(l); colours[t * 3 + 1] = Float(a); colours[t * 3 + 2] = Float(b)
            centres[t * 2] = Float(cx); centres[t * 2 + 1] = Float(cy)
        }
        return EncodedImage(image: image, tokenCount: tokens, featureDimension: cDim, features: features, grid: grid,
                            tokenOfPixel: label, tokenColours: colours, tokenCentres: centres)
    }

    /// Recomputes each token's (x, y, L, a, b) centre as the mean over its footprint. A token without pixels keeps
    /// its previous centre (`keepEmpty`) or, on the first call, gets its grid cell's centre.
    private static func updateCentres(_ centre: inout [Float], label: [Int32], lab: (l: [Float], a: [Float], b: [Float]),
                                      width w: Int, height h: Int, keepEmpty: Bool, cellW: Double, cellH: Double,
                                      cols: Int) {
        let tokens = centre.count / 5
        var sums = [Double](repeating: 0, count: tokens * 6)
        for y in 0..<h {
            for x in 0..<w {
                let p = y * w + x, o = Int(label[p]) * 6
                sums[o] += 1; sums[o + 1] += Double(x); sums[o + 2] += Double(y)
                sums[o + 3] += Double(lab.l[p]); sums[o + 4] += Double(lab.a[p]); sums[o + 5] += Double(lab.b[p])
            }
        }
        for t in 0..<tokens {
            let o = t * 6, count = sums[o]
            if count > 0 {
                for k in 0..<5 { centre[t * 5 + k] = Float(sums[o + 1 + k] / count) }
            } else if !keepEmpty {
                let x = (Double(t % cols) + 0.5) * cellW, y = (Double(t / cols) + 0.5) * cellH
                let xi = min(w - 1, Int(x)), yi = min(h - 1, Int(y)), p = yi * w + xi
                centre[t * 5] = Float(x); centre[t * 5 + 1] = Float(y)
                centre[t * 5 + 2] = lab.l[p]; centre[t * 5 + 3] = lab.a[p]; centre[t * 5 + 4] = lab.b[p]
            }
        }
    }

    /// |∇v| by central differences (one-sided at the border).
    private static func gradientMagnitude(_ v: [Float], width w: Int, height h: Int) -> [Float] {
        var out = [Float](repeating: 0, count: w * h)
        for y in 0..<h {
            let ym = max(0, y - 1), yp = min(h - 1, y + 1)
            for x in 0..<w {
                let xm = max(0, x - 1), xp = min(w - 1, x + 1)
                let gx = (v[y * w + xp] - v[y * w + xm]) / Float(max(1, xp - xm))
                let gy = (v[yp * w + x] - v[ym * w + x]) / Float(max(1, yp - ym))
                out[y * w + x] = (gx * gx + gy * gy).squareRoot()
            }
        }
        return out
    }
}
