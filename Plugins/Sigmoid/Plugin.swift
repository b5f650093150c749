// The `sigmoid` attention variant (arXiv 2409.04431): out = σ(scale·Q·Kᵀ + b)·V with σ elementwise and rows not
// normalised. b = bias − ln(M) when length_bias is true (the paper's b = −log n, n = number of keys), else b = bias.
// With fixed values: label propagation over the same (unnormalised) weights, v ← W·v with fixed tokens clamped,
// `iterations` times (default 1: rows are not normalised, so repeated steps can grow or shrink the values).

import CProbattnPlugin
import ProbattnPluginKit
#if canImport(Glibc)
import Glibc
#endif

let sigmoidVariant = VariantDefinition(
    name: "sigmoid",
    summary: "sigmoid attention sigmoid(QK^T*scale + b)V, b = -ln(units) by default, rows not normalised (arXiv 2409.04431)",
    options: [
        .float("scale", "0", "logit scale; 0 means 1/sqrt(channels)"),
        .float("bias", "0", "added to every logit (on top of -ln(units) when length_bias is true)"),
        .bool("length_bias", "true", "subtract ln(units) from every logit, the paper's b = -log n"),
        .int("iterations", "1",
             "label propagation steps v <- Wv (fixed tokens clamped) when values are fixed; needs units == tokens"),
    ],
    capabilities: [.propagationNeedsUnitsEqualTokens],
    attend: { input, output in
        runAttend(input, output) { call in
            let scale = try DenseAttention.scale(requested: try call.options.float("scale"), channels: call.channels)
            let bias = try call.options.float("bias")
            guard !bias.isNaN, bias < .infinity else { throw PluginFailure("option 'bias' must be a number below +inf") }
            let b = bias - (try call.options.bool("length_bias") ? log(Double(call.units)) : 0)
            let iterations = try call.options.int("iterations")
            var weights = try DenseAttention.productTransposed(call.queries, rows: call.tokens, call.keys,
                                                           rowsB: call.units, inner: call.channels, scale: scale)
            let shift = Float(max(b, -Double(Float.greatestFiniteMagnitude)))
            weights.withUnsafeMutableBufferPointer { logits in
                for k in logits.indices {
                    // σ(x) = 1 / (1 + e^(−x)); e^(−x) overflows to +inf for very negative x, which gives exactly 0.
                    logits[k] = 1 / (1 + expf(-(logits[k] + shift)))
                }
            }
            try DenseAttention.attend(weights: weights, values: call.values, call: call, iterations: iterations)
        }
    })

@_cdecl("probattn_plugin_register")
public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
    registerVariants([sigmoidVariant], with: registrar)
}
