import Foundation
import ProbattnImaging
import ProbattnStages

/// Everything about one image that does not depend on clicks: computed once when the image is opened, then cached
/// (the daemon keeps these in an LRU within its memory budget and recomputes an evicted one on demand).
public struct PreparedImage: Sendable {
    /// The encoder's output for the working copy of the image (`resolution`).
    public var encoded: EncodedImage
    public var adapted: AdaptedImage
    /// Seconds spent in the encoder and in the adapter.
    public var encodeSeconds: Double
    public var adaptSeconds: Double
    /// The image's own size and the factor of the working copy the stages saw (factor 1: the image itself).
    public var resolution: WorkingResolution

    public init(encoded: EncodedImage, adapted: AdaptedImage, encodeSeconds: Double, adaptSeconds: Double,
                resolution: WorkingResolution? = nil) {
        self.encoded = encoded
        self.resolution = resolution ?? WorkingResolution(width: encoded.image.width, height: encoded.image.height,
                                                          factor: 1)
        self.adapted = adapted
        self.encodeSeconds = encodeSeconds
        self.adaptSeconds = adaptSeconds
    }

    /// Bytes held, for the cache's memory budget.
    public var memoryBytes: Int { encoded.memoryBytes + adapted.memoryBytes }
}

/// The encoder → adapter → propagator chain of one configured pipeline. Immutable and thread-safe: the daemon calls
/// it concurrently for different images. Built from the config's stage list by `PipelineFactory`.
public struct SegmentationPipeline: Sendable {
    public let encoder: any ImageEncoder
    public let adapter: any AttentionAdapter
    public let propagator: any Propagator

    public init(encoder: any ImageEncoder, adapter: any AttentionAdapter, propagator: any Propagator) {
        self.encoder = encoder
        self.adapter = adapter
        self.propagator = propagator
    }

    /// Runs what is done once per image: encoding and key adaptation. Called when an image is opened (and again
    /// if its cached preparation was evicted), with the context of that request. With `resolution` (which must have
    /// `image`'s size) the stages get its working copy of the image; the reduction counts as encoding time.
    public func prepare(_ image: RGBImage, resolution: WorkingResolution? = nil,
                        context: StageContext = .standalone) throws -> PreparedImage {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let working = resolution?.reduce(image) ?? image
        let encoded = try encoder.encode(working, context: context)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let adapted = try adapter.adapt(encoded, context: context)
        let t2 = DispatchTime.now().uptimeNanoseconds
        return PreparedImage(encoded: encoded, adapted: adapted,
                             encodeSeconds: Double(t1 - t0) / 1e9, adaptSeconds: Double(t2 - t1) / 1e9,
                             resolution: resolution)
    }

    /// Runs what depends on feedback: called after every click (or undo) with all current clicks of the image and
    /// the context of that request.
    public func segment(_ prepared: PreparedImage, clicks: [Click], classCount: Int,
                        context: StageContext = .standalone) throws -> SegmentationResult {
        try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks,
                                 classCount: classCount, context: context)
    }

    /// The same with tokens fixed besides the clicks' (`Propagator.propagate(…fixed:…)`), and, with `previous`,
    /// from the state of an earlier propagation of the same prepared image (`Propagator.propagate(…previous:)`).
    public func segment(_ prepared: PreparedImage, clicks: [Click], fixed: FixedTokens, classCount: Int,
                        context: StageContext = .standalone, previous: (any PropagatorState)? = nil) throws
        -> SegmentationResult {
        try propagator.propagate(encoded: prepared.encoded, adapted: prepared.adapted, clicks: clicks, fixed: fixed,
                                 classCount: classCount, context: context, previous: previous)
    }
}
