/// A contiguous, row-major Float32 tensor: a shape and its elements, the last axis varying fastest.
///
/// Used for every array the attention operator reads or writes. Value semantics (copy on write through `[Float]`).
public struct Tensor: Equatable, Sendable {
    /// The extent of each axis, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `storage.count == shape.reduce(1, *)`.
    public var storage: [Float]

    /// A tensor filled with `value`. Negative extents are treated as zero.
    public init(shape: [Int], repeating value: Float = 0) {
        self.shape = shape.map { max(0, $0) }
        self.storage = [Float](repeating: value, count: self.shape.reduce(1, *))
    }

    /// A tensor over existing elements; throws when `storage.count` does not equal the product of `shape`.
    public init(shape: [Int], storage: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw ProbattnCoreError.invalidShape("negative extent in shape \(shape)")
        }
        let count = shape.reduce(1, *)
        guard count == storage.count else {
            throw ProbattnCoreError.invalidShape("shape \(shape) needs \(count) elements, got \(storage.count)")
        }
        self.shape = shape
        self.storage = storage
    }

    /// A rank-2 tensor of `rows × columns`; throws when the element count does not match.
    public init(rows: Int, columns: Int, storage: [Float]) throws {
        try self.init(shape: [rows, columns], storage: storage)
    }

    /// The number of elements.
    public var count: Int { storage.count }
    /// The number of axes.
    public var rank: Int { shape.count }

    /// Row-major strides, in elements.
    public var strides: [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = step
            step *= shape[axis]
        }
        return strides
    }

    /// Element access by multi-index (one index per axis). Out-of-range indices trap, as array indexing does.
    public subscript(_ index: Int...) -> Float {
        get { storage[flatIndex(index)] }
        set { storage[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        var flat = 0
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            flat += index[axis] * step
            step *= shape[axis]
        }
        return flat
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, storage: storage)
    }

    /// For a rank-2 tensor: its transpose (a copy). Throws for other ranks.
    public func transposed() throws -> Tensor {
        guard rank == 2 else { throw ProbattnCoreError.invalidShape("transpose needs rank 2, got shape \(shape)") }
        let rows = shape[0], columns = shape[1]
        var out = [Float](repeating: 0, count: storage.count)
        transpose(storage, rows: rows, columns: columns, into: &out)
        return try Tensor(shape: [columns, rows], storage: out)
    }

    /// The largest absolute element (0 for an empty tensor; NaN if any element is NaN).
    public var maxMagnitude: Float {
        var result: Float = 0
        for x in storage {
            if x.isNaN { return .nan }
            result = max(result, abs(x))
        }
        return result
    }

    /// True when no element is NaN or infinite.
    public var isFinite: Bool { storage.allSatisfy { $0.isFinite } }

    /// The largest |self − other| over all elements; throws when the shapes differ. NaN if either holds NaN.
    public func maxAbsDifference(_ other: Tensor) throws -> Float {
        guard shape == other.shape else {
            throw ProbattnCoreError.invalidShape("cannot compare shapes \(shape) and \(other.shape)")
        }
        var result: Float = 0
        for index in storage.indices {
            let d = abs(storage[index] - other.storage[index])
            if d.isNaN { return .nan }
            result = max(result, d)
        }
        return result
    }
}

/// Writes the transpose of the row-major `rows × columns` matrix `source` into `destination` (`columns × rows`).
/// Blocked so that both sides stay in cache for large matrices.
@inlinable
func transpose(_ source: [Float], rows: Int, columns: Int, into destination: inout [Float]) {
    source.withUnsafeBufferPointer { src in
        destination.withUnsafeMutableBufferPointer { dst in
            transpose(src.baseAddress!, rows: rows, columns: columns, into: dst.baseAddress!)
        }
    }
}

/// Pointer form of `transpose(_:rows:columns:into:)`; `source` and `destination` must not overlap.
@inlinable
func transpose(_ source: UnsafePointer<Float>, rows: Int, columns: Int, into destination: UnsafeMutablePointer<Float>) {
    let block = 32
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + block)
        var c0 = 0
        while c0 < columns {
            let c1 = min(columns, c0 + block)
            for r in r0..<r1 {
                for c in c0..<c1 {
                    destination[c * rows + r] = source[r * columns + c]
                }
            }
            c0 = c1
        }
        r0 = r1
    }
}
