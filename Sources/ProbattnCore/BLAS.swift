import CBLAS

/// Thin wrappers over OpenBLAS's cblas for the products the operator needs (row-major throughout).
///
/// Called from the plain and blocked attention paths; callers guarantee that the pointers cover the extents given.
public enum BLAS {
    /// The number of threads OpenBLAS uses for one call (process-wide setting).
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// OpenBLAS's thread count when ProbattnCore first asked (the process default, e.g. from OPENBLAS_NUM_THREADS).
    public static let initialThreadCount: Int = Int(openblas_get_num_threads())

    /// The environment variable whose value, when set, is OpenBLAS's thread count.
    public static let threadsEnvironmentVariable = "OPENBLAS_NUM_THREADS"

    /// Sets OpenBLAS's process-wide thread count once, at start (the daemon and `probattn eval` call it before any
    /// stage runs; nothing changes it afterwards): the value of `OPENBLAS_NUM_THREADS` when it is set to a positive
    /// integer (OpenBLAS read it already; it is kept), else 1, so that the stages' own chunks, run within each call's
    /// compute budget, are the only parallelism (a BLAS call inside a chunk then never multiplies the threads).
    /// Returns the count in force and whether it came from the environment. docs/PERFORMANCE.md ("Threads") says
    /// why and what was measured.
    @discardableResult
    public static func configureThreadsAtStart(environment: [String: String]) -> (threads: Int, fromEnvironment: Bool) {
        if let value = environment[threadsEnvironmentVariable], let threads = Int(value), threads > 0 {
            return (threadCount, true)
        }
        threadCount = 1
        return (1, false)
    }

    /// C (m×n) ← alpha · op(A) · op(B) + beta · C, with op(A) m×k and op(B) k×n, all row-major.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (before transposition).
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for row in 0..<m {
                for column in 0..<n { c[row * ldc + column] = beta == 0 ? 0 : beta * c[row * ldc + column] }
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(max(1, lda)), b, Int32(max(1, ldb)),
                    beta, c, Int32(max(1, ldc)))
    }

    /// y ← alpha · op(A) · x + beta · y, A stored row-major as rows×columns with row stride `lda`.
    @inlinable
    public static func sgemv(
        transposeA: Bool, rows: Int, columns: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, incx: Int = 1, beta: Float, y: UnsafeMutablePointer<Float>, incy: Int = 1
    ) {
        let outCount = transposeA ? columns : rows
        if outCount == 0 { return }
        if rows == 0 || columns == 0 {
            for index in 0..<outCount { y[index * incy] = beta == 0 ? 0 : beta * y[index * incy] }
            return
        }
        cblas_sgemv(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, Int32(rows), Int32(columns), alpha,
                    a, Int32(max(1, lda)), x, Int32(incx), beta, y, Int32(incy))
    }
}

extension Tensor {
    /// The matrix product op(self) · op(other) of two rank-2 tensors through `cblas_sgemm`.
    /// Throws when a tensor is not rank 2 or the inner extents disagree.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        guard rank == 2, other.rank == 2 else {
            throw ProbattnCoreError.invalidShape("matmul needs rank-2 tensors, got \(shape) and \(other.shape)")
        }
        let m = transposeSelf ? shape[1] : shape[0]
        let k = transposeSelf ? shape[0] : shape[1]
        let k2 = transposeOther ? other.shape[1] : other.shape[0]
        let n = transposeOther ? other.shape[0] : other.shape[1]
        guard k == k2 else {
            throw ProbattnCoreError.invalidShape("matmul inner extents differ: \(shape) · \(other.shape)")
        }
        var out = Tensor(shape: [m, n])
        storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                out.storage.withUnsafeMutableBufferPointer { c in
                    guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                    BLAS.sgemm(transposeA: transposeSelf, transposeB: transposeOther, m: m, n: n, k: k, alpha: 1,
                               a: a, lda: shape[1], b: b, ldb: other.shape[1], beta: 0, c: c, ldc: n)
                }
            }
        }
        return out
    }
}
