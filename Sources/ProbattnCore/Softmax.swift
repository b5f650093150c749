/// Numerically stable row-wise softmax and log-sum-exp over row-major matrices.
///
/// Both subtract the row maximum before exponentiating, so no finite input overflows. A row whose entries are all
/// −∞ has no mass: softmax gives zeros and log-sum-exp gives −∞ (never NaN).
public enum Softmax {
    /// Replaces every row of the row-major `rows × columns` matrix with its softmax.
    public static func softmaxRows(_ values: inout [Float], rows: Int, columns: Int) throws {
        guard rows * columns == values.count, rows >= 0, columns >= 0 else {
            throw ProbattnCoreError.invalidShape("\(values.count) elements is not \(rows) × \(columns)")
        }
        values.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            for row in 0..<rows { softmaxRow(base + row * columns, count: columns) }
        }
    }

    /// The softmax of every row of a rank-2 tensor.
    public static func softmaxRows(_ tensor: Tensor) throws -> Tensor {
        guard tensor.rank == 2 else { throw ProbattnCoreError.invalidShape("softmax needs rank 2, got \(tensor.shape)") }
        var out = tensor
        try softmaxRows(&out.storage, rows: tensor.shape[0], columns: tensor.shape[1])
        return out
    }

    /// log Σ_j exp(x_ij) for every row of a rank-2 tensor.
    public static func logSumExpRows(_ tensor: Tensor) throws -> [Float] {
        guard tensor.rank == 2 else { throw ProbattnCoreError.invalidShape("logsumexp needs rank 2, got \(tensor.shape)") }
        let rows = tensor.shape[0], columns = tensor.shape[1]
        return tensor.storage.withUnsafeBufferPointer { buffer in
            (0..<rows).map { row in logSumExp(buffer.baseAddress! + row * columns, count: columns) }
        }
    }

    /// In-place softmax of `count` contiguous values.
    public static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        if count == 0 { return }
        var maximum = -Float.infinity
        for j in 0..<count where row[j] > maximum { maximum = row[j] }
        if maximum == -.infinity {
            for j in 0..<count { row[j] = 0 }
            return
        }
        var sum: Float = 0
        for j in 0..<count {
            let e = (row[j] - maximum).exponential
            row[j] = e
            sum += e
        }
        let scale = 1 / sum
        for j in 0..<count { row[j] *= scale }
    }

    /// log Σ exp over `count` contiguous values (−∞ for an empty or all −∞ row).
    public static func logSumExp(_ row: UnsafePointer<Float>, count: Int) -> Float {
        var maximum = -Float.infinity
        for j in 0..<count where row[j] > maximum { maximum = row[j] }
        if maximum == -.infinity { return -.infinity }
        var sum: Float = 0
        for j in 0..<count { sum += (row[j] - maximum).exponential }
        return maximum + sum.logarithm
    }
}

