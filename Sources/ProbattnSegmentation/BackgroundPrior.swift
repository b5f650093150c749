import Foundation
import ProbattnStages

/// The background prior of `BeliefPropagator` (`background_prior_weight`, off by default): the weight with which each
/// token observes the border class (background) in every EM round besides its own imputed posterior.
///
/// The model: objects are a minority of the image, so a token without evidence is a priori background. The EM rounds
/// impute an unclicked token's class from its posterior alone; a chain of undecided tokens (posterior near ½) then
/// carries whatever class its shared units lean to, and a click's class spreads along it into look-alike regions far
/// from the click. With a weak prior for background on every unclicked token, such a chain holds background unless a
/// click's evidence outweighs the prior. The object is compact around its positive clicks, so the prior may fall off
/// near them: w(t) = w₀·(1 − exp(−d_t²/(2ρ²))), d_t the distance from token t to the nearest token fixed to another
/// class than background (w₀ everywhere while there is none, or with ρ = 0).
///
/// Computed once per propagation, from the clicked tokens; pure (no I/O, no state).
public struct BackgroundPrior: Sendable {
    public enum Distance: String, Sendable, CaseIterable {
        /// Between footprint centres, as a fraction of the image diagonal.
        case euclidean
        /// Shortest path over the 8-connected token grid, each step costing the feature distance ‖f_t − f_n‖ (the
        /// mixture's own metric: one sigma of colour, position or texture difference costs 1).
        case geodesic
    }

    public var weight: Float
    public var radius: Double
    public var distance: Distance

    public init(weight: Float, radius: Double, distance: Distance) {
        self.weight = weight
        self.radius = radius
        self.distance = distance
    }

    /// The prior weight of every token (0 for tokens fixed by a click). `features` are the queries (`channels` each).
    /// The geodesic distance needs a token grid; without one it falls back to the Euclidean distance.
    func weights(encoded: EncodedImage, features: [Float], channels: Int, clicked: BeliefPropagator.ClickedTokens,
                 backgroundClass: Int) -> [Float] {
        let h = encoded.tokenCount
        var out = [Float](repeating: weight, count: h)
        for t in 0..<h where clicked.isFixed(t) { out[t] = 0 }
        guard radius > 0 else { return out }
        let sources = (0..<h).filter { clicked.isFixed($0) && Int(clicked.classOf[$0]) != backgroundClass }
        guard !sources.isEmpty else { return out }
        let d = Self.distances(distance, encoded: encoded, features: features, channels: channels, sources: sources)
        return Self.risingWeights(weight, radius: radius, distances: d, clicked: clicked)
    }

    /// Every token's distance from the nearest of `sources` by `metric`. The geodesic distance needs a token grid
    /// and `features` of `channels` each; without them it falls back to the Euclidean distance.
    static func distances(_ metric: Distance, encoded: EncodedImage, features: [Float], channels: Int,
                          sources: [Int]) -> [Double] {
        let h = encoded.tokenCount
        if metric == .geodesic, let grid = encoded.grid, grid.rows * grid.cols == h, features.count == h * channels {
            return geodesic(grid: grid, features: features, channels: channels, sources: sources)
        }
        return euclidean(encoded: encoded, sources: sources)
    }

    /// w·(1 − exp(−d²/(2ρ²))) for every token not fixed by a click, 0 for the fixed ones: a weight that rises with
    /// the distance `distances` from the sources (the background prior's and the previous-posterior prior's form).
    static func risingWeights(_ weight: Float, radius: Double, distances d: [Double],
                              clicked: BeliefPropagator.ClickedTokens) -> [Float] {
        let scale = 1 / (2 * radius * radius)
        var out = [Float](repeating: 0, count: d.count)
        for t in 0..<d.count where !clicked.isFixed(t) {
            out[t] = weight * Float(1 - exp(-d[t] * d[t] * scale))
        }
        return out
    }

    /// Distance from every token's footprint centre to the nearest source's, over the image diagonal.
    static func euclidean(encoded: EncodedImage, sources: [Int]) -> [Double] {
        let h = encoded.tokenCount
        let centres = encoded.tokenCentres.count == h * 2 ? encoded.tokenCentres : BeliefPropagator.centres(encoded)
        let w = Double(encoded.image.width), ht = Double(encoded.image.height)
        let diagonal = max(1, (w * w + ht * ht).squareRoot())
        var out = [Double](repeating: 0, count: h)
        for t in 0..<h {
            var best = Double.infinity
            for s in sources {
                let dx = Double(centres[2 * t] - centres[2 * s]), dy = Double(centres[2 * t + 1] - centres[2 * s + 1])
                best = min(best, dx * dx + dy * dy)
            }
            out[t] = best.squareRoot() / diagonal
        }
        return out
    }

    /// Shortest-path length from the nearest source over the 8-connected grid, a step from t to n costing
    /// ‖f_t − f_n‖ (Dijkstra with a binary heap; unreachable tokens get +∞).
    static func geodesic(grid: TokenGrid, features: [Float], channels c: Int, sources: [Int]) -> [Double] {
        geodesicNearest(grid: grid, features: features, channels: c, sources: sources).distance
    }

    /// Like `geodesic`, and also the index (into `sources`) of the nearest source of every token (−1: unreachable).
    static func geodesicNearest(grid: TokenGrid, features: [Float], channels c: Int, sources: [Int])
        -> (distance: [Double], nearest: [Int]) {
        let h = grid.rows * grid.cols
        var dist = [Double](repeating: .infinity, count: h)
        var nearest = [Int](repeating: -1, count: h)
        var heap = MinHeap()
        for (i, s) in sources.enumerated() {
            dist[s] = 0
            nearest[s] = i
            heap.push(0, s)
        }
        while let (d, t) = heap.pop() {
            if d > dist[t] { continue }
            let r = t / grid.cols, col = t % grid.cols
            for rr in max(0, r - 1)...min(grid.rows - 1, r + 1) {
                for cc in max(0, col - 1)...min(grid.cols - 1, col + 1) {
                    let n = rr * grid.cols + cc
                    if n == t { continue }
                    var d2: Float = 0
                    for x in 0..<c {
                        let e = features[t * c + x] - features[n * c + x]
                        d2 += e * e
                    }
                    let candidate = d + Double(d2.squareRoot())
                    if candidate < dist[n] {
                        dist[n] = candidate
                        nearest[n] = nearest[t]
                        heap.push(candidate, n)
                    }
                }
            }
        }
        return (dist, nearest)
    }

    /// A binary min-heap of (key, token).
    struct MinHeap {
        private var keys: [Double] = []
        private var items: [Int] = []

        mutating func push(_ key: Double, _ item: Int) {
            keys.append(key)
            items.append(item)
            var i = keys.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if keys[parent] <= keys[i] { break }
                keys.swapAt(parent, i)
                items.swapAt(parent, i)
                i = parent
            }
        }

        mutating func pop() -> (Double, Int)? {
            guard let firstKey = keys.first, let firstItem = items.first else { return nil }
            let lastKey = keys.removeLast(), lastItem = items.removeLast()
            if !keys.isEmpty {
                keys[0] = lastKey
                items[0] = lastItem
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var smallest = i
                    if l < keys.count, keys[l] < keys[smallest] { smallest = l }
                    if r < keys.count, keys[r] < keys[smallest] { smallest = r }
                    if smallest == i { break }
                    keys.swapAt(smallest, i)
                    items.swapAt(smallest, i)
                    i = smallest
                }
            }
            return (firstKey, firstItem)
        }
    }
}

/// The geodesic click prior of `BeliefPropagator` (`geodesic_click_weight`, 0.0075 by default): a click's influence
/// shaped by its region. Every unclicked token observes, in every EM round, the class of the geodesically nearest
/// clicked token (shortest path over the 8-connected token grid, each step costing the feature distance
/// ‖f_t − f_n‖) at weight w·exp(−d²/(2ρ²)): the class of a click reaches what is connected to it in the image first,
/// not everything that shares units with it. Computed once per propagation; pure.
public struct GeodesicClickPrior: Sendable {
    public var weight: Float
    public var radius: Double

    public init(weight: Float, radius: Double) {
        self.weight = weight
        self.radius = radius
    }

    /// Per token: the class observed (−1 for none) and its weight. Needs a token grid (else no token observes any).
    func observations(encoded: EncodedImage, features: [Float], channels: Int,
                      clicked: BeliefPropagator.ClickedTokens) -> (classOf: [Int32], weight: [Float]) {
        let h = encoded.tokenCount
        var classOf = [Int32](repeating: -1, count: h), weights = [Float](repeating: 0, count: h)
        let sources = (0..<h).filter { clicked.isFixed($0) }
        guard !sources.isEmpty, radius > 0, let grid = encoded.grid, grid.rows * grid.cols == h,
              features.count == h * channels else { return (classOf, weights) }
        let (d, nearest) = BackgroundPrior.geodesicNearest(grid: grid, features: features, channels: channels,
                                                           sources: sources)
        let scale = 1 / (2 * radius * radius)
        for t in 0..<h where !clicked.isFixed(t) && nearest[t] >= 0 {
            classOf[t] = clicked.classOf[sources[nearest[t]]]
            weights[t] = weight * Float(exp(-d[t] * d[t] * scale))
        }
        return (classOf, weights)
    }
}
