import ProbattnPluginHost
import ProbattnStages

extension BeliefPropagator {
    /// The `belief_propagation` stage's options, decoded strictly (`StageDescriptor` checks them before the
    /// factory builds the stage; `probattnd validate` prints the first error).
    public struct Configuration: StageConfiguration, Equatable {
        public var clickRadius: Double
        public var clickDiscRadius: Double
        public var emIterations: Int
        public var unlabelledWeight: Double
        public var borderWeight: Double
        public var relaxation: Double
        public var borderClass: Int
        public var upsampling: Upsampling
        public var upsampleSpatialSigma: Double
        public var upsampleColourSigma: Double
        public var refinement: Refinement
        public var refinementSmoothness: Double
        public var refinementReach: Int
        public var neighbourWeight: Double
        public var backgroundPriorWeight: Double
        public var backgroundPriorRadius: Double
        public var backgroundPriorDistance: BackgroundPrior.Distance
        public var geodesicClickWeight: Double
        public var geodesicClickRadius: Double
        public var previousPosteriorWeight: Double
        public var previousPosteriorRadius: Double
        public var previousPosteriorDistance: BackgroundPrior.Distance
        public var pixelClickWeight: Double
        public var pixelClickRadius: Double
        public var pixelClickColourScale: Double

        /// Reads every option with its default and range; unknown options are an error naming the valid ones.
        public init(options: [String: ConfigValue]) throws {
            var r = StageOptionReader(stage: "propagator '\(BeliefPropagator.typeName)'", options: options)
            let d = BeliefPropagator(attention: NoAttention())
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
            pixelClickWeight = try r.double("pixel_click_weight", default: d.pixelClickWeight, in: 0...100)
            pixelClickRadius = try r.double("pixel_click_radius", default: d.pixelClickRadius, in: 0.1...1000)
            pixelClickColourScale = try r.double("pixel_click_colour_scale", default: d.pixelClickColourScale,
                                                 in: 0.01...1000)
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

    /// The stage for `configuration`, calling `attention` in its propagation rounds.
    public init(attention: any TokenAttention, configuration c: Configuration) {
        self.init(attention: attention, clickRadius: c.clickRadius, clickDiscRadius: c.clickDiscRadius,
                  emIterations: c.emIterations, unlabelledWeight: c.unlabelledWeight, borderWeight: c.borderWeight,
                  relaxation: c.relaxation, borderClass: c.borderClass, upsampling: c.upsampling,
                  upsampleSpatialSigma: c.upsampleSpatialSigma, upsampleColourSigma: c.upsampleColourSigma,
                  refinement: c.refinement, refinementSmoothness: c.refinementSmoothness,
                  refinementReach: c.refinementReach)
        neighbourWeight = c.neighbourWeight
        backgroundPriorWeight = c.backgroundPriorWeight
        backgroundPriorRadius = c.backgroundPriorRadius
        backgroundPriorDistance = c.backgroundPriorDistance
        geodesicClickWeight = c.geodesicClickWeight
        geodesicClickRadius = c.geodesicClickRadius
        previousPosteriorWeight = c.previousPosteriorWeight
        previousPosteriorRadius = c.previousPosteriorRadius
        previousPosteriorDistance = c.previousPosteriorDistance
        pixelClickWeight = c.pixelClickWeight
        pixelClickRadius = c.pixelClickRadius
        pixelClickColourScale = c.pixelClickColourScale
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

/// Stands in for the attention where only the propagator's default settings are read.
private struct NoAttention: TokenAttention {
    var name: String { "none" }
    var needsGrid: Bool { false }
    var needsUnitsEqualTokens: Bool { false }
    func attend(_ input: AttentionInput) throws -> AttentionOutput {
        throw SegmentationError(.attention, "no attention")
    }
}
