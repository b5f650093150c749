/// Exact Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions",
/// 2012), the same quantity as OpenCV's `distanceTransform(..., DIST_L2, DIST_MASK_PRECISE)`.
public enum DistanceTransform {
    /// For every pixel of a row-major `width × height` mask, the *squared* Euclidean distance to the nearest pixel
    /// where `mask` is false, with the image surrounded by a 1-pixel frame of false pixels (so the image border
    /// counts as a boundary, as in the click simulator's zero padding). Pixels where `mask` is false get 0.
    ///
    /// Squared distances are integers, so comparisons (maxima, ties) are exact.
    public static func squaredDistancesWithZeroFrame(_ mask: [Bool], width: Int, height: Int) -> [Int] {
        // Pass 1, down each column: the 1-D distance to the nearest false pixel, the frame at rows -1 and `height`.
        var columnDistance = [Int](repeating: 0, count: width * height)
        for x in 0..<width {
            var last = -1  // the frame row above
            for y in 0..<height {
                if !mask[y * width + x] { last = y }
                columnDistance[y * width + x] = y - last
            }
            var next = height  // the frame row below
            for y in stride(from: height - 1, through: 0, by: -1) {
                let i = y * width + x
                if !mask[i] { next = y }
                let d = min(columnDistance[i], next - y)
                columnDistance[i] = d * d
            }
        }
        // Pass 2, along each row: the lower envelope of parabolas f(q) + (p - q)², with the frame columns -1 and
        // `width` as sites of value 0.
        var result = [Int](repeating: 0, count: width * height)
        let n = width + 2
        var f = [Int](repeating: 0, count: n)
        var v = [Int](repeating: 0, count: n)       // sites of the envelope's parabolas
        var z = [Double](repeating: 0, count: n + 1) // boundaries between them
        for y in 0..<height {
            // Sites are q = 0 ... width + 1, with q = x + 1 for image column x.
            f[0] = 0
            f[n - 1] = 0
            for x in 0..<width { f[x + 1] = columnDistance[y * width + x] }
            var k = 0
            v[0] = 0
            z[0] = -.infinity
            z[1] = .infinity
            for q in 1..<n {
                var s = intersection(f, q, v[k])
                while s <= z[k] {
                    k -= 1
                    s = intersection(f, q, v[k])
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
                result[y * width + q - 1] = d * d + f[v[k]]
            }
        }
        return result
    }

    /// Where the parabolas rooted at sites `q` and `p` (q > p) intersect.
    @inline(__always) private static func intersection(_ f: [Int], _ q: Int, _ p: Int) -> Double {
        Double((f[q] + q * q) - (f[p] + p * p)) / Double(2 * (q - p))
    }
}
