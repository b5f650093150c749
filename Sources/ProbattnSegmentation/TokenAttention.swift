import ProbattnPluginHost
import ProbattnStages

/// Attention as the adapter and propagator stages call it (one image, one head). The stages talk to attention only
/// through this protocol, over the plugin host's own call types (`AttentionInput`, `AttentionOutput`):
/// `PluginAttention` implements it over a loaded plugin variant, and tests substitute plain reference code.
public protocol TokenAttention: Sendable {
    /// The variant's name (for messages and reports).
    var name: String { get }
    /// True when the variant needs tokens on a grid (`gridRows`/`gridCols` must then be given).
    var needsGrid: Bool { get }
    /// True when the variant needs one unit per token (M = H, unit j at token j).
    var needsUnitsEqualTokens: Bool { get }

    /// Runs attention: `queries` H×C, `keys` M×C, `values` M×Cv, `fixed` H×(Cv+1) or nil (last column = indicator
    /// or soft observation weight). Returns the token values H×Cv and, when the variant adapted them, the keys M×C.
    /// Called once per image by the adapter and once per EM round by the propagator; must be reentrant.
    func attend(_ input: AttentionInput) throws -> AttentionOutput
}

extension AttentionInput {
    /// The host's call with the grid given as a `TokenGrid` (nil when tokens have no grid).
    init(tokens: Int, units: Int, channels: Int, valueChannels: Int, queries: [Float], keys: [Float],
         values: [Float], fixed: [Float]?, grid: TokenGrid?, keysAlreadyAdapted: Bool) {
        self.init(tokens: tokens, units: units, channels: channels, valueChannels: valueChannels, queries: queries,
                  keys: keys, values: values, fixed: fixed, gridRows: grid?.rows ?? 0, gridCols: grid?.cols ?? 0,
                  keysAlreadyAdapted: keysAlreadyAdapted)
    }
}
