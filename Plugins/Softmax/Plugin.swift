// The `softmax` attention variant: dot-product attention softmax(scale·Q·Kᵀ)·V (scale = 1/√C unless set), and with
// fixed values, label propagation over the same weights: v ← W·v with fixed tokens clamped (their output blended
// towards the fixed value by their weight m_i), `iterations` times. Propagation reads W as token-by-token weights,
// so it needs as many units as tokens (unit j is token j); with iterations: 0 it only clamps.

import CProbattnPlugin
import ProbattnPluginKit

let softmaxVariant = VariantDefinition(
    name: "softmax",
    summary: "dot-product attention softmax(QK^T*scale)V; with fixed values, label propagation v <- Wv with fixed tokens clamped",
    options: [
        .float("scale", "0", "logit scale; 0 means 1/sqrt(channels)"),
        .int("iterations", "10",
             "label propagation steps v <- Wv (fixed tokens clamped) when values are fixed; needs units == tokens"),
    ],
    capabilities: [.propagationNeedsUnitsEqualTokens],
    attend: { input, output in
        runAttend(input, output) { call in
            let scale = try DenseAttention.scale(requested: try call.options.float("scale"), channels: call.channels)
            let iterations = try call.options.int("iterations")
            let weights = try DenseAttention.softmaxWeights(call, scale: scale)
            try DenseAttention.attend(weights: weights, values: call.values, call: call, iterations: iterations)
        }
    })

@_cdecl("probattn_plugin_register")
public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
    registerVariants([softmaxVariant], with: registrar)
}
