import Foundation
import ProbattnImaging
import ProbattnStages

/// The propagator's entry point with a previous state, and steps 3–5 over a rectangle of the image.
///
/// From scratch (no usable `previous`) the rectangle is the whole image. With a `PropagationState` of the same
/// image, steps 1 and 2 run as always (step 1 incrementally when the clicks are the previous ones plus appended
/// ones), then the pixel steps run only on the rectangle where the mask can change:
/// - the tokens whose winning class changed and their 8 grid neighbours (a token's "settled" test reads the classes
///   of its 3 × 3 neighbourhood), and the unsettled tokens (before or after: those whose pixels take the bilateral
///   mix) with a token of their 3 × 3 neighbourhood whose class distribution moved by more than `changeEpsilon` in
///   some class (a settled token paints its class whatever its distribution);
/// - the disc of every click added or taken away (the clicks in force are diffed against the state's: common prefix
///   and suffix);
/// - grown by `refinementReach` + 2 token strides for the refinement, whose band pixels outside the rectangle stay
///   fixed at their previous labels.
/// Outside the rectangle the previous mask is kept. The refinement's contrast normaliser is computed for the whole
/// band in both paths (`TokenGeometry`), so the two differ only where (a) a token's distribution moved by at most
/// `changeEpsilon` (a pixel then flips only when its class probability is that close to the decision threshold) and
/// (b) the minimum cut inside the rectangle would have moved beyond its halo. `IncrementalPropagationTests` measures
/// this on real images.
extension BeliefPropagator {
    /// The settings the pixel steps (1, 3, 4, 5) depend on: a state made under other settings is not reused.
    struct PixelSettings: Sendable, Equatable {
        var clickRadius: Double, clickDiscRadius: Double, upsampling: Upsampling, spatialSigma: Double
        var colourSigma: Double, refinement: Refinement, smoothness: Double, reach: Int
        var clickTieBreak: ClickTieBreak
    }

    var pixelSettings: PixelSettings {
        let c = configuration
        return PixelSettings(clickRadius: c.clickRadius, clickDiscRadius: c.clickDiscRadius, upsampling: c.upsampling,
                             spatialSigma: c.upsampleSpatialSigma, colourSigma: c.upsampleColourSigma,
                             refinement: c.refinement, smoothness: c.refinementSmoothness, reach: c.refinementReach,
                             clickTieBreak: clickTieBreak)
    }

    /// A token whose class distribution moves by at most this much (in every class) between two propagations keeps
    /// its pixels: a pixel's bilateral mix of its 3 × 3 tokens then moves by at most as much, so it can flip only
    /// when its probability lies within 1e-3 of the decision threshold, the band the equality test allows. Far above
    /// the float noise of the EM rounds (an untouched region reproduces its values to about 1e-7), and above the
    /// small moves far from a click that the click priors make everywhere (every token's previous-posterior weight
    /// depends on its distance from the newest click), which would otherwise make every click recompute the whole
    /// band.
    static let changeEpsilon: Float = 1e-3

    /// Above this share of the image the changed rectangle is recomputed as the whole image (no crop).
    static let wholeImageShare = 0.5

    /// Steps 1–5 with the state of an earlier propagation of the same prepared image (`previous`, from its
    /// `SegmentationResult.state`), or from scratch when it is nil or does not fit; see the extension's comment.
    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int, context: StageContext, previous: (any PropagatorState)?) throws
        -> SegmentationResult {
        if context.clickTieBreak != clickTieBreak {
            var ruled = self
            ruled.clickTieBreak = context.clickTieBreak
            return try ruled.propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed,
                                       classCount: classCount, context: context, previous: previous)
        }
        let budget = context.budget
        let start = DispatchTime.now().uptimeNanoseconds
        try validate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, classCount: classCount)
        let image = encoded.image
        let w = image.width, h = image.height, tokens = encoded.tokenCount, k = classCount
        let settings = pixelSettings
        let prior = (previous as? PropagationState).flatMap { state in
            state.width == w && state.height == h && state.tokenCount == tokens && state.classCount == k
                && state.fixed == fixed && state.settings == settings && state.labels.count == w * h ? state : nil
        }

        // The clicks added or taken away since the state, and whether the change only appended clicks.
        var changedClicks: [Click] = []
        var appendedFrom: Int?
        var commonPrefix = 0
        if let prior {
            let old = prior.clicks
            var prefix = 0
            while prefix < min(old.count, clicks.count), old[prefix] == clicks[prefix] { prefix += 1 }
            var suffix = 0
            while suffix < min(old.count, clicks.count) - prefix,
                  old[old.count - 1 - suffix] == clicks[clicks.count - 1 - suffix] { suffix += 1 }
            changedClicks = Array(old[prefix..<(old.count - suffix)]) + Array(clicks[prefix..<(clicks.count - suffix)])
            if prefix == old.count { appendedFrom = prefix }
            commonPrefix = prefix
        }

        // Step 1, incrementally when clicks were only appended.
        var clickedByClicks: ClickedTokens
        var reaching: [Int32: [Int]]
        var index: ClickIndex
        if let prior, let from = appendedFrom {
            clickedByClicks = prior.clicked
            reaching = prior.reaching
            index = prior.clickIndex
            addClickedTokens(&clickedByClicks, reaching: &reaching, encoded: encoded, clicks: clicks, from: from,
                             classCount: k)
            for position in from..<clicks.count { index.insert(clicks[position], at: position) }
        } else {
            clickedByClicks = ClickedTokens(classOf: [Int32](repeating: ClickedTokens.none, count: tokens))
            reaching = [:]
            addClickedTokens(&clickedByClicks, reaching: &reaching, encoded: encoded, clicks: clicks, from: 0,
                             classCount: k)
            index = ClickIndex(radius: Int(configuration.clickDiscRadius.rounded(.down)), width: w)
            for (position, click) in clicks.enumerated() { index.insert(click, at: position) }
        }
        var clicked = clickedByClicks
        for (t, c) in fixed.classOf where clicked.classOf[Int(t)] == ClickedTokens.none {
            clicked.classOf[Int(t)] = Int32(c)
        }

        // Step 2.
        var probabilities: [Float]
        var prefixPosteriors: [Int: [Float]] = [:]
        let chain = previousPosteriorPrior.map { _ in valueSettings }
        if (clicks.isEmpty && fixed.isEmpty) || k == 1 || configuration.emIterations == 0 {
            // No propagation (no clicks, one class, or propagation switched off): unclicked tokens keep the
            // neutral distribution, whose ties go to the last class (background).
            probabilities = [Float](repeating: 1 / Float(k), count: tokens * k)
        } else if chain != nil {
            // The previous-posterior prior: from the state when it holds the same recursion for a prefix of the
            // clicks (the state's own clicks, or one of the prefixes it keeps: an undo of the newest clicks), else
            // replayed from the first click.
            let start = prior.flatMap { state -> ChainStart? in
                guard state.chain == chain else { return nil }
                if appendedFrom == state.clicks.count {
                    return ChainStart(count: state.clicks.count, probabilities: state.probabilities,
                                      clicked: state.clicked, reaching: state.reaching,
                                      prefixes: state.prefixPosteriors)
                }
                guard let m = state.prefixPosteriors.keys.filter({ $0 <= commonPrefix }).max() else { return nil }
                return ChainStart(count: m, probabilities: state.prefixPosteriors[m]!, clicked: nil, reaching: nil,
                                  prefixes: state.prefixPosteriors.filter { $0.key < m })
            }
            (probabilities, prefixPosteriors) = try chainedProbabilities(
                encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, last: clicked, from: start,
                classCount: k, budget: budget)
        } else {
            probabilities = try propagateValues(encoded: encoded, adapted: adapted, clicked: clicked, classCount: k,
                                                budget: budget)
        }
        // Clicked tokens take their class; tokens split between classes take their shares.
        for t in 0..<tokens where clicked.classOf[t] != ClickedTokens.none {
            for c in 0..<k { probabilities[t * k + c] = clicked.value(t, c, classCount: k) }
        }

        let geometry = prior?.geometry ?? TokenGeometry(encoded: encoded)
        let tokenClass = Self.tokenClasses(probabilities, tokens: tokens, classCount: k)
        let whole = PixelRect(x: 0, y: 0, width: w, height: h)
        var labels: [UInt8]
        var rect: PixelRect
        if let prior {
            labels = prior.labels
            rect = changedRectangle(encoded: encoded, geometry: geometry, old: prior.probabilities,
                                    new: probabilities, oldClass: Self.tokenClasses(prior.probabilities,
                                                                                     tokens: tokens, classCount: k),
                                    newClass: tokenClass, changedClicks: changedClicks, classCount: k)
            if Double(rect.area) > Self.wholeImageShare * Double(w * h) { rect = whole }
        } else {
            labels = [UInt8](repeating: 0, count: w * h)
            rect = whole
        }
        if !rect.isEmpty {
            render(rect, into: &labels, encoded: encoded, probabilities: probabilities, tokenClass: tokenClass,
                   clicks: clicks, discClicks: rect == whole ? Array(clicks.indices) : index.positions(touching: rect),
                   geometry: geometry, classCount: k, budget: budget)
        }
        let state = PropagationState(clicks: clicks, fixed: fixed, width: w, height: h, tokenCount: tokens,
                                     classCount: k, settings: settings, probabilities: probabilities, labels: labels,
                                     clicked: clickedByClicks, reaching: reaching, clickIndex: index,
                                     geometry: geometry, chain: chain, prefixPosteriors: prefixPosteriors)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return SegmentationResult(mask: LabelMask(width: w, height: h, labels: labels), seconds: seconds,
                                  state: state, changed: prior == nil ? nil : rect)
    }

    /// The settings step 2 depends on, besides the prepared image and the clicks: a state whose posteriors were
    /// computed under other settings does not start the previous-posterior recursion.
    struct ValueSettings: Sendable, Equatable {
        var emIterations: Int, unlabelledWeight: Double, borderWeight: Double, relaxation: Double, borderClass: Int
        var neighbourWeight: Double, backgroundPriorWeight: Double, backgroundPriorRadius: Double
        var backgroundPriorDistance: BackgroundPrior.Distance, geodesicClickWeight: Double
        var geodesicClickRadius: Double, previousPosterior: PreviousPosteriorPrior?
    }

    var valueSettings: ValueSettings {
        let c = configuration
        return ValueSettings(emIterations: c.emIterations, unlabelledWeight: c.unlabelledWeight,
                             borderWeight: c.borderWeight, relaxation: c.relaxation, borderClass: c.borderClass,
                             neighbourWeight: c.neighbourWeight, backgroundPriorWeight: c.backgroundPriorWeight,
                             backgroundPriorRadius: c.backgroundPriorRadius,
                             backgroundPriorDistance: c.backgroundPriorDistance,
                             geodesicClickWeight: c.geodesicClickWeight, geodesicClickRadius: c.geodesicClickRadius,
                             previousPosterior: previousPosteriorPrior)
    }

    /// How many of the most recent prefixes' posteriors a state keeps for the previous-posterior prior (an undo of up
    /// to this many newest clicks costs no replay).
    static let keptPrefixes = 16

    /// Where the previous-posterior recursion starts: the posteriors for the first `count` clicks, step 1's clicked
    /// tokens for them when known (else rebuilt), and the earlier prefixes' posteriors a state kept.
    struct ChainStart {
        var count: Int
        var probabilities: [Float]
        var clicked: ClickedTokens?
        var reaching: [Int32: [Int]]?
        var prefixes: [Int: [Float]]
    }

    /// Step 2 with the previous-posterior prior (`PreviousPosteriorPrior`): the token posteriors for
    /// `clicks[..<j]`, j = 1 … n, each propagated with the prior of the posteriors for `clicks[..<j − 1]` and the
    /// newest click `clicks[j − 1]` (none for j = 1), clicked tokens at their clicked values. `start`, the same
    /// recursion for a prefix of `clicks`, skips the prefixes it covers (one propagation when one click was appended,
    /// none when the clicks are a prefix it holds). `last` is the clicked tokens (with `fixed`) of the whole list.
    /// Returns the posteriors for all of `clicks` and those of the most recent prefixes (`keptPrefixes`) for the
    /// next state.
    func chainedProbabilities(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                              last: ClickedTokens, from start: ChainStart?, classCount k: Int,
                              budget: ComputeBudget) throws -> (probabilities: [Float], prefixes: [Int: [Float]]) {
        guard let prior = previousPosteriorPrior else {
            return (try propagateValues(encoded: encoded, adapted: adapted, clicked: last, classCount: k,
                                        budget: budget), [:])
        }
        let tokens = encoded.tokenCount
        var count = start?.count ?? 0
        var previous = start?.probabilities
        var prefixes = start?.prefixes ?? [:]
        func kept(_ all: [Int: [Float]]) -> [Int: [Float]] {
            all.filter { $0.key >= 1 && $0.key < clicks.count && $0.key >= clicks.count - Self.keptPrefixes }
        }
        if count == clicks.count, let previous { return (previous, kept(prefixes)) }
        var byClicks = start?.clicked ?? ClickedTokens(classOf: [Int32](repeating: ClickedTokens.none, count: tokens))
        var reaching = start?.reaching ?? [:]
        if start != nil, start?.clicked == nil, count > 0 {
            addClickedTokens(&byClicks, reaching: &reaching, encoded: encoded, clicks: Array(clicks[..<count]),
                             from: 0, classCount: k)
        }
        let features = adapted.queries ?? encoded.features
        let channels = adapted.channels ?? encoded.featureDimension
        while count < clicks.count {
            if count >= 1, let previous { prefixes[count] = previous }
            count += 1
            var step = last
            if count < clicks.count {
                addClickedTokens(&byClicks, reaching: &reaching, encoded: encoded, clicks: Array(clicks[..<count]),
                                 from: count - 1, classCount: k)
                step = byClicks
                for (t, c) in fixed.classOf where step.classOf[Int(t)] == ClickedTokens.none {
                    step.classOf[Int(t)] = Int32(c)
                }
            }
            var evidence: (values: [Float], weights: [Float])?
            if count >= 2, let previous {
                evidence = (previous, prior.weights(encoded: encoded, features: features, channels: channels,
                                                    clicked: step, newest: clicks[count - 1]))
            }
            var p = try propagateValues(encoded: encoded, adapted: adapted, clicked: step, classCount: k,
                                        budget: budget, previousPosterior: evidence)
            for t in 0..<tokens where step.classOf[t] != ClickedTokens.none {
                for c in 0..<k { p[t * k + c] = step.value(t, c, classCount: k) }
            }
            previous = p
        }
        return (previous ?? [Float](repeating: 1 / Float(k), count: tokens * k), kept(prefixes))
    }

    /// The same outside a request (tools, tests): one thread, no metrics (`StageContext.standalone`).
    public func propagate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int, previous: (any PropagatorState)?) throws -> SegmentationResult {
        try propagate(encoded: encoded, adapted: adapted, clicks: clicks, fixed: fixed, classCount: classCount,
                      context: .standalone, previous: previous)
    }

    private func validate(encoded: EncodedImage, adapted: AdaptedImage, clicks: [Click], fixed: FixedTokens,
                          classCount: Int) throws {
        let w = encoded.image.width, h = encoded.image.height
        guard (1...256).contains(classCount) else {
            throw SegmentationError(.invalidInput, "class count \(classCount) is outside 1...256")
        }
        for (i, c) in clicks.enumerated() {
            guard c.x >= 0, c.x < w, c.y >= 0, c.y < h else {
                throw SegmentationError(.invalidInput, "click \(i + 1) at (\(c.x), \(c.y)) lies outside the "
                                            + "\(w)×\(h) image")
            }
            guard c.classIndex >= 0, c.classIndex < classCount else {
                throw SegmentationError(.invalidInput, "click \(i + 1) has class \(c.classIndex), but there are "
                                            + "\(classCount) classes")
            }
        }
        let tokens = encoded.tokenCount
        for (t, c) in fixed.classOf {
            guard t >= 0, Int(t) < tokens, c >= 0, c < classCount else {
                throw SegmentationError(.invalidInput, "fixed token \(t) with class \(c) is outside the \(tokens) "
                                            + "tokens or \(classCount) classes")
            }
        }
        let channels = adapted.channels ?? encoded.featureDimension
        guard encoded.tokenOfPixel.count == w * h, adapted.unitCount > 0, channels > 0,
              adapted.keys.count == adapted.unitCount * channels,
              (adapted.queries ?? encoded.features).count == tokens * channels else {
            throw SegmentationError(.invalidInput, "prepared image is inconsistent (footprint or key sizes)")
        }
    }

    /// Every token's winning class (ties go to the last class, background, matching the evaluation's threshold just
    /// below 0.5).
    static func tokenClasses(_ p: [Float], tokens: Int, classCount k: Int) -> [Int] {
        var tokenClass = [Int](repeating: 0, count: tokens)
        for t in 0..<tokens {
            var best = 0
            for c in 1..<max(1, k) where p[t * k + c] >= p[t * k + best] { best = c }
            tokenClass[t] = best
        }
        return tokenClass
    }

    /// The rectangle the pixel steps must recompute after the token distributions went from `old` to `new` and
    /// `changedClicks` were added or taken away (empty when nothing can change). The EM rounds are global (every
    /// token attends to every unit), so a click moves most tokens' distributions a little; only the tokens near the
    /// class boundary turn that into pixel changes.
    private func changedRectangle(encoded: EncodedImage, geometry: TokenGeometry, old: [Float], new: [Float],
                                  oldClass: [Int], newClass: [Int], changedClicks: [Click], classCount k: Int)
        -> PixelRect {
        let tokens = encoded.tokenCount
        var rect = PixelRect(x: 0, y: 0, width: 0, height: 0)
        let bilateral = configuration.upsampling == .bilateral
            && encoded.grid.map { $0.rows * $0.cols == tokens } == true
        guard bilateral, let grid = encoded.grid else {
            // Every pixel takes its token's class: only tokens whose class changed change pixels.
            for t in 0..<tokens where oldClass[t] != newClass[t] { rect = rect.union(geometry.box(t)) }
            return finish(rect, encoded: encoded, changedClicks: changedClicks)
        }
        // A settled token (it and its 8 neighbours of one class) paints its class whatever its distribution, so a
        // token's pixels can change only when its class or a neighbour's class changed, or when it is unsettled
        // (before or after) and the distribution of a token of its 3 × 3 neighbourhood moved by more than epsilon.
        let oldSettled = settledTokens(encoded: encoded, tokenClass: oldClass)
        let newSettled = settledTokens(encoded: encoded, tokenClass: newClass)
        var moved = [Bool](repeating: false, count: tokens)
        var flipped = [Bool](repeating: false, count: tokens)
        for t in 0..<tokens {
            flipped[t] = oldClass[t] != newClass[t]
            for c in 0..<k where abs(new[t * k + c] - old[t * k + c]) > Self.changeEpsilon {
                moved[t] = true
                break
            }
        }
        for t in 0..<tokens {
            let r = t / grid.cols, c = t % grid.cols
            let unsettled = !oldSettled[t] || !newSettled[t]
            var dirty = false
            outer: for rr in max(0, r - 1)...min(grid.rows - 1, r + 1) {
                for cc in max(0, c - 1)...min(grid.cols - 1, c + 1) {
                    let u = rr * grid.cols + cc
                    if flipped[u] || (unsettled && moved[u]) { dirty = true; break outer }
                }
            }
            if dirty { rect = rect.union(geometry.box(t)) }
        }
        return finish(rect, encoded: encoded, changedClicks: changedClicks)
    }

    /// `rect` with the discs of `changedClicks`, grown by the refinement's halo.
    private func finish(_ changedTokens: PixelRect, encoded: EncodedImage, changedClicks: [Click]) -> PixelRect {
        let w = encoded.image.width, h = encoded.image.height, tokens = encoded.tokenCount
        var rect = changedTokens
        let r = Int(configuration.clickDiscRadius.rounded(.down))
        for click in changedClicks {
            rect = rect.union(PixelRect(x: click.x - r, y: click.y - r, width: 2 * r + 1, height: 2 * r + 1))
        }
        if rect.isEmpty { return rect }
        rect = rect.expanded(by: 0, clippedTo: w, h)
        if configuration.refinement == .graphCut {
            let stride = Int((Double(w * h) / Double(max(1, tokens))).squareRoot().rounded(.up))
            rect = rect.expanded(by: configuration.refinementReach + 2 * stride, clippedTo: w, h)
        }
        return rect
    }

    // MARK: - Steps 3–5 over a rectangle

    /// Steps 3 (upsampling), 4 (click discs) and 5 (refinement) for the pixels of `rect`, written into `labels`;
    /// `discClicks` are the positions in `clicks` of every click whose disc may touch `rect`, ascending. The pixels
    /// outside `rect` are read (as the refinement's fixed neighbours) and not written.
    func render(_ rect: PixelRect, into labels: inout [UInt8], encoded: EncodedImage, probabilities: [Float],
                tokenClass: [Int], clicks: [Click], discClicks: [Int], geometry: TokenGeometry, classCount k: Int,
                budget: ComputeBudget = .single) {
        let image = encoded.image, w = image.width, h = image.height
        let refining = configuration.refinement == .graphCut
        let settled = settledTokens(encoded: encoded, tokenClass: tokenClass)
        let upsampled = pixelLabels(encoded: encoded, probabilities: probabilities, classCount: k,
                                    tokenClass: tokenClass, settled: settled, rect: rect, into: &labels,
                                    collectingBand: refining, budget: budget)
        var inDisc = [Bool](repeating: false, count: rect.area)
        forceClickDiscs(&labels, inDisc: &inDisc, rect: rect, width: w, clicks: clicks, positions: discClicks)
        guard refining, !upsampled.band.isEmpty else { return }
        let contrast = geometry.contrastScale(inBand: settled.map { !$0 })
        let refiner = BoundaryRefinement(smoothness: Float(configuration.refinementSmoothness),
                                         reach: configuration.refinementReach)
        let fixed = upsampled.band.map { p -> Bool in
            let pi = Int(p)
            return inDisc[(pi / w - rect.y) * rect.width + pi % w - rect.x]
        }
        if rect == PixelRect(x: 0, y: 0, width: w, height: h) {
            refiner.refine(labels: &labels, image: image, band: upsampled.band,
                           probabilities: upsampled.bandProbabilities, fixedInBand: fixed,
                           colours: upsampled.bandColours, classCount: k, budget: budget, contrast: contrast)
            return
        }
        // A crop of the rectangle and a one-pixel ring around it (the band's fixed neighbours), its origin on a
        // multiple of 4 so the refinement's flat blocks sit where they sit in the whole image.
        let x0 = max(0, rect.x - 1) / 4 * 4, y0 = max(0, rect.y - 1) / 4 * 4
        let x1 = min(w, rect.maxX + 1), y1 = min(h, rect.maxY + 1)
        let cw = x1 - x0, ch = y1 - y0
        // Every byte of both is written by the row copies below.
        var pixels = [UInt8](unsafeUninitializedCapacity: cw * ch * 3) { _, count in count = cw * ch * 3 }
        var cropLabels = [UInt8](unsafeUninitializedCapacity: cw * ch) { _, count in count = cw * ch }
        image.pixels.withUnsafeBufferPointer { src in
        labels.withUnsafeBufferPointer { labels in
        pixels.withUnsafeMutableBufferPointer { pixels in
        cropLabels.withUnsafeMutableBufferPointer { cropLabels in
            for y in 0..<ch {
                let g = (y0 + y) * w + x0, l = y * cw
                UnsafeMutableRawPointer(pixels.baseAddress! + 3 * l)
                    .copyMemory(from: src.baseAddress! + 3 * g, byteCount: 3 * cw)
                UnsafeMutableRawPointer(cropLabels.baseAddress! + l).copyMemory(from: labels.baseAddress! + g,
                                                                                 byteCount: cw)
            }
        }
        }
        }
        }
        let crop = RGBImage(width: cw, height: ch, pixels: pixels)
        let band = upsampled.band.map { p -> Int32 in
            let pi = Int(p)
            return Int32((pi / w - y0) * cw + pi % w - x0)
        }
        refiner.refine(labels: &cropLabels, image: crop, band: band, probabilities: upsampled.bandProbabilities,
                       fixedInBand: fixed, colours: upsampled.bandColours, classCount: k, budget: budget,
                       contrast: contrast)
        labels.withUnsafeMutableBufferPointer { labels in
        cropLabels.withUnsafeBufferPointer { cropLabels in
            for y in rect.y..<rect.maxY {
                UnsafeMutableRawPointer(labels.baseAddress! + y * w + rect.x)
                    .copyMemory(from: cropLabels.baseAddress! + (y - y0) * cw + rect.x - x0, byteCount: rect.width)
            }
        }
        }
    }

    /// A token is "settled" when it and all its grid neighbours have the same class (its pixels then take that class
    /// without the bilateral mix).
    func settledTokens(encoded: EncodedImage, tokenClass: [Int]) -> [Bool] {
        let tokens = encoded.tokenCount
        var settled = [Bool](repeating: true, count: tokens)
        guard let grid = encoded.grid, grid.rows * grid.cols == tokens else { return settled }
        for r in 0..<grid.rows {
            for c in 0..<grid.cols {
                let t = r * grid.cols + c
                outer: for rr in max(0, r - 1)...min(grid.rows - 1, r + 1) {
                    for cc in max(0, c - 1)...min(grid.cols - 1, c + 1)
                    where tokenClass[rr * grid.cols + cc] != tokenClass[t] {
                        settled[t] = false
                        break outer
                    }
                }
            }
        }
        return settled
    }

    /// Step 3 for the whole image (labels into a fresh mask, dropped): the band, for callers that check it.
    func pixelLabels(encoded: EncodedImage, probabilities p: [Float], classCount k: Int, collectingBand: Bool = false,
                     budget: ComputeBudget = .single) -> UpsampledBand {
        let tokenClass = Self.tokenClasses(p, tokens: encoded.tokenCount, classCount: k)
        var labels = [UInt8](repeating: 0, count: encoded.image.width * encoded.image.height)
        return pixelLabels(encoded: encoded, probabilities: p, classCount: k, tokenClass: tokenClass,
                           settled: settledTokens(encoded: encoded, tokenClass: tokenClass),
                           rect: PixelRect(x: 0, y: 0, width: encoded.image.width, height: encoded.image.height),
                           into: &labels, collectingBand: collectingBand, budget: budget)
    }

    /// Step 3 for the pixels of `rect`: token class distributions become pixel labels, written into `labels`; with
    /// `collectingBand`, the rectangle's pixels classified by the bilateral mix, in row order, with their class
    /// distributions and colours.
    func pixelLabels(encoded: EncodedImage, probabilities p: [Float], classCount k: Int, tokenClass: [Int],
                     settled: [Bool], rect: PixelRect, into labels: inout [UInt8], collectingBand: Bool,
                     budget: ComputeBudget = .single) -> UpsampledBand {
        let image = encoded.image
        let w = image.width, tokens = encoded.tokenCount
        guard configuration.upsampling == .bilateral, let grid = encoded.grid, grid.rows * grid.cols == tokens,
              k > 1 else {
            for y in rect.y..<rect.maxY {
                for x in rect.x..<rect.maxX {
                    let i = y * w + x
                    labels[i] = UInt8(tokenClass[Int(encoded.tokenOfPixel[i])])
                }
            }
            return UpsampledBand()
        }
        let weights = BilateralMix(self, encoded: encoded, grid: grid)
        let labTable = QuantisedLab.table
        let exponential = NegativeExponential.table
        // The rows are cut into chunks of about `pixelsPerChunk` pixels (a number that depends on the rectangle
        // alone), classified within `budget` (a pixel depends only on its own token's neighbourhood); each chunk
        // collects its own part of the band, joined in chunk (row) order afterwards, so the output is the same for
        // every budget. The loop reads everything through raw buffers and computes each pixel's mix as
        // `BilateralMix.mix` does, term by term in the same order (`BilateralMix.mixUnchecked`).
        let chunks = max(1, min(rect.height, rect.area / Self.pixelsPerChunk))
        var parts = [UpsampledBand](repeating: UpsampledBand(), count: chunks)
        labels.withUnsafeMutableBufferPointer { labelsOut in
        parts.withUnsafeMutableBufferPointer { partsOut in
        labTable.withUnsafeBufferPointer { lab in
        image.pixels.withUnsafeBufferPointer { px in
        encoded.tokenOfPixel.withUnsafeBufferPointer { tokenOf in
        settled.withUnsafeBufferPointer { settled in
        tokenClass.withUnsafeBufferPointer { tokenClass in
        p.withUnsafeBufferPointer { p in
        weights.colours.withUnsafeBufferPointer { colours in
        weights.centres.withUnsafeBufferPointer { centres in
        exponential.withUnsafeBufferPointer { exponential in
            let kernel = BilateralMix.Unchecked(mix: weights, colours: colours.baseAddress!,
                                                centres: centres.baseAddress!, probabilities: p.baseAddress!,
                                                exponential: exponential)
            budget.forEachChunk(count: chunks) { chunk in
            var band: [Int32] = [], bandProbabilities: [Float] = [], bandColours: [Float] = []
            withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { mixBuffer in
            let mix = mixBuffer.baseAddress!
            let rows = ComputeBudget.range(ofChunk: chunk, count: chunks, total: rect.height)
            for y in (rect.y + rows.lowerBound)..<(rect.y + rows.upperBound) {
                for x in rect.x..<rect.maxX {
                    let i = y * w + x, t = Int(tokenOf[i])
                    if settled[t] {
                        labelsOut[i] = UInt8(tokenClass[t])
                        continue
                    }
                    let q = QuantisedLab.index(px[3 * i], px[3 * i + 1], px[3 * i + 2])
                    let l = lab[q], a = lab[q + 1], b = lab[q + 2]
                    kernel.mix(x: x, y: y, token: t, l: l, a: a, b: b, classCount: k, into: mix)
                    var best = 0
                    for j in 1..<k where mix[j] >= mix[best] { best = j }
                    // All weights underflowed (an outlier colour): fall back to the pixel's own token.
                    labelsOut[i] = UInt8(mix[best] > 0 ? best : tokenClass[t])
                    if collectingBand {
                        var total: Float = 0
                        for j in 0..<k { total += mix[j] }
                        band.append(Int32(i))
                        bandColours.append(l); bandColours.append(a); bandColours.append(b)
                        for j in 0..<k { bandProbabilities.append(total > 0 ? mix[j] / total : p[t * k + j]) }
                    }
                }
            }
            }
            partsOut[chunk] = UpsampledBand(band: band, bandProbabilities: bandProbabilities,
                                            bandColours: bandColours)
            }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        }
        var result = UpsampledBand()
        for part in parts {
            result.band += part.band
            result.bandProbabilities += part.bandProbabilities
            result.bandColours += part.bandColours
        }
        return result
    }

    /// The class probability of pixel (x, y) as step 3 computes it from the token distributions of `state` (the
    /// bilateral mix for a pixel of an unsettled token, its token's distribution otherwise): what a test needs to
    /// tell a pixel on the decision threshold.
    public func pixelProbability(encoded: EncodedImage, state: PropagationState, x: Int, y: Int, classIndex: Int)
        -> Float {
        let k = state.classCount, tokens = encoded.tokenCount, w = encoded.image.width
        let p = state.probabilities
        let t = Int(encoded.tokenOfPixel[y * w + x])
        let tokenClass = Self.tokenClasses(p, tokens: tokens, classCount: k)
        guard configuration.upsampling == .bilateral, let grid = encoded.grid, grid.rows * grid.cols == tokens,
              k > 1,
              !settledTokens(encoded: encoded, tokenClass: tokenClass)[t] else { return p[t * k + classIndex] }
        let i = y * w + x, px = encoded.image.pixels, lab = QuantisedLab.table
        let q = QuantisedLab.index(px[3 * i], px[3 * i + 1], px[3 * i + 2])
        var mix = [Float](repeating: 0, count: k)
        BilateralMix(self, encoded: encoded, grid: grid)
            .mix(x: x, y: y, token: t, l: lab[q], a: lab[q + 1], b: lab[q + 2], probabilities: p, classCount: k,
                 into: &mix)
        let total = mix.reduce(0, +)
        return total > 0 ? mix[classIndex] / total : p[t * k + classIndex]
    }

    // MARK: - Step 4: clicked pixels keep their class

    /// Paints, inside `rect`, the disc of `click_disc_radius` around each click of `positions` (positions in
    /// `clicks`, ascending; every click whose disc touches `rect` must be among them): each disc pixel takes the
    /// class of the nearest click whose disc holds it (of equals, the later one, or with `clickTieBreak` `earlier`
    /// the earlier one), then every clicked pixel its own click's class. `inDisc` (rect-sized, row by row) marks the
    /// painted pixels, which stay fixed in step 5.
    func forceClickDiscs(_ labels: inout [UInt8], inDisc: inout [Bool], rect: PixelRect, width w: Int,
                         clicks: [Click], positions: [Int]) {
        guard !positions.isEmpty, !rect.isEmpty else { return }
        let radius = configuration.clickDiscRadius
        let r = Int(radius.rounded(.down)), r2 = radius * radius
        // The nearest disc's squared distance so far, of the pixels a disc reached (the others are +∞).
        var distance: [Int: Double] = [:]
        for position in positions {
            let click = clicks[position]
            let ys = max(rect.y, click.y - r), ye = min(rect.maxY - 1, click.y + r)
            let xs = max(rect.x, click.x - r), xe = min(rect.maxX - 1, click.x + r)
            guard ys <= ye, xs <= xe else { continue }
            for y in ys...ye {
                for x in xs...xe {
                    let dx = Double(x - click.x), dy = Double(y - click.y), d = dx * dx + dy * dy
                    guard d <= r2 else { continue }
                    let l = (y - rect.y) * rect.width + x - rect.x
                    if clickTieBreak.takes(d, over: distance[l, default: .infinity]) {
                        distance[l] = d
                        inDisc[l] = true
                        labels[y * w + x] = UInt8(click.classIndex)
                    }
                }
            }
        }
        // The clicked pixels themselves last (distance 0: a clicked pixel is its own click's, whatever its order).
        for position in positions {
            let click = clicks[position]
            guard click.x >= rect.x, click.x < rect.maxX, click.y >= rect.y, click.y < rect.maxY else { continue }
            labels[click.y * w + click.x] = UInt8(click.classIndex)
        }
    }
}

/// Step 3's joint-bilateral weights: a pixel's class distribution mixes the distributions of its token's 3 × 3 grid
/// neighbours, each weighted by exp(−(spatial · distance² to the token's centre + colour · ΔE² to its mean colour)).
/// Built once per call; `mix` is what both the upsampling loop and `pixelProbability` compute for one pixel.
struct BilateralMix {
    let grid: TokenGrid
    let colours: [Float]
    let centres: [Float]
    let spatial: Float
    let colour: Float

    init(_ propagator: BeliefPropagator, encoded: EncodedImage, grid: TokenGrid) {
        let tokens = encoded.tokenCount
        self.grid = grid
        colours = encoded.tokenColours.count == tokens * 3 ? encoded.tokenColours
            : BeliefPropagator.meanColours(encoded)
        centres = encoded.tokenCentres.count == tokens * 2 ? encoded.tokenCentres : BeliefPropagator.centres(encoded)
        let stride = (Double(encoded.image.width * encoded.image.height) / Double(tokens)).squareRoot()
        spatial = Float(1 / (2 * pow(propagator.upsampleSpatialSigma * stride, 2)))
        colour = Float(1 / (2 * propagator.upsampleColourSigma * propagator.upsampleColourSigma))
    }

    /// `mix` over raw buffers of the same arrays (and `NegativeExponential.table`), for the upsampling loop: the
    /// same terms in the same order, so the same bits, without per-element checks. Valid while the buffers are.
    struct Unchecked {
        let rows: Int, cols: Int
        let spatial: Float, colour: Float
        let colours: UnsafePointer<Float>, centres: UnsafePointer<Float>, probabilities: UnsafePointer<Float>
        let exponential: UnsafeBufferPointer<Float>

        init(mix: BilateralMix, colours: UnsafePointer<Float>, centres: UnsafePointer<Float>,
             probabilities: UnsafePointer<Float>, exponential: UnsafeBufferPointer<Float>) {
            rows = mix.grid.rows; cols = mix.grid.cols
            spatial = mix.spatial; colour = mix.colour
            self.colours = colours; self.centres = centres; self.probabilities = probabilities
            self.exponential = exponential
        }

        /// `BilateralMix.mix` into the K floats at `mix`.
        @inline(__always)
        func mix(x: Int, y: Int, token t: Int, l: Float, a: Float, b: Float, classCount k: Int,
                 into mix: UnsafeMutablePointer<Float>) {
            let r = t / cols, c = t % cols
            let fx = Float(x), fy = Float(y)
            if k == 2 {
                var m0: Float = 0, m1: Float = 0
                for rr in max(0, r - 1)...min(rows - 1, r + 1) {
                    for cc in max(0, c - 1)...min(cols - 1, c + 1) {
                        let u = rr * cols + cc
                        let weight = self.weight(u, fx, fy, l, a, b)
                        m0 += weight * probabilities[u * 2]; m1 += weight * probabilities[u * 2 + 1]
                    }
                }
                mix[0] = m0; mix[1] = m1
                return
            }
            for j in 0..<k { mix[j] = 0 }
            for rr in max(0, r - 1)...min(rows - 1, r + 1) {
                for cc in max(0, c - 1)...min(cols - 1, c + 1) {
                    let u = rr * cols + cc
                    let weight = self.weight(u, fx, fy, l, a, b)
                    for j in 0..<k { mix[j] += weight * probabilities[u * k + j] }
                }
            }
        }

        /// The weight of token `u` for a pixel at (fx, fy) of colour (l, a, b): `NegativeExponential.value` of
        /// the same argument.
        @inline(__always)
        private func weight(_ u: Int, _ fx: Float, _ fy: Float, _ l: Float, _ a: Float, _ b: Float) -> Float {
            let dx = fx - centres[2 * u], dy = fy - centres[2 * u + 1]
            let dl = l - colours[3 * u], da = a - colours[3 * u + 1], db = b - colours[3 * u + 2]
            return NegativeExponential.value(spatial * (dx * dx + dy * dy) + colour * (dl * dl + da * da + db * db),
                                             table: exponential)
        }
    }

    /// Overwrites `mix` (K values) with the unnormalised mix for pixel (x, y) of token `t` and CIELAB colour
    /// (l, a, b), from the token distributions `p` (H × K).
    @inline(__always)
    func mix(x: Int, y: Int, token t: Int, l: Float, a: Float, b: Float, probabilities p: [Float], classCount k: Int,
             into mix: inout [Float]) {
        let r = t / grid.cols, c = t % grid.cols
        for j in 0..<k { mix[j] = 0 }
        for rr in max(0, r - 1)...min(grid.rows - 1, r + 1) {
            for cc in max(0, c - 1)...min(grid.cols - 1, c + 1) {
                let u = rr * grid.cols + cc
                let dx = Float(x) - centres[2 * u], dy = Float(y) - centres[2 * u + 1]
                let dl = l - colours[3 * u], da = a - colours[3 * u + 1], db = b - colours[3 * u + 2]
                let weight = NegativeExponential.value(spatial * (dx * dx + dy * dy)
                                                           + colour * (dl * dl + da * da + db * db))
                for j in 0..<k { mix[j] += weight * p[u * k + j] }
            }
        }
    }
}
