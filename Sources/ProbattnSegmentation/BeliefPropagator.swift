import Foundation
import ProbattnCore
import ProbattnImaging
import ProbattnStages
import ProbattnPluginHost

/// The propagator stage (`type: belief_propagation`): turns the clicks of an image into a full-resolution mask.
///
/// 1. Every click fixes the value of the tokens whose footprint comes within `click_radius` pixels of it (always
///    including the token under the click) to the one-hot of its class, with indicator 1. A token reached by clicks of
///    several classes has no single observed class: it is left to the propagation like an unclicked token (step 2),
///    and split below the token for the pixels (step 3 takes, as its distribution, the share of its footprint near
///    the clicks that lies nearest to each class's clicks; of two equally near, the one `clickTieBreak` picks), so no
///    click is overwritten. Tokens the caller fixes (`FixedTokens`: a prompt box's outside) are fixed to their class,
///    unless a click reaches them.
/// 2. Value belief propagation with the unclicked tokens as missing data of the same mixture: EM over
///    `em_iterations` rounds. Each round gives the variant, as soft observations, the clicked tokens at weight 1 and
///    every unclicked token's current class posterior at weight `unlabelled_weight` (plus, for tokens on the image
///    border, the background class at weight `border_weight`); the variant's M-step re-estimates the unit values from
///    these and its output (E-step) is each token's new class posterior. The first round starts from the neutral
///    posterior 1/K, which also acts as a neutral value prior. When the adapter cached the variant's weights W
///    (`AdaptedImage.weights`), each round is the same two-hop propagation computed here through W
///    (`MixturePropagation`), without calling the variant.
/// 3. Token class distributions become a pixel mask: pixels inside a token whose grid neighbours all agree take that
///    class; the others are classified by a joint-bilateral average of the neighbouring tokens' distributions
///    (weights from the pixel's distance to each token's centre and its CIELAB distance to the token's colour).
/// 4. A disc of `click_disc_radius` pixels around every click is forced to the class of the nearest click (of two
///    equally near, the one `clickTieBreak` picks: the later in the list, or with `first_wins` the earlier), and
///    every clicked pixel to its own click's class, so every clicked pixel keeps its class.
/// 5. With `refinement: graph_cut` (the default with bilateral upsampling; `none` is about 2.5 times as fast per click
///    and needs a third more clicks), the pixels of step 3's band within `refinement_reach` pixels of a label change
///    are relabelled together by a minimum cut that trades each pixel's class probability from step 3 against a
///    contrast-sensitive smoothness term (`BoundaryRefinement`), so the mask follows the colour edges inside
///    tokens; step 4's discs stay fixed.
///
/// **Incremental path** (`propagate(…previous:)`, extension in IncrementalPropagation.swift): given the
/// `PropagationState` of an earlier propagation of the same prepared image, steps 1 and 2 run as above (step 1 only
/// for appended clicks, with the earlier clicks' tokens and split shares kept), and steps 3–5 only on the rectangle
/// where the mask can change: tokens whose class flipped and their neighbours, unsettled tokens next to a token whose
/// distribution moved by more than `changeEpsilon` (1e-3), the discs of added or removed clicks, plus the
/// refinement's halo (`refinement_reach` + 2 token strides). Outside it the previous mask is kept, and the click discs
/// inside it are found through an index of the clicks by cell. Without a usable state the whole image is the rectangle (the
/// from-scratch path). The two paths agree except at few pixels (`IncrementalPropagationTests`: without the
/// refinement none on GrabCut images; with it at most 0.01 % of the pixels, where the minimum cut inside the
/// rectangle ends differently from the whole image's); docs/PERFORMANCE.md has the figures.
///
/// docs/SEGMENTATION.md describes the model and how each default was chosen. Called after every click with all the
/// clicks in force, in log order (the session core resolves clicks on the same pixel before, and its conflict policy
/// gives `context.clickTieBreak`), so the last click is the newest whatever the policy; holds no state of its own
/// (the state travels in the result) and is thread-safe.
@dynamicMemberLookup
public struct BeliefPropagator: Propagator {
    /// The stage type name in the config.
    public static let typeName = "belief_propagation"

    public enum Upsampling: String, Sendable, CaseIterable {
        /// Joint-bilateral near class boundaries (the default).
        case bilateral
        /// Every pixel takes its token's class.
        case nearest
    }

    public enum Refinement: String, Sendable, CaseIterable {
        /// The band's pixels are relabelled together by a minimum cut (`BoundaryRefinement`).
        case graphCut = "graph_cut"
        /// Each pixel keeps the class the upsampling gave it.
        case none
    }

    public let attention: any TokenAttention
    /// The stage's settings, its config options (`Configuration`, with their defaults and meanings);
    /// `propagator.clickRadius` and the like read and write them (`subscript(dynamicMember:)`).
    public var configuration: Configuration
    /// Two classes through cached weights without the neighbour coupling: each EM round's gather over W and the
    /// next round's scatter run in one pass over W's rows (`MixturePropagation.fusedTwoClassRounds`), with the
    /// same sums in the same order as the round-by-round loop, which `false` runs instead (the tests compare them).
    var fusesRounds = true
    /// Which of two equally near clicks of different classes gives a pixel its class (steps 1 and 4): the call's
    /// `StageContext.clickTieBreak`, which `propagate` sets on the copy it runs.
    var clickTieBreak: ClickTieBreak = .later

    /// `propagator.option` for `propagator.configuration.option`.
    public subscript<Value>(dynamicMember keyPath: WritableKeyPath<Configuration, Value>) -> Value {
        get { configuration[keyPath: keyPath] }
        set { configuration[keyPath: keyPath] = newValue }
    }

    /// The previous-posterior prior when it is on.
    var previousPosteriorPrior: PreviousPosteriorPrior? {
        let c = configuration
        return c.previousPosteriorWeight > 0
            ? PreviousPosteriorPrior(weight: Float(c.previousPosteriorWeight), radius: c.previousPosteriorRadius,
                                     distance: c.previousPosteriorDistance)
            : nil
    }

    /// The stage with `configuration` (the defaults when not given), calling `attention` in its propagation rounds.
    public init(attention: any TokenAttention, configuration: Configuration = Configuration()) {
        self.attention = attention
        self.configuration = configuration
    }

    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], classCount: Int,
                          context: StageContext) throws -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: FixedTokens(), classCount: classCount,
                      context: context)
    }

    /// With `fixed`, step 1 also fixes those tokens (each to its class, indicator 1) unless a click reaches them;
    /// the other steps are unchanged. Computes the mask from scratch; steps 2, 3 and 5 run their chunks within
    /// `context.budget`, and the mask is the same for every budget.
    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int, context: StageContext) throws -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, classCount: classCount,
                      context: context, previous: nil)
    }

    // MARK: - Step 1: clicks → fixed tokens

    /// The tokens the clicks reach: `classOf[t]` is the class of token `t` when every click reaching it has that
    /// class (the token is then fixed), `none` when no click reaches it, `mixed` when clicks of several classes do (the
    /// token is then not fixed in the propagation, and `shares[t]` is its split for the pixels).
    struct ClickedTokens: Sendable {
        static let none: Int32 = -1
        static let mixed: Int32 = -2
        var classOf: [Int32]
        /// For mixed tokens: the class distribution (K values) they are fixed to.
        var shares: [Int32: [Float]] = [:]

        /// Whether the propagation holds token `t` fixed (all clicks reaching it agree).
        func isFixed(_ t: Int) -> Bool { classOf[t] >= 0 }

        /// The value of class `c` of a clicked token: its class's one-hot, or its shares when split.
        func value(_ t: Int, _ c: Int, classCount k: Int) -> Float {
            let fixed = classOf[t]
            if fixed == Self.mixed { return shares[Int32(t)]?[c] ?? 1 / Float(k) }
            return c == Int(fixed) ? 1 : 0
        }
    }

    /// The tokens whose footprint has a pixel within `clickRadius` of a click, plus the token under every click, with
    /// the class they are fixed to. A token reached by clicks of different classes is split: each of its pixels near
    /// those clicks goes to the class of the nearest of them (ties: by `clickTieBreak`), and the token's value is the
    /// share of each class.
    func clickedTokens(encoded: EncodedImage, clicks: [Click], classCount k: Int) -> ClickedTokens {
        var clicked = ClickedTokens(classOf: [Int32](repeating: ClickedTokens.none, count: encoded.tokenCount))
        var reaching: [Int32: [Int]] = [:]
        addClickedTokens(&clicked, reaching: &reaching, encoded: encoded, clicks: clicks, from: 0, classCount: k)
        return clicked
    }

    /// Step 1 for the clicks `clicks[start...]`, added to `clicked` (the state of `clicks[..<start]`) and `reaching`
    /// (token → positions in `clicks` of the clicks reaching it): O(new clicks), with the shares of the mixed tokens
    /// the new clicks reach computed again.
    func addClickedTokens(_ clicked: inout ClickedTokens, reaching: inout [Int32: [Int]], encoded: EncodedImage,
                          clicks: [Click], from start: Int, classCount k: Int) {
        let w = encoded.image.width, h = encoded.image.height
        let radius = configuration.clickRadius
        let r = Int(radius.rounded(.down)), r2 = radius * radius
        var touched = Set<Int32>()
        for index in start..<clicks.count {
            let click = clicks[index]
            var reached: Set<Int32> = [encoded.tokenOfPixel[click.y * w + click.x]]
            for y in max(0, click.y - r)...min(h - 1, click.y + r) {
                for x in max(0, click.x - r)...min(w - 1, click.x + r) {
                    let dx = Double(x - click.x), dy = Double(y - click.y)
                    if dx * dx + dy * dy <= r2 { reached.insert(encoded.tokenOfPixel[y * w + x]) }
                }
            }
            let c = Int32(click.classIndex)
            for t in reached {
                let current = clicked.classOf[Int(t)]
                if current == ClickedTokens.none {
                    clicked.classOf[Int(t)] = c
                } else if current != c {
                    clicked.classOf[Int(t)] = ClickedTokens.mixed
                }
                reaching[t, default: []].append(index)
                touched.insert(t)
            }
        }
        let stride = max(1, Int((Double(w * h) / Double(max(1, encoded.tokenCount))).squareRoot().rounded(.up)))
        for t in touched where clicked.classOf[Int(t)] == ClickedTokens.mixed {
            clicked.shares[t] = splitShares(token: t, clicks: reaching[t, default: []].map { clicks[$0] },
                                            encoded: encoded, reach: 2 * stride + r, classCount: k)
        }
    }

    /// The class shares of a token reached by clicks of several classes (`clicks` in list order): its pixels within
    /// `reach` of any of those clicks, each given to the nearest click (ties: by `clickTieBreak`).
    private func splitShares(token: Int32, clicks: [Click], encoded: EncodedImage, reach: Int, classCount k: Int)
        -> [Float] {
        let w = encoded.image.width, h = encoded.image.height
        var counts = [Float](repeating: 0, count: k)
        let x0 = max(0, clicks.map(\.x).min()! - reach), x1 = min(w - 1, clicks.map(\.x).max()! + reach)
        let y0 = max(0, clicks.map(\.y).min()! - reach), y1 = min(h - 1, clicks.map(\.y).max()! + reach)
        for y in y0...y1 {
            for x in x0...x1 where encoded.tokenOfPixel[y * w + x] == token {
                var best = 0, bestDistance = Int.max
                for (i, click) in clicks.enumerated() {
                    let d = (x - click.x) * (x - click.x) + (y - click.y) * (y - click.y)
                    if clickTieBreak.takes(d, over: bestDistance) { best = i; bestDistance = d }
                }
                counts[clicks[best].classIndex] += 1
            }
        }
        let total = counts.reduce(0, +)
        if total == 0 {
            for click in clicks { counts[click.classIndex] += 1 }
            return counts.map { $0 / Float(clicks.count) }
        }
        return counts.map { $0 / total }
    }

    /// Tokens whose footprint touches the image border.
    func borderTokens(encoded: EncodedImage) -> [Bool] {
        let w = encoded.image.width, h = encoded.image.height
        var border = [Bool](repeating: false, count: encoded.tokenCount)
        for x in 0..<w {
            border[Int(encoded.tokenOfPixel[x])] = true
            border[Int(encoded.tokenOfPixel[(h - 1) * w + x])] = true
        }
        for y in 0..<h {
            border[Int(encoded.tokenOfPixel[y * w])] = true
            border[Int(encoded.tokenOfPixel[y * w + w - 1])] = true
        }
        return border
    }

    // MARK: - Step 2: value belief propagation with the unclicked tokens as missing data

    /// Step 2 for the tokens `clicked` fixes. `previousPosterior`, when given, is the previous-posterior prior's
    /// evidence: per token the distribution observed (`tokens × K`) and its weight (`tokens`).
    func propagateValues(encoded: EncodedImage, adapted: AdaptedImage, clicked: ClickedTokens, classCount k: Int,
                         budget: ComputeBudget = .single,
                         previousPosterior: (values: [Float], weights: [Float])? = nil) throws -> [Float] {
        let h = encoded.tokenCount, m = adapted.unitCount
        let neutral = 1 / Float(k)
        var posterior = [Float](repeating: neutral, count: h * k)
        let c = configuration
        let border = c.borderWeight > 0 && k > 1 ? borderTokens(encoded: encoded) : [Bool](repeating: false, count: h)
        let background = c.borderClass < 0 ? k - 1 : min(c.borderClass, k - 1)
        let wU = Float(c.unlabelledWeight), wB = Float(c.borderWeight)
        // Each round's propagation: through W cached by the adapter (the variant's output is then the two-hop
        // propagation through it: two sparse passes here), else a call of the variant, with the queries the adapter
        // prepared for it (re-embedded for a dot-product variant) or the encoder's features.
        let propagation: any ValuePropagation = MixturePropagation(weights: adapted.weights, tokens: h, units: m)
            ?? VariantPropagation(attention: attention, call: AttentionInput(
                tokens: h, units: m, channels: adapted.channels ?? encoded.featureDimension, valueChannels: k,
                queries: adapted.queries ?? encoded.features, keys: adapted.keys,
                values: [Float](repeating: neutral, count: m * k), fixed: nil, grid: encoded.grid,
                keysAlreadyAdapted: adapted.keysAdapted))
        let rounds = c.emIterations
        var fixed = [Float](repeating: 0, count: h * (k + 1))
        var update = [Float](repeating: 0, count: k)
        let omega = Float(c.relaxation)
        let coupling = c.neighbourWeight > 0
            ? NeighbourCoupling(encoded: encoded, features: adapted.queries ?? encoded.features,
                                channels: adapted.channels ?? encoded.featureDimension, kappa: Float(c.neighbourWeight))
            : nil
        let prior = c.backgroundPriorWeight > 0 && k > 1
            ? BackgroundPrior(weight: Float(c.backgroundPriorWeight), radius: c.backgroundPriorRadius,
                              distance: c.backgroundPriorDistance)
                .weights(encoded: encoded, features: adapted.queries ?? encoded.features,
                         channels: adapted.channels ?? encoded.featureDimension, clicked: clicked,
                         backgroundClass: background)
            : nil
        let near = c.geodesicClickWeight > 0 && k > 1
            ? GeodesicClickPrior(weight: Float(c.geodesicClickWeight), radius: c.geodesicClickRadius)
                .observations(encoded: encoded, features: adapted.queries ?? encoded.features,
                              channels: adapted.channels ?? encoded.featureDimension, clicked: clicked)
            : nil
        if fusesRounds, k == 2, coupling == nil, rounds > 0, let mixture = propagation as? MixturePropagation {
            // The loop below for two classes, token by token: `observe` is its observation of a token (the
            // `fixed` row), `settle` its E-step normalisation and over-relaxation of a token's new values.
            let clickedValues = (0..<h).map { t -> (Float, Float)? in
                clicked.isFixed(t) ? (clicked.value(t, 0, classCount: 2), clicked.value(t, 1, classCount: 2)) : nil
            }
            posterior.withUnsafeMutableBufferPointer { buffer in
                let post = buffer
                mixture.fusedTwoClassRounds(rounds: rounds, budget: budget, observe: { t -> (Float, Float, Float) in
                    if let values = clickedValues[t] { return (values.0, values.1, 1) }
                    let b: Float = (border[t] ? wB : 0) + (prior?[t] ?? 0)
                    let g: Float = near?.weight[t] ?? 0, gClass = Int(near?.classOf[t] ?? -1)
                    let q: Float = previousPosterior?.weights[t] ?? 0
                    let weight = wU + b + g + q
                    if weight <= 0 { return (0, 0, 0) }
                    var e0 = wU * post[2 * t] + (0 == background ? b : 0) + (0 == gClass ? g : 0)
                    var e1 = wU * post[2 * t + 1] + (1 == background ? b : 0) + (1 == gClass ? g : 0)
                    if let previousPosterior {
                        e0 += q * previousPosterior.values[2 * t]
                        e1 += q * previousPosterior.values[2 * t + 1]
                    }
                    return (e0 / weight, e1 / weight, min(1, weight))
                }, settle: { t, v0, v1 in
                    var sum: Float = 0
                    let p0 = v0.isFinite ? max(0, v0) : 0
                    sum += p0
                    let p1 = v1.isFinite ? max(0, v1) : 0
                    sum += p1
                    var total: Float = 0
                    let fresh0 = sum > 0 ? p0 / sum : neutral
                    let r0 = min(1, max(0, post[2 * t] + omega * (fresh0 - post[2 * t])))
                    total += r0
                    let fresh1 = sum > 0 ? p1 / sum : neutral
                    let r1 = min(1, max(0, post[2 * t + 1] + omega * (fresh1 - post[2 * t + 1])))
                    total += r1
                    post[2 * t] = total > 0 ? r0 / total : neutral
                    post[2 * t + 1] = total > 0 ? r1 / total : neutral
                })
            }
            return posterior
        }
        var previous = posterior
        for _ in 0..<rounds {
            if coupling != nil { previous = posterior }
            fixed.withUnsafeMutableBufferPointer { fixed in
            posterior.withUnsafeBufferPointer { posterior in
                for t in 0..<h {
                    let o = t * (k + 1)
                    if clicked.isFixed(t) {
                        for j in 0..<k { fixed[o + j] = clicked.value(t, j, classCount: k) }
                        fixed[o + k] = 1
                        continue
                    }
                    let b: Float = (border[t] ? wB : 0) + (prior?[t] ?? 0)
                    let g: Float = near?.weight[t] ?? 0, gClass = Int(near?.classOf[t] ?? -1)
                    let q: Float = previousPosterior?.weights[t] ?? 0
                    let weight = wU + b + g + q
                    if weight <= 0 {
                        for j in 0...k { fixed[o + j] = 0 }
                        continue
                    }
                    for j in 0..<k {
                        var evidence = wU * posterior[t * k + j] + (j == background ? b : 0) + (j == gClass ? g : 0)
                        if let previousPosterior { evidence += q * previousPosterior.values[t * k + j] }
                        fixed[o + j] = evidence / weight
                    }
                    fixed[o + k] = min(1, weight)
                }
            }
            }
            let tokenValues = try propagation.propagate(fixed: fixed, valueChannels: k, budget: budget)
            guard tokenValues.count == h * k else {
                throw SegmentationError(.attention, "attention variant '\(attention.name)' returned "
                                            + "\(tokenValues.count) values, expected \(h * k)")
            }
            // E-step result, normalised, then over-relaxed: p ← p + ω (p_new − p), projected back onto the simplex.
            tokenValues.withUnsafeBufferPointer { tokenValues in
            posterior.withUnsafeMutableBufferPointer { posterior in
            update.withUnsafeMutableBufferPointer { update in
                for t in 0..<h {
                    var sum: Float = 0
                    for j in 0..<k {
                        let v = tokenValues[t * k + j]
                        let p = v.isFinite ? max(0, v) : 0
                        update[j] = p
                        sum += p
                    }
                    if let coupling, sum > 0 {
                        sum = coupling.apply(token: t, to: update.baseAddress!, classCount: k, previous: previous,
                                             clicked: clicked)
                    }
                    var total: Float = 0
                    for j in 0..<k {
                        let fresh = sum > 0 ? update[j] / sum : neutral
                        let relaxed = min(1, max(0, posterior[t * k + j] + omega * (fresh - posterior[t * k + j])))
                        update[j] = relaxed
                        total += relaxed
                    }
                    for j in 0..<k { posterior[t * k + j] = total > 0 ? update[j] / total : neutral }
                }
            }
            }
            }
        }
        return posterior
    }

    /// The neighbour coupling of `neighbourWeight`: for every token its grid neighbours (8-neighbourhood) and their
    /// similarities s_tn = exp(−½‖f_t − f_n‖²), computed once per click from the features.
    struct NeighbourCoupling {
        let kappa: Float
        /// Per token, `slots` entries of (neighbour, similarity); neighbour −1 = none.
        static let slots = 8
        var neighbours: [Int32]
        var similarity: [Float]

        init?(encoded: EncodedImage, features: [Float], channels c: Int, kappa: Float) {
            guard let grid = encoded.grid, grid.rows * grid.cols == encoded.tokenCount,
                  features.count == encoded.tokenCount * c else { return nil }
            self.kappa = kappa
            let h = encoded.tokenCount
            neighbours = [Int32](repeating: -1, count: h * Self.slots)
            similarity = [Float](repeating: 0, count: h * Self.slots)
            for r in 0..<grid.rows {
                for col in 0..<grid.cols {
                    let t = r * grid.cols + col
                    var slot = 0
                    for dr in -1...1 {
                        for dc in -1...1 where !(dr == 0 && dc == 0) {
                            let rr = r + dr, cc = col + dc
                            guard rr >= 0, rr < grid.rows, cc >= 0, cc < grid.cols else { slot += 1; continue }
                            let n = rr * grid.cols + cc
                            var d2: Float = 0
                            for x in 0..<c {
                                let d = features[t * c + x] - features[n * c + x]
                                d2 += d * d
                            }
                            neighbours[t * Self.slots + slot] = Int32(n)
                            similarity[t * Self.slots + slot] = expf(-0.5 * d2)
                            slot += 1
                        }
                    }
                }
            }
        }

        /// Multiplies the K unnormalised class values at `values` by exp(κ Σ_n s_tn p_n(c)) (p_n: the previous
        /// round's posterior, a clicked neighbour's clicked value) and returns their new sum.
        func apply(token t: Int, to values: UnsafeMutablePointer<Float>, classCount k: Int, previous: [Float],
                   clicked: BeliefPropagator.ClickedTokens) -> Float {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { field in
                field.initialize(repeating: 0)
                for slot in 0..<Self.slots {
                    let n = Int(neighbours[t * Self.slots + slot])
                    if n < 0 { continue }
                    let s = similarity[t * Self.slots + slot]
                    let fixed = clicked.isFixed(n)
                    for c in 0..<k {
                        field[c] += s * (fixed ? clicked.value(n, c, classCount: k) : previous[n * k + c])
                    }
                }
                var top = field[0]
                for c in 1..<max(1, k) { top = max(top, field[c]) }
                var sum: Float = 0
                for c in 0..<k {
                    values[c] *= expf(kappa * (field[c] - top))
                    sum += values[c]
                }
                return sum
            }
        }
    }

    // MARK: - Step 3: token distributions → pixel labels

    /// What step 3 gives besides the labels, when asked for (step 5 needs them): the pixels classified by the
    /// bilateral mix (the band where token classes change) with their normalised class distributions
    /// (`band.count × K`).
    struct UpsampledBand {
        var band: [Int32] = []
        var bandProbabilities: [Float] = []
        /// `band.count × 3`: the CIELAB colour of every band pixel.
        var bandColours: [Float] = []
    }

    /// The size of step 3's chunks of rows, in pixels (rectangles below it are one chunk).
    static let pixelsPerChunk = 50_000

    /// Mean CIELAB colour per token, for encoders that do not provide it.
    static func meanColours(_ encoded: EncodedImage) -> [Float] {
        let converter = LabConverter(), tokens = encoded.tokenCount
        var sums = [Double](repeating: 0, count: tokens * 4)
        let px = encoded.image.pixels
        for i in 0..<encoded.tokenOfPixel.count {
            let t = Int(encoded.tokenOfPixel[i])
            let (l, a, b) = converter.lab(px[3 * i], px[3 * i + 1], px[3 * i + 2])
            sums[4 * t] += 1; sums[4 * t + 1] += Double(l); sums[4 * t + 2] += Double(a); sums[4 * t + 3] += Double(b)
        }
        var out = [Float](repeating: 0, count: tokens * 3)
        for t in 0..<tokens where sums[4 * t] > 0 {
            for j in 0..<3 { out[3 * t + j] = Float(sums[4 * t + 1 + j] / sums[4 * t]) }
        }
        return out
    }

    /// Footprint centre per token, for encoders that do not provide it.
    static func centres(_ encoded: EncodedImage) -> [Float] {
        let w = encoded.image.width, tokens = encoded.tokenCount
        var sums = [Double](repeating: 0, count: tokens * 3)
        for i in 0..<encoded.tokenOfPixel.count {
            let t = Int(encoded.tokenOfPixel[i])
            sums[3 * t] += 1; sums[3 * t + 1] += Double(i % w); sums[3 * t + 2] += Double(i / w)
        }
        var out = [Float](repeating: 0, count: tokens * 2)
        for t in 0..<tokens where sums[3 * t] > 0 {
            out[2 * t] = Float(sums[3 * t + 1] / sums[3 * t]); out[2 * t + 1] = Float(sums[3 * t + 2] / sums[3 * t])
        }
        return out
    }
}
