// The `probabilistic` attention variant: ProbattnCore's probabilistic attention operator (spec §1; arXiv 2106.15338)
// on one head in token-major layout, with uniform precisions α and β:
//   - weights W_ij ∝ π_j exp(−α/2‖q_i − ζ_j‖²), with magnitude priors log π_j = α/2‖ζ_j‖² (+ β/2‖μ_j‖²), so that
//     with β = 0 and no adaptation W = softmax(α q_i·ζ_j) (dot-product attention at α = 1/√C);
//   - online key adaptation (EM on the keys, `key_adaptation_iterations` steps, Gaussian prior of precision
//     `key_prior_precision` on every key channel; 0 means no prior, the ML update);
//   - value belief propagation from the fixed tokens (`value_propagation_iterations` steps, prior precision
//     `value_prior_precision`; 0 means no prior);
//   - `prior_mode`: `textbook` centres the priors on the initial keys/values, `reference` on the previous iterate as
//     the reference layer does (they agree for one iteration);
//   - `clamp_fixed`: outputs at fixed tokens are blended to their fixed values by their indicator weight.
// The fixed values' channels are masked by the indicator, so free tokens' channels are ignored. With
// PROBATTN_KEYS_ALREADY_ADAPTED the keys are used as given (no adaptation). Returns the adapted keys and values, and,
// when the host asks (ABI 2) and the output is the two-hop propagation through weights that depend on queries and keys
// alone (beta = 0 or no magnitude priors, at least one propagation step, no value prior, no clamping), the weights W.

import CProbattnPlugin
import ProbattnCore
import ProbattnPluginKit

/// `prior_mode` values.
private func priorCentre(_ mode: String) throws -> PriorCentre {
    switch mode {
    case "textbook": return .initial
    case "reference": return .previousIterate
    default: throw PluginFailure("option 'prior_mode' must be 'textbook' or 'reference', got '\(mode)'")
    }
}

/// A rows × columns tensor filled with `precision`, or nil (no prior) when it is 0.
private func priorTensor(_ precision: Double, rows: Int, columns: Int, option: String) throws -> Tensor? {
    guard precision.isFinite, precision >= 0 else {
        throw PluginFailure("option '\(option)' must be a finite number >= 0 (0 means no prior), got \(precision)")
    }
    return precision > 0 ? Tensor(shape: [rows, columns], repeating: Float(precision)) : nil
}

private func tensor(_ buffer: UnsafeBufferPointer<Float>, rows: Int, columns: Int) throws -> Tensor {
    try Tensor(rows: rows, columns: columns, storage: Array(buffer))
}

let probabilisticVariant = VariantDefinition(
    name: "probabilistic",
    summary: "probabilistic attention: Gaussian-mixture weights with online key adaptation and value belief propagation from fixed tokens (arXiv 2106.15338)",
    options: [
        .float("alpha", "0", "query/key precision; 0 means 1/sqrt(channels) (dot-product attention scale)"),
        .float("beta", "0", "value precision (with magnitude priors, beta > 0 adds beta/2*|mu_j|^2 to the logits)"),
        .bool("magnitude_priors", "true", "log prior of unit j = alpha/2*|zeta_j|^2 (+ beta/2*|mu_j|^2): dot-product form"),
        .int("key_adaptation_iterations", "1", "EM steps adapting the keys to the queries (0: none)"),
        .float("key_prior_precision", "0", "precision of the Gaussian prior on each key channel (0: no prior, ML steps)"),
        .int("value_propagation_iterations", "1", "belief propagation steps from the fixed tokens to the unit values"),
        .float("value_prior_precision", "0", "precision of the Gaussian prior on each value channel (0: no prior)"),
        .string("prior_mode", "textbook", "textbook: priors centred on the initial keys/values; reference: on the previous iterate"),
        .bool("clamp_fixed", "true", "blend outputs at fixed tokens to their fixed values by their indicator weight"),
    ],
    capabilities: [.comparesByDistance, .givesWeights],
    attend: { input, output in
        runAttend(input, output) { call in
            let options = call.options
            let alphaOption = try options.float("alpha")
            let beta = try options.float("beta")
            guard alphaOption.isFinite, alphaOption >= 0 else {
                throw PluginFailure("option 'alpha' must be a finite number >= 0 (0 means 1/sqrt(channels)), got \(alphaOption)")
            }
            guard beta.isFinite, beta >= 0 else {
                throw PluginFailure("option 'beta' must be a finite number >= 0, got \(beta)")
            }
            let alpha = alphaOption > 0 ? Float(alphaOption) : 1 / Float(call.channels).squareRoot()
            let keyIterations = try options.int("key_adaptation_iterations")
            let valueIterations = try options.int("value_propagation_iterations")
            guard keyIterations >= 0 else {
                throw PluginFailure("option 'key_adaptation_iterations' must be >= 0, got \(keyIterations)")
            }
            guard valueIterations >= 0 else {
                throw PluginFailure("option 'value_propagation_iterations' must be >= 0, got \(valueIterations)")
            }
            let adaptKeys = keyIterations > 0 && !call.keysAlreadyAdapted
            let operatorOptions = ProbabilisticAttentionOptions(
                magnitudePriors: try options.bool("magnitude_priors"),
                keyAdaptation: adaptKeys,
                keyAdaptationIterations: adaptKeys ? keyIterations : 0,
                valuePropagationIterations: valueIterations,
                priorCentre: try priorCentre(try options.string("prior_mode")),
                clampFixedOutputs: try options.bool("clamp_fixed"),
                maskFixedValuesByIndicator: true, threads: call.threads)
            let (h, m, c, cv) = (call.tokens, call.units, call.channels, call.valueChannels)
            let inputs = TokenMajorInputs(
                queries: try tensor(call.queries, rows: h, columns: c),
                keys: try tensor(call.keys, rows: m, columns: c),
                values: try tensor(call.values, rows: m, columns: cv),
                alpha: .uniform(alpha), beta: .uniform(Float(beta)),
                fixed: try call.fixed.map { try tensor($0, rows: h, columns: cv + 1) },
                keyPriorPrecision: try priorTensor(try options.float("key_prior_precision"), rows: m, columns: c,
                                                   option: "key_prior_precision"),
                valuePriorPrecision: try priorTensor(try options.float("value_prior_precision"), rows: m,
                                                     columns: cv, option: "value_prior_precision"))
            let attention = ProbabilisticAttention(options: operatorOptions)
            let result = try attention.attendTokenMajor(inputs)
            guard result.tokenValues.count == h * cv, result.adaptedKeys.count == m * c,
                  result.adaptedValues.count == m * cv else {
                throw PluginFailure("the operator returned unexpected shapes")
            }
            _ = call.tokenValues.initialize(from: result.tokenValues.storage)
            if let keys = call.adaptedKeys {
                _ = keys.initialize(from: result.adaptedKeys.storage)
                call.markKeysAdapted()
            }
            if let values = call.adaptedValues {
                _ = values.initialize(from: result.adaptedValues.storage)
                call.markValuesAdapted()
            }
            // The weights, when the host asks and they determine the output for any fixed values (see the header).
            let weightsDependOnValues = beta > 0 && operatorOptions.magnitudePriors
            if let weights = call.weights, !weightsDependOnValues, valueIterations >= 1,
               inputs.valuePriorPrecision == nil, !operatorOptions.clampFixedOutputs {
                var adapted = inputs
                adapted.keys = result.adaptedKeys
                adapted.values = result.adaptedValues
                adapted.fixed = nil
                let w = try attention.responsibilities(adapted)
                guard w.count == h * m else { throw PluginFailure("the operator returned unexpected weight shapes") }
                _ = weights.initialize(from: w.storage)
                call.markWeightsWritten()
            }
        }
    })

@_cdecl("probattn_plugin_register")
public func probattnPluginRegister(_ registrar: UnsafePointer<probattn_registrar>?) -> Int32 {
    registerVariants([probabilisticVariant], with: registrar)
}
