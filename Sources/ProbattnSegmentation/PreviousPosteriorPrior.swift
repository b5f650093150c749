import ProbattnStages

/// The previous-posterior prior of `BeliefPropagator` (`previous_posterior_weight`, 0.075 by default): the result the
/// annotator saw before the newest click is evidence where that click did not correct it.
///
/// The model: an annotator's click corrects the region around it (the simulator clicks the interior of the largest
/// error); the rest of the previous result was seen and not corrected. So, in every EM round of the propagation for
/// the clicks `c₁ … cₙ`, every token not fixed by a click also observes, as a soft observation, its class distribution
/// under the propagation for `c₁ … cₙ₋₁` (the previous click list's token posteriors, clicked tokens at their
/// clicked values), at weight w·(1 − exp(−d²/(2ρ²))), d the token's distance from the newest click `cₙ` (the last of
/// the list). The prior is recursive: the posterior for `c₁ … cₙ₋₁` itself carries the prior of `c₁ … cₙ₋₂`; the
/// propagation for one click has none. So the result is a function of the click list alone: the incremental path
/// takes the previous posterior from the state of `c₁ … cₙ₋₁`, and without such a state the propagator replays the
/// list's prefixes one by one (step 2 only).
///
/// Computed once per propagation from the newest click; pure (no I/O, no state).
public struct PreviousPosteriorPrior: Sendable, Equatable {
    public var weight: Float
    /// ρ: a fraction of the image diagonal (`euclidean`) or feature units (`geodesic`).
    public var radius: Double
    public var distance: BackgroundPrior.Distance

    public init(weight: Float, radius: Double, distance: BackgroundPrior.Distance) {
        self.weight = weight
        self.radius = radius
        self.distance = distance
    }

    /// The prior weight of every token for the newest click `newest` (0 for tokens `clicked` fixes): d is measured
    /// from the token under the click, between footprint centres over the image diagonal (`euclidean`) or over the
    /// 8-connected token grid with steps costing the feature distance (`geodesic`; without a token grid it falls
    /// back to the Euclidean distance). `features` are the queries (`channels` each).
    func weights(encoded: EncodedImage, features: [Float], channels: Int, clicked: BeliefPropagator.ClickedTokens,
                 newest: Click) -> [Float] {
        let source = Int(encoded.tokenOfPixel[newest.y * encoded.image.width + newest.x])
        let d = BackgroundPrior.distances(distance, encoded: encoded, features: features, channels: channels,
                                          sources: [source])
        return BackgroundPrior.risingWeights(weight, radius: radius, distances: d, clicked: clicked)
    }
}
