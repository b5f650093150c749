import ProbattnImaging
import ProbattnPluginHost
import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The plugins built with the package (found beside the test executable, as `PluginRegistry.defaultDirectory()`
/// does for every product of the build).
let builtPlugins = PluginRegistry.load(directory: PluginRegistry.defaultDirectory())

func expectError(_ code: SegmentationError.Code, mentioning words: [String],
                 _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        try body()
        Issue.record("expected a \(code.rawValue) error", sourceLocation: sourceLocation)
    } catch let error as SegmentationError {
        #expect(error.code == code, sourceLocation: sourceLocation)
        for word in words {
            #expect(error.message.contains(word), "'\(word)' missing in: \(error.message)",
                    sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct FactoryTests {
    @Test func defaultStagesBuild() throws {
        let pipeline = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        #expect(pipeline.encoder is GridFeatureEncoder)
        #expect(pipeline.propagator is BeliefPropagator)
        try PipelineFactory.validate(stages: [], plugins: builtPlugins)
        // The writer role is the daemon's: ignored here.
        try PipelineFactory.validate(stages: [StageSpec(role: .writer, type: "sqlite", options: ["x": .int(1)])],
                                     plugins: builtPlugins)
    }

    @Test func unknownTypesNameTheValidOnes() {
        expectError(.unknownStageType, mentioning: ["superpixel_cnn", "grid_features"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .encoder, type: "superpixel_cnn")], plugins: builtPlugins)
        }
        expectError(.unknownStageType, mentioning: ["belief_propagation"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "crf")], plugins: builtPlugins)
        }
        expectError(.unknownStageType, mentioning: ["attention"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .adapter, type: "identity")], plugins: builtPlugins)
        }
        expectError(.attention, mentioning: ["no_such_variant"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .adapter, type: "attention",
                                                            options: ["variant": .string("no_such_variant")])],
                                         plugins: builtPlugins)
        }
    }

    @Test func unknownOptionsNameTheValidOnes() {
        expectError(.unknownOption, mentioning: ["strid", "stride", "max_tokens", "colour_sigma"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .encoder, type: "grid_features",
                                                            options: ["strid": .int(8)])], plugins: builtPlugins)
        }
        expectError(.unknownOption, mentioning: ["radius", "click_radius", "em_iterations"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["radius": .int(8)])], plugins: builtPlugins)
        }
        expectError(.unknownOption, mentioning: ["temperature", "alpha"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .adapter, type: "attention",
                                                            options: ["variant": .string("probabilistic"),
                                                                      "temperature": .double(2)])],
                                         plugins: builtPlugins)
        }
    }

    @Test func theBoundaryRefinementIsOnByDefaultWithBilateralUpsamplingOnly() throws {
        func refinement(_ options: [String: ConfigValue]) throws -> BeliefPropagator.Refinement? {
            var stages = PipelineFactory.defaultStages
            stages[2] = StageSpec(role: .propagator, type: "belief_propagation", options: options)
            return (try PipelineFactory.make(stages: stages, plugins: builtPlugins).propagator as? BeliefPropagator)?
                .refinement
        }
        #expect(try refinement([:]) == .graphCut)
        // Nearest upsampling has no band to refine: the default follows it instead of making the option an error.
        #expect(try refinement(["upsampling": .string("nearest")]) == BeliefPropagator.Refinement.none)
        #expect(try refinement(["refinement": .string("none")]) == BeliefPropagator.Refinement.none)
    }

    @Test func badValuesAreErrors() {
        expectError(.invalidOption, mentioning: ["stride"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .encoder, type: "grid_features",
                                                            options: ["stride": .string("big")])], plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["unlabelled_weight"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["unlabelled_weight": .double(3)])],
                                         plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["upsampling", "bilateral", "nearest"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["upsampling": .string("cubic")])],
                                         plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["refinement", "graph_cut", "none"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["refinement": .string("crf")])],
                                         plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["refinement", "graph_cut", "bilateral"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["refinement": .string("graph_cut"),
                                                                      "upsampling": .string("nearest")])],
                                         plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["refinement_reach"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .propagator, type: "belief_propagation",
                                                            options: ["refinement_reach": .int(-1)])],
                                         plugins: builtPlugins)
        }
        expectError(.invalidOption, mentioning: ["unit_stride"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .adapter, type: "attention",
                                                            options: ["unit_stride": .int(0)])], plugins: builtPlugins)
        }
        expectError(.invalidStages, mentioning: ["encoder"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .encoder, type: "grid_features"),
                                                  StageSpec(role: .encoder, type: "grid_features")],
                                         plugins: builtPlugins)
        }
    }

    @Test func evaluationSwitchesRewriteTheStages() throws {
        let off = try PipelineFactory.stages(PipelineFactory.defaultStages, keyAdaptation: false,
                                             valuePropagation: false, plugins: builtPlugins)
        let adapter = try #require(off.first { $0.role == .adapter })
        guard case .mapping(let variant)? = adapter.options["variant"] else {
            Issue.record("the adapter's variant is not nested: \(adapter.options)")
            return
        }
        #expect(variant["key_adaptation_iterations"] == .int(0))
        #expect(variant["value_propagation_iterations"] == .int(0))
        #expect(off.first { $0.role == .propagator }?.options["em_iterations"] == .int(0))
        // Switching the variant drops the options the new variant does not declare, so the result validates.
        for name in builtPlugins.variantNames {
            let stages = try PipelineFactory.stages(PipelineFactory.defaultStages, attention: name,
                                                    plugins: builtPlugins)
            try PipelineFactory.validate(stages: stages, plugins: builtPlugins)
        }
    }
}
