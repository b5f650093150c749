import ProbattnPluginHost
import ProbattnStages

extension BeliefPropagator {
    /// The `belief_propagation` stage's options with their defaults, decoded strictly from the config
    /// (`StageDescriptor` checks them before the factory builds the stage; `probattnd validate` prints the first
    /// error). The stage holds one (`BeliefPropagator.configuration`).
    public struct Configuration: StageConfiguration, Equatable {
        /// Step 1: a click fixes the tokens whose footprint comes within this many pixels of it (`click_radius`).
        public var clickRadius: Double = 3
        /// Step 4: the radius in pixels of the disc forced to a click's class (`click_disc_radius`).
        public var clickDiscRadius: Double = 3
        /// Step 2: the number of EM rounds (`em_iterations`; 0 = no propagation).
        public var emIterations: Int = 20
        /// Step 2: the weight of an unclicked token's own posterior among its observations (`unlabelled_weight`).
        public var unlabelledWeight: Double = 0.02
        /// Step 2: the weight of the border class for tokens on the image border (`border_weight`).
        public var borderWeight: Double = 0.02
        /// Over-relaxation factor ω of the EM rounds (1 = plain EM; in (1, 2) it extrapolates each round's change,
        /// which speeds up the slow, diffusion-like modes of the fixed-point iteration).
        public var relaxation: Double = 1.9
        /// The class the image border is weak evidence for; -1 = the last class (background in the default class
        /// list).
        public var borderClass: Int = -1
        /// Step 3: how token distributions become pixel labels (`upsampling`).
        public var upsampling: Upsampling = .bilateral
        /// Spatial sigma of the bilateral upsampling, in token strides.
        public var upsampleSpatialSigma: Double = 1.2
        /// Colour sigma of the bilateral upsampling, in ΔE (CIELAB).
        public var upsampleColourSigma: Double = 8
        /// Pixel-level refinement of the upsampled mask in the band where token classes change (needs bilateral
        /// upsampling, whose band it refines).
        public var refinement: Refinement = .graphCut
        /// λ of the refinement: the weight of a colour edge-aware smoothness term against the pixels' class
        /// log-probabilities.
        public var refinementSmoothness: Double = 6
        /// How far from the upsampled boundary the refinement may move it, in pixels.
        public var refinementReach: Int = 6
        /// κ of the neighbour coupling (0 = off, the default): each EM round's E-step is multiplied by
        /// exp(κ Σ_n s_tn p_n(c)) over the token's 8 grid neighbours n, s_tn = exp(−½‖f_t − f_n‖²) (mean-field Potts
        /// prior along the image's own adjacency, contrast-sensitive through the features; `NeighbourCoupling`).
        public var neighbourWeight: Double = 0
        /// w₀ of the background prior on tokens without evidence (0 = off, the default): in every EM round each
        /// unclicked token also observes the border class (background) at weight w₀·g(d), the border prior extended
        /// to the whole image (objects are a minority of it), so an undecided region holds background unless a
        /// click's evidence reaches it (`BackgroundPrior`).
        public var backgroundPriorWeight: Double = 0
        /// ρ of the prior's fall-off near the positive clicks (0 = none, g = 1): g(d) = 1 − exp(−d²/(2ρ²)), d the
        /// token's distance from the nearest token fixed to a class other than the border class
        /// (`backgroundPriorDistance`).
        public var backgroundPriorRadius: Double = 0
        /// How d is measured: `euclidean` (between footprint centres, as a fraction of the image diagonal) or
        /// `geodesic` (the shortest path over the 8-connected token grid, each step costing the feature distance
        /// ‖f_t − f_n‖ of the mixture's own metric, so a step across a colour edge is long and one inside a flat
        /// region short).
        public var backgroundPriorDistance: BackgroundPrior.Distance = .euclidean
        /// w of the geodesic click prior (0 = off): every unclicked token also observes the class of the geodesically
        /// nearest clicked token at weight w·exp(−d²/(2ρ²)) (`GeodesicClickPrior`). On by default with the
        /// previous-posterior prior: the two are one model of a click (docs/SEGMENTATION.md, step 2).
        public var geodesicClickWeight: Double = 0.0075
        /// ρ of the geodesic click prior, in feature units (one sigma of colour, position or texture per unit).
        public var geodesicClickRadius: Double = 4
        /// w of the previous-posterior prior (0 = off): every token not fixed by a click also observes its class
        /// distribution under the propagation for the click list without its last click, at weight
        /// w·(1 − exp(−d²/(2ρ²))), d the distance from the last click (`PreviousPosteriorPrior`).
        public var previousPosteriorWeight: Double = 0.075
        /// ρ of the previous-posterior prior: a fraction of the image diagonal (`euclidean`) or feature units
        /// (`geodesic`).
        public var previousPosteriorRadius: Double = 0.1
        /// How the previous-posterior prior's d is measured (as `backgroundPriorDistance`).
        public var previousPosteriorDistance: BackgroundPrior.Distance = .euclidean

        /// The defaults.
        public init() {}

        /// Reads every option with its default and range; unknown options are an error naming the valid ones.
        public init(options: [String: ConfigValue]) throws {
            var r = StageOptionReader(stage: "propagator '\(BeliefPropagator.typeName)'", options: options)
            let d = Configuration()
            upsampling = Upsampling(rawValue: try r.choice("upsampling", default: d.upsampling.rawValue,
                                                           from: Upsampling.allCases.map(\.rawValue))) ?? .bilateral
            // The refinement works on the bilateral upsampling's band: on by default with it, off with `nearest`.
            let defaultRefinement: Refinement = upsampling == .bilateral ? d.refinement : .none
            clickRadius = try r.double("click_radius", default: d.clickRadius, in: 0...1000)
            clickDiscRadius = try r.double("click_disc_radius", default: d.clickDiscRadius, in: 0...1000)
            emIterations = try r.int("em_iterations", default: d.emIterations, in: 0...100)
            unlabelledWeight = try r.double("unlabelled_weight", default: d.unlabelledWeight, in: 0...1)
            borderWeight = try r.double("border_weight", default: d.borderWeight, in: 0...1)
            relaxation = try r.double("relaxation", default: d.relaxation, in: 0.1...1.99)
            borderClass = try r.int("border_class", default: d.borderClass, in: -1...255)
            upsampleSpatialSigma = try r.double("upsample_spatial_sigma", default: d.upsampleSpatialSigma,
                                                in: 0.01...100)
            upsampleColourSigma = try r.double("upsample_colour_sigma", default: d.upsampleColourSigma,
                                               in: 0.01...1000)
            refinement = Refinement(rawValue: try r.choice("refinement", default: defaultRefinement.rawValue,
                                                           from: Refinement.allCases.map(\.rawValue))) ?? .none
            refinementSmoothness = try r.double("refinement_smoothness", default: d.refinementSmoothness,
                                                in: 0...1000)
            refinementReach = try r.int("refinement_reach", default: d.refinementReach, in: 0...1000)
            neighbourWeight = try r.double("neighbour_weight", default: d.neighbourWeight, in: 0...100)
            backgroundPriorWeight = try r.double("background_prior_weight", default: d.backgroundPriorWeight,
                                                 in: 0...1)
            backgroundPriorRadius = try r.double("background_prior_radius", default: d.backgroundPriorRadius,
                                                 in: 0...1000)
            backgroundPriorDistance = BackgroundPrior.Distance(rawValue: try r.choice(
                "background_prior_distance", default: d.backgroundPriorDistance.rawValue,
                from: BackgroundPrior.Distance.allCases.map(\.rawValue))) ?? .euclidean
            geodesicClickWeight = try r.double("geodesic_click_weight", default: d.geodesicClickWeight, in: 0...1)
            geodesicClickRadius = try r.double("geodesic_click_radius", default: d.geodesicClickRadius,
                                               in: 0.001...1000)
            previousPosteriorWeight = try r.double("previous_posterior_weight", default: d.previousPosteriorWeight,
                                                   in: 0...1)
            previousPosteriorRadius = try r.double("previous_posterior_radius", default: d.previousPosteriorRadius,
                                                   in: 0.001...1000)
            previousPosteriorDistance = BackgroundPrior.Distance(rawValue: try r.choice(
                "previous_posterior_distance", default: d.previousPosteriorDistance.rawValue,
                from: BackgroundPrior.Distance.allCases.map(\.rawValue))) ?? .euclidean
            try r.finish()
        }

        /// The graph cut refines the band of the bilateral upsampling, so it needs that upsampling.
        public func validate() throws {
            if refinement == .graphCut, upsampling != .bilateral {
                throw SegmentationError(.invalidOption, "propagator '\(BeliefPropagator.typeName)': option "
                                            + "'refinement' = graph_cut works on the band of the bilateral upsampling "
                                            + "(expected 'upsampling' = bilateral, or 'refinement' = none)")
            }
        }
    }

    /// Builds the stage from its config options (strict: unknown options are an error).
    public init(attention: any TokenAttention, options: [String: ConfigValue]) throws {
        let configuration = try Configuration(options: options)
        try configuration.validate()
        self.init(attention: attention, configuration: configuration)
    }

    /// The registration of `type: belief_propagation`.
    public static let descriptor = PropagatorDescriptor(
        role: .propagator, typeName: typeName,
        summary: "value belief propagation through the adapter's attention, bilateral upsampling, graph-cut refinement",
        configuration: Configuration.self
    ) { configuration, environment in
        BeliefPropagator(attention: environment.attention, configuration: configuration)
    }
}
