import ProbattnImaging
import ProbattnPluginHost
import ProbattnSegmentation
import ProbattnStages
import Testing

/// The adapter's options: the nested form, the deprecated flat form, and the merge over the pipeline's defaults.
@Suite struct AdapterStanzaTests {
    let defaults: [String: [String: ConfigValue]] = ["probabilistic": ["alpha": .double(1), "beta": .double(0)]]

    @Test func theNestedFormMergesOverTheDefaultsKeyByKey() throws {
        let stanza = try AdapterStanza(["unit_stride": .int(2),
                                        "variant": .mapping(["type": .string("probabilistic"), "beta": .double(0.5)])],
                                       defaultVariant: "probabilistic", defaults: defaults)
        #expect(stanza.variant == "probabilistic" && !stanza.isFlat)
        #expect(stanza.variantOptions == ["alpha": .double(1), "beta": .double(0.5)])
        #expect(stanza.unitStride == .int(2))
        // Another variant starts from its plugin's defaults.
        let softmax = try AdapterStanza(["variant": .mapping(["type": .string("softmax")])],
                                        defaultVariant: "probabilistic", defaults: defaults)
        #expect(softmax.variantOptions.isEmpty)
    }

    @Test func theFlatFormStillLoadsTheSameWayAndIsMarked() throws {
        let flat = try AdapterStanza(["variant": .string("probabilistic"), "beta": .double(0.5)],
                                     defaultVariant: "probabilistic", defaults: defaults)
        #expect(flat.isFlat && flat.variantOptions == ["alpha": .double(1), "beta": .double(0.5)])
        let nothing = try AdapterStanza([:], defaultVariant: "probabilistic", defaults: defaults)
        #expect(!nothing.isFlat && nothing.variant == "probabilistic")
    }

    @Test func variantOptionsBesideANestedVariantAreRefused() {
        #expect(throws: SegmentationError.self) {
            try AdapterStanza(["variant": .mapping(["type": .string("softmax")]), "scale": .double(1)],
                              defaultVariant: "probabilistic", defaults: [:])
        }
        #expect(throws: SegmentationError.self) {
            try AdapterStanza(["variant": .mapping(["scale": .double(1)])], defaultVariant: "probabilistic",
                              defaults: [:])
        }
    }

    /// A partial stanza of the default variant is the default pipeline plus what it names: with nothing changed, the
    /// same masks as `PipelineFactory.defaultStages`.
    @Test func aPartialDefaultVariantStanzaRunsTheDefaultPipeline() throws {
        let partial = [StageSpec(role: .adapter, type: "attention",
                                 options: ["variant": .mapping(["type": .string("probabilistic"),
                                                                "alpha": .double(1.0)])])]
        let a = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        let b = try PipelineFactory.make(stages: partial, plugins: builtPlugins)
        let scene = DiscScene()
        let clicks = [Click(x: scene.centre.x, y: scene.centre.y, classIndex: 0), Click(x: 3, y: 3, classIndex: 1)]
        let maskA = try a.segment(try a.prepare(scene.image), clicks: clicks, classCount: 2).mask
        let maskB = try b.segment(try b.prepare(scene.image), clicks: clicks, classCount: 2).mask
        #expect(maskA == maskB)
    }
}
