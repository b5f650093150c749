import ProbattnPluginHost
import ProbattnStages

/// How encoder, adapter and propagator types are registered (`StageDescriptor` with each role's stage protocol and
/// the environment its factory needs).
public typealias EncoderDescriptor = StageDescriptor<any ImageEncoder, Void>
public typealias AdapterDescriptor = StageDescriptor<AdapterStage, AdapterEnvironment>
public typealias PropagatorDescriptor = StageDescriptor<any Propagator, PropagatorEnvironment>

/// What an adapter's factory needs besides its options: the attention variants of the plugin folder.
public struct AdapterEnvironment: Sendable {
    public var plugins: PluginRegistry
    public init(plugins: PluginRegistry) { self.plugins = plugins }
}

/// What an adapter's factory builds: the adapter stage, and the attention it calls (which the propagator calls too).
public struct AdapterStage: Sendable {
    public var adapter: any AttentionAdapter
    public var attention: any TokenAttention
    public init(adapter: any AttentionAdapter, attention: any TokenAttention) {
        self.adapter = adapter
        self.attention = attention
    }
}

/// What a propagator's factory needs besides its options: the attention the adapter built.
public struct PropagatorEnvironment: Sendable {
    public var attention: any TokenAttention
    public init(attention: any TokenAttention) { self.attention = attention }
}

/// The registries of the pipeline's three roles (the writer's is the daemon's: `WriterRegistry`). `PipelineFactory`
/// finds every stage type here, by its `type` name, and nowhere else.
///
/// | role       | type                 | implementation             |
/// | ---------- | -------------------- | -------------------------- |
/// | encoder    | `grid_features`      | `GridFeatureEncoder`       |
/// | adapter    | `attention`          | `VariantAttentionAdapter` (options `variant`, `unit_stride`, `query_embedding`) |
/// | propagator | `belief_propagation` | `BeliefPropagator` (uses the adapter's attention variant) |
public struct PipelineStages: Sendable {
    public var encoders: StageRegistry<any ImageEncoder, Void>
    public var adapters: StageRegistry<AdapterStage, AdapterEnvironment>
    public var propagators: StageRegistry<any Propagator, PropagatorEnvironment>

    public init(encoders: [EncoderDescriptor], adapters: [AdapterDescriptor], propagators: [PropagatorDescriptor]) {
        self.encoders = StageRegistry(role: .encoder, encoders)
        self.adapters = StageRegistry(role: .adapter, adapters)
        self.propagators = StageRegistry(role: .propagator, propagators)
    }

    /// The stage types this package provides.
    public static let builtIn = PipelineStages(encoders: [GridFeatureEncoder.descriptor],
                                               adapters: [VariantAttentionAdapter.descriptor],
                                               propagators: [BeliefPropagator.descriptor])

    /// The deprecated forms of a pipeline stage's options, from its descriptor (none for the writer).
    public func deprecations(_ spec: StageSpec) -> [String] {
        switch spec.role {
        case .encoder: return encoders.deprecations(spec)
        case .adapter: return adapters.deprecations(spec)
        case .propagator: return propagators.deprecations(spec)
        case .writer: return []
        }
    }

    /// The type names a role accepts (none for the writer, which is not a pipeline registry's).
    public func typeNames(_ role: StageRole) -> [String] {
        switch role {
        case .encoder: return encoders.typeNames
        case .adapter: return adapters.typeNames
        case .propagator: return propagators.typeNames
        case .writer: return []
        }
    }
}
