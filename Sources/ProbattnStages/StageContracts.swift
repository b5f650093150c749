import ProbattnImaging

// The segmentation pipeline, as the daemon and `probattn eval` run it:
//
//   image bytes ──decode──▶ RGBImage ──ImageEncoder──▶ EncodedImage ──AttentionAdapter──▶ AdaptedImage
//                                       (once per image, cached)        (once per image: key adaptation, cached)
//
//   clicks ──────────────────────────────────────────────▶ Propagator(encoded, adapted, clicks) ──▶ SegmentationResult
//                                                           (per click: fixed values, value propagation, upsampling)
//
//   every change ──session core──▶ SessionWriter (open / append / undo / close, each committed before the reply)
//
// Every stage call gets a `StageContext` (logger, metrics, compute budget). Each stage type is registered by a
// `StageDescriptor` (type name, role, typed configuration, factory) in the `StageRegistry` of its role.

/// A value from a stage's `options:` block in the config (YAML scalars, lists, and the mapping of a nested stanza
/// such as the adapter's `variant: {type: ..., ...}`).
public enum ConfigValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case list([ConfigValue])
    case mapping([String: ConfigValue])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let v): return v
        case .list(let vs): return "[" + vs.map(\.description).joined(separator: ", ") + "]"
        case .mapping(let m):
            return "{" + m.keys.sorted().map { "\($0): \(m[$0]!.description)" }.joined(separator: ", ") + "}"
        }
    }
}

/// The role a stage plays in the pipeline.
public enum StageRole: String, Sendable, CaseIterable, Codable {
    case encoder, adapter, propagator, writer
}

/// One stage as written in the config: its role, the `type` naming its implementation, and its options.
public struct StageSpec: Sendable, Equatable {
    public var role: StageRole
    public var type: String
    public var options: [String: ConfigValue]

    public init(role: StageRole, type: String, options: [String: ConfigValue] = [:]) {
        self.role = role
        self.type = type
        self.options = options
    }
}

/// Tokens on a regular grid (row-major): token `r * cols + c` is at grid row `r`, column `c`.
public struct TokenGrid: Sendable, Equatable {
    public var rows: Int
    public var cols: Int
    public init(rows: Int, cols: Int) { self.rows = rows; self.cols = cols }
}

/// What an encoder produces for one image.
public struct EncodedImage: Sendable {
    /// The decoded image, kept for edge-aware upsampling in the propagator.
    public var image: RGBImage
    /// H, the number of tokens.
    public var tokenCount: Int
    /// C, the feature (query/key) dimension.
    public var featureDimension: Int
    /// H × C, row-major: the token queries.
    public var features: [Float]
    /// Set when tokens lie on a regular grid (neighbourhood and context-pooling attention need it).
    public var grid: TokenGrid?
    /// The pixel footprint of every token: `tokenOfPixel[y * width + x]` is the token that pixel belongs to.
    public var tokenOfPixel: [Int32]

    /// H × 3, row-major: the mean CIELAB colour of every token's footprint (used by edge-aware upsampling). Empty
    /// when the encoder does not provide it; the propagator then computes it from the image.
    public var tokenColours: [Float]
    /// H × 2, row-major: the (x, y) centre of every token's footprint in pixels. Empty when not provided.
    public var tokenCentres: [Float]

    public init(image: RGBImage, tokenCount: Int, featureDimension: Int, features: [Float], grid: TokenGrid?,
                tokenOfPixel: [Int32], tokenColours: [Float] = [], tokenCentres: [Float] = []) {
        self.image = image
        self.tokenCount = tokenCount
        self.featureDimension = featureDimension
        self.features = features
        self.grid = grid
        self.tokenOfPixel = tokenOfPixel
        self.tokenColours = tokenColours
        self.tokenCentres = tokenCentres
    }

    /// Bytes held, for the cache's memory budget.
    public var memoryBytes: Int {
        image.pixels.count + (features.count + tokenOfPixel.count + tokenColours.count + tokenCentres.count) * 4
    }
}

/// What the adapter produces once per image, before any feedback: the units of the mixture (keys, possibly adapted
/// to the image by EM) and anything else that does not depend on clicks.
public struct AdaptedImage: Sendable {
    /// M, the number of units.
    public var unitCount: Int
    /// M × C, row-major.
    public var keys: [Float]
    /// True when `keys` were adapted (so the propagator must not adapt them again).
    public var keysAdapted: Bool
    /// H × `channels`, row-major: the queries the attention variant compares with `keys`, when the adapter
    /// re-embedded the encoder's features for the variant (`VariantAttentionAdapter.QueryEmbedding.distance`); nil
    /// when the variant works on the encoder's features themselves.
    public var queries: [Float]?
    /// The query/key dimension when `queries` is set (nil: the encoder's `featureDimension`).
    public var channels: Int?
    /// The variant's token-to-unit weights W (H × M, sparse), when it gives them (`AttentionOutput.weights`: its
    /// output for any clicks is then the two-hop propagation through W, so the propagator spreads clicks through W
    /// itself instead of calling the variant on every EM round). nil for variants that do not.
    public var weights: SparseWeights?

    public init(unitCount: Int, keys: [Float], keysAdapted: Bool, queries: [Float]? = nil, channels: Int? = nil,
                weights: SparseWeights? = nil) {
        self.unitCount = unitCount
        self.keys = keys
        self.keysAdapted = keysAdapted
        self.queries = queries
        self.channels = channels
        self.weights = weights
    }

    public var memoryBytes: Int { (keys.count + (queries?.count ?? 0)) * 4 + (weights?.memoryBytes ?? 0) }
}

/// One annotator click in image pixel coordinates, with the index of its class in the session's class list.
public struct Click: Sendable, Equatable, Codable {
    public var x: Int
    public var y: Int
    public var classIndex: Int
    public init(x: Int, y: Int, classIndex: Int) { self.x = x; self.y = y; self.classIndex = classIndex }
}

/// The propagator's answer for one set of clicks.
/// What a propagator leaves for its next call on the same prepared image (`BeliefPropagator`'s is
/// `PropagationState`); the session core keeps the newest one per session and counts it against the cache.
public protocol PropagatorState: Sendable {
    /// Bytes held, for the cache's memory budget.
    var memoryBytes: Int { get }
}

public struct SegmentationResult: Sendable {
    /// Full-resolution class map (class indices into the session's class list).
    public var mask: LabelMask
    /// Seconds spent in the propagator.
    public var seconds: Double
    /// What the next propagation of the same image may start from (`Propagator.propagate(…previous:)`); nil from a
    /// propagator without an incremental path.
    public var state: (any PropagatorState)?
    /// When the propagation started from a previous state: the rectangle outside which `mask` equals that state's
    /// mask (pixels inside may or may not have changed; empty when none did). Nil: any pixel may have changed.
    public var changed: PixelRect?

    public init(mask: LabelMask, seconds: Double, state: (any PropagatorState)? = nil, changed: PixelRect? = nil) {
        self.mask = mask
        self.seconds = seconds
        self.state = state
        self.changed = changed
    }
}

/// Turns an image into tokens. Called once per image (then cached) with the context of the request that opened it;
/// must be thread-safe. Parallel work runs through `context.budget` (`ComputeBudget.forEachChunk`), so the tokens
/// are the same for every budget.
public protocol ImageEncoder: Sendable {
    func encode(_ image: RGBImage, context: StageContext) throws -> EncodedImage
}

/// Prepares the units of the mixture for an image. Called once per image after encoding, before any click
/// (key adaptation happens here), with the context of the request that opened the image; must be thread-safe and
/// give the same units for every `context.budget`.
public protocol AttentionAdapter: Sendable {
    func adapt(_ encoded: EncodedImage, context: StageContext) throws -> AdaptedImage
}

/// Turns clicks into a full-resolution mask. Called on every feedback with *all* current clicks of the image in log
/// order, the oldest first (the stage is stateless over the accumulated clicks, which makes undo and multi-annotator
/// merging trivial), and the context of that request, whose `clickTieBreak` says which of two equally near clicks of
/// different classes wins; must be thread-safe, and its mask must be the same for every `context.budget`.
/// `classCount` is the number of classes of the session (2 for object/background).
public protocol Propagator: Sendable {
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                   context: StageContext) throws -> SegmentationResult
    /// The same with tokens fixed to a class besides the clicks' (`FixedTokens`: a prompt box fixes the tokens
    /// entirely outside it to background). A token a click reaches keeps the click's value. The default
    /// implementation handles an empty set by the call above and throws for any other: a propagator that honours
    /// fixed tokens implements this.
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                   classCount: Int, context: StageContext) throws -> SegmentationResult
    /// The same, given the state an earlier propagation of the same prepared image returned
    /// (`SegmentationResult.state`), so the mask is recomputed only where it can change. The default implementation
    /// ignores `previous`.
    func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                   classCount: Int, context: StageContext, previous: (any PropagatorState)?) throws
        -> SegmentationResult
}

extension Propagator {
    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int, context: StageContext) throws -> SegmentationResult {
        guard fixed.isEmpty else {
            throw SegmentationError(.invalidInput, "this propagator (\(type(of: self))) does not take fixed tokens")
        }
        return try propagate(encoded: encoded, adapted: adapted, clicks: clicks, classCount: classCount,
                             context: context)
    }
}

// Calls outside a request (tools, tests, examples) may leave the context out: they run with
// `StageContext.standalone` (one thread, no metrics).
extension ImageEncoder {
    public func encode(_ image: RGBImage) throws -> EncodedImage { try encode(image, context: .standalone) }
}

extension AttentionAdapter {
    public func adapt(_ encoded: EncodedImage) throws -> AdaptedImage { try adapt(encoded, context: .standalone) }
}

extension Propagator {
    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int) throws
        -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, classCount: classCount,
                      context: .standalone)
    }

    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int) throws -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, classCount: classCount,
                      context: .standalone)
    }

    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int, context: StageContext, previous: (any PropagatorState)?) throws
        -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, classCount: classCount,
                      context: context)
    }
}

/// Tokens fixed to a class before propagation, in addition to the tokens the clicks fix: they are observed with
/// weight 1 like clicked tokens, but a token that a click reaches keeps the click's value instead.
public struct FixedTokens: Sendable, Equatable {
    /// token index → class index.
    public var classOf: [Int32: Int]

    public init(classOf: [Int32: Int] = [:]) { self.classOf = classOf }

    public var isEmpty: Bool { classOf.isEmpty }

    /// The tokens of `encoded` none of whose pixels lies inside the rectangle `x0...x1` × `y0...y1` (pixels,
    /// inclusive), each fixed to `classIndex`.
    public static func outside(x0: Int, y0: Int, x1: Int, y1: Int, of encoded: EncodedImage, classIndex: Int)
        -> FixedTokens {
        let w = encoded.image.width, h = encoded.image.height
        var inside = [Bool](repeating: false, count: encoded.tokenCount)
        if x0 <= x1, y0 <= y1 {
            for y in max(0, y0)...min(h - 1, y1) {
                for x in max(0, x0)...min(w - 1, x1) { inside[Int(encoded.tokenOfPixel[y * w + x])] = true }
            }
        }
        var classOf: [Int32: Int] = [:]
        for t in 0..<encoded.tokenCount where !inside[t] { classOf[Int32(t)] = classIndex }
        return FixedTokens(classOf: classOf)
    }
}
