// The `probabilistic` plugin reproduces the reference layer's outputs (../shared/reference/probattn, or the subset
// the core tests keep in Tests/Fixtures/probattn), one (n, g) slice at a time through the C ABI in
// token-major layout. Only cases the plugin's options can express are used: uniform scalar precisions, no π, no
// positional embeddings, no mask, no per-element priors.

import Foundation
import ProbattnPluginHost
import Testing

/// The folders that may hold reference cases, best first.
private let referenceFolders: [URL] = [
    repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/reference/probattn"),
    repositoryRoot.appendingPathComponent("Tests/Fixtures/probattn"),
]

/// The cases the plugin can express.
private let expressibleCases = ["softmax_c32_h256", "softmax_n2_g4_c64_h512", "ka1_noprior_g2_c32_h256",
                                "vbp1_noprior_cv2_h256", "extra_sharp_ka3_noprior_c64_h256"]

private func caseFolder(_ name: String) -> URL? {
    referenceFolders.map { $0.appendingPathComponent(name) }
        .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
}

private var referenceCasesAvailable: Bool { expressibleCases.contains { caseFolder($0) != nil } }

/// One case's manifest and tensors (reference layout (N, G, ·, H)).
private struct ReferenceCase {
    let name: String
    let dims: [String: Int]
    let flags: [String: Any]
    let scalars: [String: Double]
    let tensors: [String: [Float]]

    init(folder: URL) throws {
        name = folder.lastPathComponent
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.appendingPathComponent("manifest.json"))) as? [String: Any] ?? [:]
        dims = manifest["dims"] as? [String: Int] ?? [:]
        flags = manifest["flags"] as? [String: Any] ?? [:]
        scalars = manifest["scalars"] as? [String: Double] ?? [:]
        var tensors: [String: [Float]] = [:]
        let inputs = manifest["inputs"] as? [String: [String: Any]] ?? [:]
        let outputs = manifest["outputs"] as? [String: [String: Any]] ?? [:]
        for (key, entry) in inputs.merging(outputs, uniquingKeysWith: { a, _ in a }) {
            guard let file = entry["file"] as? String else { continue }
            let data = try Data(contentsOf: folder.appendingPathComponent(file))
            tensors[key] = data.withUnsafeBytes { raw in
                (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(
                    fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        self.tensors = tensors
    }

    /// Slice (n, g) of a (N, G, rows, H) tensor, transposed to token-major H × rows.
    func tokenMajor(_ key: String, rows: Int, n: Int, g: Int) -> [Float]? {
        guard let tensor = tensors[key], let groups = dims["G"], let h = dims["H"] else { return nil }
        let base = (n * groups + g) * rows * h
        return (0..<(h * rows)).map { index in tensor[base + (index % rows) * h + index / rows] }
    }

    var pluginOptions: [String: PluginOptionValue] {
        let keyAdaptation = flags["key_adaptation"] as? Bool ?? false
        return [
            "alpha": .float(scalars["alpha"] ?? 0), "beta": .float(scalars["beta"] ?? 0),
            "magnitude_priors": .bool(flags["magnitude_priors"] as? Bool ?? false),
            "key_adaptation_iterations": .int(keyAdaptation ? Int64(flags["key_adaptation_iters"] as? Int ?? 0) : 0),
            "value_propagation_iterations": .int(Int64(flags["value_belief_propagation_iters"] as? Int ?? 0)),
            "prior_mode": .string("reference"), "clamp_fixed": .bool(false),
        ]
    }
}

@Suite(.enabled(if: referenceCasesAvailable, "no reference cases found")) struct ReferenceCaseTests {
    @Test func theProbabilisticPluginReproducesTheReferenceCases() throws {
        let variant = try builtPlugins.variant(named: "probabilistic")
        var checked = 0
        for name in expressibleCases {
            guard let folder = caseFolder(name) else { continue }
            let reference = try ReferenceCase(folder: folder)
            let (batch, groups, c, cv, h) = (reference.dims["N"] ?? 0, reference.dims["G"] ?? 0,
                                             reference.dims["C"] ?? 0, reference.dims["Cv"] ?? 0,
                                             reference.dims["H"] ?? 0)
            let options = try variant.resolveOptions(reference.pluginOptions)
            for n in 0..<batch {
                for g in 0..<groups {
                    let input = AttentionInput(
                        tokens: h, units: h, channels: c, valueChannels: cv,
                        queries: try #require(reference.tokenMajor("q", rows: c, n: n, g: g)),
                        keys: try #require(reference.tokenMajor("zeta", rows: c, n: n, g: g)),
                        values: try #require(reference.tokenMajor("mu", rows: cv, n: n, g: g)),
                        fixed: reference.tokenMajor("v_fixed", rows: cv + 1, n: n, g: g))
                    let output = try variant.attend(input, options: options).tokenValues
                    let expected = try #require(reference.tokenMajor("v_updated_f64ref", rows: cv, n: n, g: g))
                    if name.hasPrefix("extra_sharp") {
                        // Ill-conditioned in float32 (README): a finite answer is what is required.
                        #expect(output.allSatisfy { $0.isFinite }, "\(name) (\(n), \(g)) is not finite")
                    } else {
                        let check = withinTolerance(output, expected.map(Double.init))
                        #expect(check.ok, "\(name) (\(n), \(g)): max error \(check.error) > \(check.bound)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked >= 4, "only \(checked) reference slices found")
    }
}
