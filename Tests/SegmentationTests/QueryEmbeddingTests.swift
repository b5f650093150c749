import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The adapter's distance embedding for dot-product attention variants (`VariantAttentionAdapter.QueryEmbedding`).
@Suite struct QueryEmbeddingTests {
    /// Features like the encoder's: large, un-centred positions next to small colour/texture values.
    func features(tokens: Int, channels: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(state: seed)
        return (0..<(tokens * channels)).map { i in
            let x = i % channels
            return Float(x < 2 ? 30 * rng.unit() + 5 : 8 * rng.unit() - 4)
        }
    }

    @Test func scaledDotProductIsMinusHalfSquaredDistance() {
        let h = 40, c = 6
        let f = features(tokens: h, channels: c, seed: 5)
        let seeds = [0, 7, 13, 39]
        let e = VariantAttentionAdapter.distanceEmbedding(features: f, tokens: h, channels: c, seeds: seeds)
        #expect(e.channels == c + 2)
        #expect(e.queries.count == h * (c + 2) && e.keys.count == seeds.count * (c + 2))
        let scale = 1 / Double(e.channels).squareRoot()
        for i in 0..<h {
            for (j, t) in seeds.enumerated() {
                var dot = 0.0, distance = 0.0
                for x in 0..<e.channels { dot += Double(e.queries[i * e.channels + x]) * Double(e.keys[j * e.channels + x]) }
                for x in 0..<c { distance += pow2(Double(f[i * c + x]) - Double(f[t * c + x])) }
                // Oracle in Double; the Float32 embedding loses little thanks to the centring.
                #expect(abs(scale * dot - (-0.5 * distance)) <= 1e-3 * (1 + distance), "token \(i), unit \(j)")
            }
        }
    }

    @Test func embeddingIgnoresACommonTranslation() {
        let h = 25, c = 4
        let f = features(tokens: h, channels: c, seed: 9)
        let shifted = f.enumerated().map { $0.element + Float(($0.offset % c) * 100) }
        let a = VariantAttentionAdapter.distanceEmbedding(features: f, tokens: h, channels: c, seeds: [1, 2])
        let b = VariantAttentionAdapter.distanceEmbedding(features: shifted, tokens: h, channels: c, seeds: [1, 2])
        for (x, y) in zip(a.queries + a.keys, b.queries + b.keys) { #expect(abs(x - y) <= 1e-3 * (1 + abs(x))) }
    }

    @Test func adapterKeepsTheEmbeddedQueriesForThePropagator() throws {
        let scene = DiscScene(width: 96, height: 72)
        let encoded = try GridFeatureEncoder(stride: 8, superpixelIterations: 0).encode(scene.image)
        let plain = try VariantAttentionAdapter(attention: ReferenceAttention(keyIterations: 0)).adapt(encoded)
        #expect(plain.queries == nil && plain.channels == nil)
        let embedded = try VariantAttentionAdapter(attention: ReferenceAttention(keyIterations: 0),
                                                   queryEmbedding: .distance).adapt(encoded)
        let c = encoded.featureDimension + 2
        #expect(embedded.channels == c)
        #expect(embedded.queries?.count == encoded.tokenCount * c)
        #expect(embedded.keys.count == encoded.tokenCount * c)
    }

    @Test func automaticChoiceFollowsTheVariantsSimilarity() throws {
        #expect(PipelineFactory.automaticQueryEmbedding(try builtPlugins.variant(named: "probabilistic").capabilities)
                == .features)
        for name in ["softmax", "sigmoid", "neighborhood", "context_pool"] {
            #expect(PipelineFactory.automaticQueryEmbedding(try builtPlugins.variant(named: name).capabilities)
                    == .distance)
        }
        let softmax = try PipelineFactory.make(stages: [StageSpec(role: .adapter, type: "attention",
                                                                  options: ["variant": .string("softmax")])],
                                               plugins: builtPlugins)
        #expect((softmax.adapter as? VariantAttentionAdapter)?.queryEmbedding == .distance)
        let forced = try PipelineFactory.make(stages: [StageSpec(role: .adapter, type: "attention",
                                                                 options: ["variant": .string("softmax"),
                                                                           "query_embedding": .string("features")])],
                                              plugins: builtPlugins)
        #expect((forced.adapter as? VariantAttentionAdapter)?.queryEmbedding == .features)
        let byDefault = try PipelineFactory.make(stages: PipelineFactory.defaultStages, plugins: builtPlugins)
        #expect((byDefault.adapter as? VariantAttentionAdapter)?.queryEmbedding == .features)
        expectError(.invalidOption, mentioning: ["query_embedding", "auto", "features", "distance"]) {
            try PipelineFactory.validate(stages: [StageSpec(role: .adapter, type: "attention",
                                                            options: ["query_embedding": .string("cosine")])],
                                         plugins: builtPlugins)
        }
    }

    private func pow2(_ x: Double) -> Double { x * x }
}
