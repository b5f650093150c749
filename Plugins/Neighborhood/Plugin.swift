// The `neighborhood` attention variant (NAT, arXiv 2204.07143; dilated: arXiv 2209.15001): each token attends to the
// kernel_size × kernel_size tokens around it on the token grid, at the given dilation:
//     out_i = Σ_{j ∈ ρ(i)} softmax_j(scale · q_i·k_j) v_j.
// Along each grid axis the window takes every dilation-th position with the token's own residue (mod dilation) and is
// shifted at the borders so that every token has kernel_size positions per axis; when an axis holds fewer such
// positions the window is all of them, so a window covering the grid reproduces softmax attention. Unit j sits at
// token j (needs M == H). With fixed values: label propagation over the same sparse weights, v ← W·v with fixed tokens
// clamped, `iterations` times.

import CProbattnPlugin
import ProbattnPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// The window positions along one axis of `length` for `index` (kernel size `kernel`, odd; dilation `dilation`).
func windowPositions(index: Int, length: Int, kernel: Int, dilation: Int) -> [Int] {
    let residue = index % dilation
    let available = (length - residue + dilation - 1) / dilation  // positions ≡ residue (mod dilation) in [0, length)
    let size = min(kernel, available)
    let start = min(max(index / dilation - kernel / 2, 0), available - size)
    return (0..<size).map { (start + $0) * dilation + residue }
}

/// Sparse token-by-token weights in compressed rows: row i's neighbours are columns[offsets[i]..<offsets[i+1]].
struct SparseWeights {
    var offsets: [Int] = [0]
    var columns: [Int] = []
    var weights: [Float] = []

    /// out (H×Cv) = W · input (H×Cv).
    func apply(_ input: UnsafeBufferPointer<Float>, valueChannels cv: Int, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<(offsets.count - 1) {
            for c in 0..<cv { out[i * cv + c] = 0 }
            for k in offsets[i]..<offsets[i + 1] {
                let w = weights[k]
                let j = columns[k]
                for c in 0..<cv { out[i * cv + c] += w * input[j * cv + c] }
            }
        }
    }
}

/// Softmax weights of every token over its window.
func neighborhoodWeights(_ call: AttendCall, kernel: Int, dilation: Int, scale: Float) -> SparseWeights {
    let (rows, cols, c) = (call.gridRows, call.gridCols, call.channels)
    let rowWindows = (0..<rows).map { windowPositions(index: $0, length: rows, kernel: kernel, dilation: dilation) }
    let colWindows = (0..<cols).map { windowPositions(index: $0, length: cols, kernel: kernel, dilation: dilation) }
    var sparse = SparseWeights()
    sparse.columns.reserveCapacity(call.tokens * min(kernel * kernel, call.tokens))
    sparse.weights.reserveCapacity(sparse.columns.capacity)
    for r in 0..<rows {
        for s in 0..<cols {
            let i = r * cols + s
            let rowStart = sparse.weights.count
            var largest = -Float.infinity
            for r2 in rowWindows[r] {
                for s2 in colWindows[s] {
                    let j = r2 * cols + s2
                    var dot: Float = 0
                    for k in 0..<c { dot += call.queries[i * c + k] * call.keys[j * c + k] }
                    let logit = scale * dot
                    largest = max(largest, logit)
                    sparse.columns.append(j)
                    sparse.weights.append(logit)
                }
            }
            var total: Float = 0
            for k in rowStart..<sparse.weights.count {
                sparse.weights[k] = expf(sparse.weights[k] - largest)
                total += sparse.weights[k]
            }
            for k in rowStart..<sparse.weights.count { sparse.weights[k] /= total }
            sparse.offsets.append(sparse.weights.count)
        }
    }
    return sparse
}

/// The option checks `validate_options` and `attend` share: the window side and dilation.
func neighborhoodWindow(_ options: OptionReader) throws -> (kernel: Int, dilation: Int) {
    let kernel = try options.int("kernel_size")
    let dilation = try options.int("dilation")
    guard kernel >= 1, kernel % 2 == 1 else {
        throw PluginFailure("option 'kernel_size' must be an odd number >= 1, got \(kernel)")
    }
    guard dilation >= 1 else { throw PluginFailure("option 'dilation' must be >= 1, got \(dilation)") }
    return (kernel, dilation)
}

let neighborhoodVariant = VariantDefinition(
    name: "neighborhood",
    summary: "neighborhood attention: softmax over a kernel_size x kernel_size window (dilated, shifted at borders) on the token grid",
    options: [
        .int("kernel_size", "7", "window side in tokens (odd); a window covering the grid equals softmax attention"),
        .int("dilation", "1", "step between window positions along each axis"),
        .float("scale", "0", "logit scale; 0 means 1/sqrt(channels)"),
        .int("iterations", "10", "label propagation steps v <- Wv (fixed tokens clamped) when values are fixed"),
    ],
    requirements: [.grid, .unitsEqualTokens],
    capabilities: [.propagationNeedsUnitsEqualTokens],
    validateOptions: { options, count, error, capacity in
        runValidate(options, count, error, capacity) { _ = try neighborhoodWindow($0) }
    },
    attend: { input, output in
        runAttend(input, output) { call in
            let (kernel, dilation) = try neighborhoodWindow(call.options)
            guard call.hasGrid, call.units == call.tokens else {
                throw PluginFailure("neighborhood attention needs the token grid and as many units as tokens")
            }
            let window = min(kernel, call.gridRows) * min(kernel, call.gridCols)
            guard call.tokens <= DenseAttention.maximumDenseWeights / window else {
                throw PluginFailure("\(call.tokens) tokens × \(window) window positions is too many attention weights "
                                    + "(at most \(DenseAttention.maximumDenseWeights)); use a smaller kernel_size")
            }
            let scale = try DenseAttention.scale(requested: try call.options.float("scale"), channels: call.channels)
            let iterations = try call.options.int("iterations")
            let weights = neighborhoodWeights(call, kernel: kernel, dilation: dilation, scale: scale)
            weights.apply(call.values, valueChannels: call.valueChannels, into: call.tokenValues)
            try DenseAttention.propagateLabels(call.tokenValues, call: call, iterations: iterations) { current, next in
                current.withUnsafeBufferPointer { weights.apply($0, valueChannels: call.valueChannels, into: next) }
            }
        }
    })

@_cdecl("probattn_plugin_register")
public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
    registerVariants([neighborhoodVariant], with: registrar)
}
