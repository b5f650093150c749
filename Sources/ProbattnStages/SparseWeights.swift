/// The token-to-unit weights W of an image in compressed sparse rows: for token i, the units
/// `columns[rowStart[i]..<rowStart[i + 1]]` with weights `values[...]`. Built once per image by the adapter from the
/// variant's dense W, dropping the entries below `threshold` (a token's weights sum to 1 and fall off like a
/// Gaussian with the feature distance, so almost all of the H × M entries are negligible: the largest dropped mass
/// of any row is recorded in `droppedMass`).
public struct SparseWeights: Sendable {
    public let tokens: Int
    public let units: Int
    public let rowStart: [Int32]
    public let columns: [Int32]
    public let values: [Float]
    /// The largest total weight dropped from one row.
    public let droppedMass: Float

    /// Keeps every entry of the dense row-major `dense` (H × M) that is at least `threshold`.
    public init?(dense: [Float], tokens h: Int, units m: Int, threshold: Float) {
        guard h > 0, m > 0, dense.count == h * m, h * m < Int(Int32.max) else { return nil }
        var rowStart = [Int32](repeating: 0, count: h + 1)
        var columns: [Int32] = []
        var values: [Float] = []
        var dropped: Float = 0
        dense.withUnsafeBufferPointer { w in
            for i in 0..<h {
                var rowDropped: Float = 0
                for j in 0..<m {
                    let v = w[i * m + j]
                    if v >= threshold && v > 0 {
                        columns.append(Int32(j))
                        values.append(v)
                    } else {
                        rowDropped += v
                    }
                }
                rowStart[i + 1] = Int32(columns.count)
                dropped = max(dropped, rowDropped)
            }
        }
        self.tokens = h
        self.units = m
        self.rowStart = rowStart
        self.columns = columns
        self.values = values
        self.droppedMass = dropped
    }

    /// Bytes held, for the cache's memory budget.
    public var memoryBytes: Int { rowStart.count * 4 + columns.count * 4 + values.count * 4 }

    /// The dense H × M matrix (for tests and diagnostics).
    public func dense() -> [Float] {
        var out = [Float](repeating: 0, count: tokens * units)
        for i in 0..<tokens {
            for e in Int(rowStart[i])..<Int(rowStart[i + 1]) { out[i * units + Int(columns[e])] = values[e] }
        }
        return out
    }
}
