// swift-tools-version:6.0
//
// probattn: an interactive-segmentation daemon built on probabilistic attention.
//
// Module map (each module has one job; arrows are dependencies):
//
//   CBLAS, CZeroMQ, CPNG, CJPEG      system libraries through pkg-config (Debian -dev packages)
//   CProbattnPlugin                  the C ABI header shared by the host and every attention plugin
//   CProbattnKernels                 vectorised inner loops of the blocked attention kernel (C, per-ISA clones)
//   ProbattnCore        -> CBLAS, CProbattnKernels   tensors, BLAS products, softmax, the probabilistic attention
//                                    operator: plain and blocked implementations (no I/O)
//   ProbattnJSON                      the package's one JSON value type, its parser and serialiser
//   ProbattnReferenceCases -> Core, JSON   reads probattn-case-v1 reference cases (manifest.json + .f32 files)
//   ProbattnKernelBench -> Core       `probattn bench kernel`: timing, FLOP count, same-shape sgemm rate, peak RSS
//   ProbattnPluginKit   -> Core, C ABI  helpers for plugins written in Swift (options, exports, dense kernels)
//   ProbattnPluginHost  -> C ABI      dlopen loader, ABI checks, registry of named variants
//   CImageShims         -> CPNG, CJPEG  C glue keeping libpng/libjpeg's longjmp error handling out of Swift frames
//   ProbattnImaging     -> CImageShims  image decoding/encoding, label masks, COCO RLE
//   ProbattnStages      -> Core, Imaging, Logging   the stage contracts, without I/O: roles, specs and config values, the
//                                    encoder / adapter / propagator / writer protocols and their value types, stage
//                                    descriptors and registries, StageContext and the compute budget (CorePool)
//   ProbattnSegmentation -> Stages, Core, PluginHost, Imaging   the encoder / adapter / propagator stages, their
//                                    descriptors (PipelineStages) and the pipeline factory
//   ProbattnSession     -> Stages, Segmentation, Imaging   the session core, without I/O: sessions, conflict policy,
//                                    commands -> results, the in-memory writer stage, prepared cache, per-image
//                                    scheduler and dispatcher; every front door runs it
//   ProbattnEvaluation  -> Stages, Session, Segmentation, JSON   click simulator, metrics, GrabCut/Berkeley readers, the
//                                    evaluation runner (drives the session core), reports and plots
//   ProbattnWire        -> Stages, Session, JSON   protocol version 1: request decoding, reply and update JSON
//   ProbattnStore       -> Stages, GRDB   the SQLite writer stage
//   ProbattnConfig      -> Stages, Segmentation, Session, PluginHost, Yams   the daemon's config: strict decoding, validation
//   ProbattnZMQ         -> CZeroMQ    a small Swift wrapper over libzmq sockets
//   ProbattnClient      -> ZMQ, JSON, Session  the client side of the protocol (`probattn segment`, `bench latency`, tests):
//                                    ZeroMQ, and a small blocking HTTP/1.1 and WebSocket client over POSIX sockets
//   ProbattnKeys        -> ZMQ, Session   key and token files (docs/SECURITY.md), the authorized-keys folder,
//                                    `probattn keys generate`
//   ProbattnDaemon      -> Stages, Session, Wire, Store, Config, ZMQ, Keys, ServiceLifecycle, Hummingbird(+WebSocket), Metrics,
//                                    Prometheus   the transports (ZeroMQ; HTTP and WebSocket on Hummingbird 2), the
//                                    Prometheus metrics of both, runtime (the writers it links, BLAS threads, the core
//                                    pool), reload, systemd notifications, CURVE/ZAP,
//                                    tokens and the access checks
//   ProbattnTesting     -> Stages, Session, Segmentation   an in-process harness (session core + pipeline + in-memory
//                                    store) for the project's tests and for plugin and stage authors
//   ProbattnCommandLine -> PluginHost, ArgumentParser   command pieces both executables share
//   probattn, probattnd               the two executables (probattn links no GRDB)
//   ProbattnFuzzing     -> Wire, Config, Imaging   fuzz targets: raw input to the request parser, the config decoder,
//                                    the image decoders and the RLE decoder; Fuzz/<Name> holds one libFuzzer
//                                    executable per target (`make fuzz`) and Fuzz/corpus the seed inputs
//
// Attention plugins live in Plugins/<Name> as ordinary targets with an explicit `path:` (they are *runtime*
// plugins loaded with dlopen, not SwiftPM package plugins), each built as its own dynamic library product.

import PackageDescription

let swiftSettings: [SwiftSetting] = []

/// One attention plugin: a dynamic library product `probattn-<name>` built from `Plugins/<Folder>`.
func attentionPlugin(_ product: String, target: String, folder: String, swift: Bool = true) -> (Product, Target) {
    let product = Product.library(name: "probattn-\(product)", type: .dynamic, targets: [target])
    let target: Target = swift
        ? .target(name: target, dependencies: ["ProbattnPluginKit", "ProbattnCore", "CProbattnPlugin"],
                  path: "Plugins/\(folder)", swiftSettings: swiftSettings)
        : .target(name: target, dependencies: ["CProbattnPlugin"], path: "Plugins/\(folder)", publicHeadersPath: ".")
    return (product, target)
}

let plugins = [
    attentionPlugin("probabilistic", target: "ProbabilisticAttentionPlugin", folder: "Probabilistic"),
    attentionPlugin("softmax", target: "SoftmaxAttentionPlugin", folder: "Softmax"),
    attentionPlugin("sigmoid", target: "SigmoidAttentionPlugin", folder: "Sigmoid"),
    attentionPlugin("neighborhood", target: "NeighborhoodAttentionPlugin", folder: "Neighborhood"),
    attentionPlugin("context-pool", target: "ContextPoolAttentionPlugin", folder: "ContextPool"),
    attentionPlugin("uniform", target: "UniformAttentionPlugin", folder: "Uniform", swift: false),
]

/// One libFuzzer executable `fuzz-<name>` over a `FuzzTargets` function (`make fuzz` builds it with -sanitize=fuzzer).
func fuzzTarget(_ product: String, folder: String) -> (Product, Target) {
    (.executable(name: "fuzz-\(product)", targets: ["Fuzz\(folder)"]),
     .executableTarget(name: "Fuzz\(folder)", dependencies: ["ProbattnFuzzing"], path: "Fuzz/\(folder)"))
}

let fuzzTargets = [
    fuzzTarget("request", folder: "Request"),
    fuzzTarget("config", folder: "Config"),
    fuzzTarget("image", folder: "Image"),
    fuzzTarget("rle", folder: "RLE"),
]

let package = Package(
    name: "probattn",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "probattn", targets: ["probattn"]),
        .executable(name: "probattnd", targets: ["probattnd"]),
    ] + plugins.map(\.0) + fuzzTargets.map(\.0),
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.60.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .target(name: "CProbattnPlugin"),
        // libpng/libjpeg calls whose longjmp error handling must stay inside C (see its header).
        .target(name: "CImageShims", dependencies: ["CPNG", "CJPEG"],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

        .target(name: "CProbattnKernels"),
        .target(name: "ProbattnCore", dependencies: ["CBLAS", "CProbattnKernels"], swiftSettings: swiftSettings),
        .target(name: "ProbattnJSON", swiftSettings: swiftSettings),
        .target(name: "ProbattnReferenceCases", dependencies: ["ProbattnCore", "ProbattnJSON"], swiftSettings: swiftSettings),
        .target(name: "ProbattnKernelBench", dependencies: ["ProbattnCore"], swiftSettings: swiftSettings),
        .target(name: "ProbattnPluginKit", dependencies: ["ProbattnCore", "CProbattnPlugin"],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnPluginHost", dependencies: ["CProbattnPlugin"], swiftSettings: swiftSettings),
        .target(name: "ProbattnImaging", dependencies: ["CPNG", "CJPEG", "CImageShims"], swiftSettings: swiftSettings),
        // The stage contracts compile in Swift 6 language mode.
        .target(name: "ProbattnStages",
                dependencies: ["ProbattnCore", "ProbattnImaging", .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnSegmentation",
                dependencies: ["ProbattnStages", "ProbattnCore", "ProbattnPluginHost", "ProbattnImaging"],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnSession",
                dependencies: ["ProbattnStages", "ProbattnSegmentation", "ProbattnImaging",
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnEvaluation",
                dependencies: ["ProbattnStages", "ProbattnSession", "ProbattnSegmentation", "ProbattnImaging",
                               "ProbattnJSON"],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnWire", dependencies: ["ProbattnStages", "ProbattnSession", "ProbattnImaging", "ProbattnJSON"],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnStore",
                dependencies: ["ProbattnStages", "ProbattnSession", "ProbattnJSON",
                               .product(name: "GRDB", package: "GRDB.swift")],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnConfig",
                dependencies: ["ProbattnStages", "ProbattnSegmentation", "ProbattnSession", "ProbattnPluginHost",
                               .product(name: "Yams", package: "Yams"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnZMQ", dependencies: ["CZeroMQ"], swiftSettings: swiftSettings),
        .target(name: "ProbattnClient", dependencies: ["ProbattnZMQ", "ProbattnJSON", "ProbattnStages", "ProbattnSession"], swiftSettings: swiftSettings),
        .target(name: "ProbattnKeys", dependencies: ["ProbattnZMQ", "ProbattnSession"], swiftSettings: swiftSettings),
        .target(name: "ProbattnDaemon",
                dependencies: [
                    "ProbattnStages", "ProbattnSession", "ProbattnWire", "ProbattnStore", "ProbattnConfig",
                    "ProbattnSegmentation",
                    "ProbattnZMQ", "ProbattnImaging", "ProbattnPluginHost", "ProbattnJSON", "ProbattnCore", "ProbattnKeys",
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                    .product(name: "Hummingbird", package: "hummingbird"),
                    .product(name: "HummingbirdCore", package: "hummingbird"),
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "NIOPosix", package: "swift-nio"),
                    .product(name: "HTTPTypes", package: "swift-http-types"),
                    .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                    .product(name: "Metrics", package: "swift-metrics"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                ],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnTesting",
                dependencies: ["ProbattnStages", "ProbattnSession", "ProbattnSegmentation", "ProbattnPluginHost",
                               "ProbattnImaging"],
                swiftSettings: swiftSettings),
        .target(name: "ProbattnCommandLine",
                dependencies: ["ProbattnPluginHost", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: swiftSettings),
        .executableTarget(name: "probattn",
                          dependencies: [
                              "ProbattnStages", "ProbattnCore", "ProbattnReferenceCases", "ProbattnKernelBench",
                              "ProbattnPluginHost",
                              "ProbattnImaging", "ProbattnSegmentation", "ProbattnEvaluation", "ProbattnSession",
                              "ProbattnConfig", "ProbattnClient", "ProbattnZMQ", "ProbattnJSON",
                              "ProbattnCommandLine", "ProbattnKeys",
                              .product(name: "ArgumentParser", package: "swift-argument-parser"),
                          ],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "probattnd",
                          dependencies: [
                              "ProbattnDaemon", "ProbattnStages", "ProbattnConfig", "ProbattnPluginHost",
                              "ProbattnCommandLine",
                              .product(name: "ArgumentParser", package: "swift-argument-parser"),
                              .product(name: "Logging", package: "swift-log"),
                          ],
                          swiftSettings: swiftSettings),

        .target(name: "ProbattnFuzzing",
                dependencies: ["ProbattnWire", "ProbattnConfig", "ProbattnImaging", "ProbattnStages", "ProbattnSession"],
                swiftSettings: swiftSettings),

        .testTarget(name: "ProbattnCoreTests", dependencies: ["ProbattnCore", "ProbattnReferenceCases", "ProbattnKernelBench"]),
        .testTarget(name: "PluginTests", dependencies: ["ProbattnPluginHost", "ProbattnCore", "CProbattnPlugin"]),
        .testTarget(name: "ImagingTests", dependencies: ["ProbattnImaging", "ProbattnCore"]),
        .testTarget(name: "SegmentationTests",
                    dependencies: ["ProbattnStages", "ProbattnSegmentation", "ProbattnEvaluation", "ProbattnImaging", "ProbattnPluginHost",
                                   "ProbattnJSON"]),
        .testTarget(name: "SessionTests",
                    dependencies: ["ProbattnStages", "ProbattnSession", "ProbattnTesting", "ProbattnWire", "ProbattnStore",
                                   "ProbattnCore", "ProbattnPluginHost",
                                   "ProbattnSegmentation", "ProbattnImaging", "ProbattnJSON", "ProbattnEvaluation"]),
        .testTarget(name: "DaemonTests",
                    dependencies: ["ProbattnDaemon", "ProbattnStages", "ProbattnConfig", "ProbattnSession", "ProbattnStore",
                                   "ProbattnWire", "ProbattnClient", "ProbattnZMQ", "ProbattnImaging",
                                   "ProbattnSegmentation", "ProbattnEvaluation", "ProbattnJSON", "ProbattnFuzzing",
                                   "ProbattnKeys",
                                   .product(name: "Logging", package: "swift-log")]),
    ] + plugins.map(\.1) + fuzzTargets.map(\.1),
    swiftLanguageModes: [.v6]
)
