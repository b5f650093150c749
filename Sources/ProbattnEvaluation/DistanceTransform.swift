import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation

/// Exact Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions",
/// 2012), the same quantity as OpenCV's `distanceTransform(..., DIST_L2, DIST_MASK_PRECISE)`.
public enum DistanceTransform {
    /// For every pixel of a row-major `width × height` mask, the *squared* Euclidean distance to the nearest pixel
    /// where `mask` is false, with the image surrounded by a 1-pixel frame of false pixels (so the image border
    /// counts as a boundary, as in the click simulator's zero padding). Pixels where `mask` is false get 0.
    ///
    /// Squared distances are integers, so comparisons (maxima, ties) are exact.
    public static func squaredDistancesWithZeroFrame(_ mask: [Bool], width: Int, height: Int) -> [Int] {
        guard width > 0, height > 0, mask.count == width * height else { return [] }
        var result = [Int](repeating: 0, count: width * height)
        let n = width + 2
        var f = [Int](repeating: 0, count: n)
        var v = [Int](repeating: 0, count: n)        // sites of the envelope's parabolas
        var z = [Double](repeating: 0, count: n + 1)  // boundaries between them
        mask.withUnsafeBufferPointer { mask in
            result.withUnsafeMutableBufferPointer { out in
                // Pass 1, down each column: the 1-D distance to the nearest false pixel, with the frame at rows -1
                // and `height`; squared. Rows are visited in memory order, all columns at once.
                var nearest = [Int](repeating: -1, count: width)  // last false row above, then next false row below
                nearest.withUnsafeMutableBufferPointer { nearest in
                    for y in 0..<height {
                        let row = y * width
                        for x in 0..<width {
                            if !mask[row + x] { nearest[x] = y }
                            out[row + x] = y - nearest[x]
                        }
                    }
                    for x in 0..<width { nearest[x] = height }
                    for y in stride(from: height - 1, through: 0, by: -1) {
                        let row = y * width
                        for x in 0..<width {
                            if !mask[row + x] { nearest[x] = y }
                            let d = min(out[row + x], nearest[x] - y)
                            out[row + x] = d * d
                        }
                    }
                }
                // Pass 2, along each row: the lower envelope of the parabolas f(q) + (p - q)² over the sites
                // q = 0 ... width + 1 (q = x + 1 for image column x; q = 0 and width + 1 are the frame, f = 0).
                f.withUnsafeMutableBufferPointer { f in
                    v.withUnsafeMutableBufferPointer { v in
                        z.withUnsafeMutableBufferPointer { z in
                            for y in 0..<height {
                                let row = y * width
                                f[0] = 0
                                f[n - 1] = 0
                                var any = false
                                for x in 0..<width {
                                    f[x + 1] = out[row + x]
                                    any = any || f[x + 1] != 0
                                }
                                if !any { continue }  // an all-false row stays 0
                                var k = 0
                                v[0] = 0
                                z[0] = -.infinity
                                z[1] = .infinity
                                for q in 1..<n {
                                    let fq = f[q] + q * q
                                    var s = Double(fq - (f[v[k]] + v[k] * v[k])) / Double(2 * (q - v[k]))
                                    while s <= z[k] {
                                        k -= 1
                                        s = Double(fq - (f[v[k]] + v[k] * v[k])) / Double(2 * (q - v[k]))
                                    }
                                    k += 1
                                    v[k] = q
                                    z[k] = s
                                    z[k + 1] = .infinity
                                }
                                k = 0
                                for q in 1...width {
                                    while z[k + 1] < Double(q) { k += 1 }
                                    let d = q - v[k]
                                    out[row + q - 1] = d * d + f[v[k]]
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }
}
