/// One attention call as the adapter and propagator stages make it (one image, one head). The stages talk to
/// attention only through this protocol; `PluginAttention` implements it over a loaded plugin variant.
public protocol TokenAttention: Sendable {
    /// The variant's name (for messages and reports).
    var name: String { get }
    /// True when the variant needs tokens on a grid (`grid` must then be given).
    var needsGrid: Bool { get }

    /// Runs attention. `queries` H×C, `keys` M×C, `values` M×Cv, `fixed` H×(Cv+1) or nil (last column = indicator
    /// or soft observation weight). Returns the token values H×Cv and, when the variant adapted them, the keys M×C.
    func attend(_ call: AttentionCall) throws -> AttentionResult
}

/// The inputs of one `TokenAttention.attend` call.
public struct AttentionCall: Sendable {
    public var tokens: Int
    public var units: Int
    public var channels: Int
    public var valueChannels: Int
    public var queries: [Float]
    public var keys: [Float]
    public var values: [Float]
    public var fixed: [Float]?
    public var grid: TokenGrid?
    public var keysAlreadyAdapted: Bool

    public init(tokens: Int, units: Int, channels: Int, valueChannels: Int, queries: [Float], keys: [Float],
                values: [Float], fixed: [Float]?, grid: TokenGrid?, keysAlreadyAdapted: Bool) {
        self.tokens = tokens
        self.units = units
        self.channels = channels
        self.valueChannels = valueChannels
        self.queries = queries
        self.keys = keys
        self.values = values
        self.fixed = fixed
        self.grid = grid
        self.keysAlreadyAdapted = keysAlreadyAdapted
    }
}

/// What one attention call returns.
public struct AttentionResult: Sendable {
    /// H × Cv.
    public var tokenValues: [Float]
    /// M × C when the variant adapted the keys, else nil.
    public var adaptedKeys: [Float]?

    public init(tokenValues: [Float], adaptedKeys: [Float]?) {
        self.tokenValues = tokenValues
        self.adaptedKeys = adaptedKeys
    }
}
