import Foundation
import ProbattnCore
import ProbattnJSON

/// Why a probattn-case-v1 case could not be read.
public enum ReferenceCaseError: Error, Equatable, CustomStringConvertible {
    case missingFile(String)
    case unreadableFile(String, String)
    case malformedManifest(String)
    case unsupportedFormat(String)
    case unknownFlag(String)
    case unknownInput(String)
    case wrongByteCount(file: String, expected: Int, actual: Int)
    case inconsistentShape(String)

    public var description: String {
        switch self {
        case .missingFile(let path): return "missing file: \(path)"
        case .unreadableFile(let path, let reason): return "cannot read \(path): \(reason)"
        case .malformedManifest(let reason): return "malformed manifest.json: \(reason)"
        case .unsupportedFormat(let format): return "unsupported case format '\(format)' (expected probattn-case-v1)"
        case .unknownFlag(let flag): return "unknown flag '\(flag)' in manifest.json"
        case .unknownInput(let name): return "unknown input '\(name)' in manifest.json"
        case .wrongByteCount(let file, let expected, let actual):
            return "\(file): expected \(expected) bytes, found \(actual)"
        case .inconsistentShape(let reason): return "inconsistent shapes: \(reason)"
        }
    }
}

/// One reference case (format `probattn-case-v1`): the inputs, the layer's settings, and the reference outputs.
///
/// Loaded by `probattn attend` and by the tests. Every file's byte count is checked against its manifest entry and
/// its shape; unknown flags or inputs are errors, so a case from a newer format is never silently misread.
public struct ReferenceCase: Sendable {
    /// The case's folder name.
    public var name: String
    /// True for the `extra_*` cases.
    public var isExtra: Bool
    public var batch: Int, groups: Int, channels: Int, valueChannels: Int, tokens: Int
    /// The layer's flags as operator options (reference defaults for everything else).
    public var options: ProbabilisticAttentionOptions
    /// The inputs in the reference layout.
    public var inputs: ReferenceLayoutInputs
    /// The shape of `outputs.v_updated`.
    public var outputShape: [Int]
    /// `outputs.v_updated`: the reference forward in float32 (NaN in `extra_sharp_*`), when present.
    public var referenceFloat32: Tensor?
    /// `outputs.v_updated_f64ref`: the float64 forward rounded to float32, when present. Compare against this.
    public var referenceFloat64: Tensor?

    /// The flags a probattn-case-v1 manifest may carry.
    public static let knownFlags: Set<String> = [
        "uniform_query_precision", "uniform_value_precision", "magnitude_priors", "key_adaptation",
        "key_adaptation_iters", "value_belief_propagation_iters",
    ]
    /// The inputs a probattn-case-v1 manifest may carry.
    public static let knownInputs: Set<String> = [
        "q", "zeta", "mu", "alpha", "beta", "pi", "v_init", "v_fixed", "zeta_prior_precision", "mu_prior_precision",
        "q_pos_emb", "zeta_pos_emb", "v_pos_emb", "nonzero_wts_mask",
    ]

    /// Reads the case in `directory` (a folder holding `manifest.json` and the `.f32` files).
    public static func load(from directory: String) throws -> ReferenceCase {
        let folder = URL(fileURLWithPath: directory)
        let manifestURL = folder.appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            throw ReferenceCaseError.missingFile(manifestURL.path)
        }
        let manifestData: Data
        do { manifestData = try Data(contentsOf: manifestURL) } catch {
            throw ReferenceCaseError.unreadableFile(manifestURL.path, "\(error)")
        }
        guard let manifest = (try? JSONDecoder().decode(JSONValue.self, from: manifestData))?.object else {
            throw ReferenceCaseError.malformedManifest("not a JSON object")
        }
        if let format = manifest["format"]?.string, format != "probattn-case-v1" {
            throw ReferenceCaseError.unsupportedFormat(format)
        }
        guard let dims = manifest["dims"]?.object else {
            throw ReferenceCaseError.malformedManifest("no 'dims' object")
        }
        func dim(_ key: String) throws -> Int {
            guard let value = dims[key]?.int, value > 0 else {
                throw ReferenceCaseError.malformedManifest("dims.\(key) missing or not a positive integer")
            }
            return value
        }
        let N = try dim("N"), G = try dim("G"), C = try dim("C"), Cv = try dim("Cv"), H = try dim("H")

        let flags = manifest["flags"]?.object ?? [:]
        for key in flags.keys where !knownFlags.contains(key) { throw ReferenceCaseError.unknownFlag(key) }
        func flag(_ key: String) throws -> Bool {
            guard let value = flags[key] else { return false }
            guard let bool = value.bool else {
                throw ReferenceCaseError.malformedManifest("flags.\(key) is not a boolean")
            }
            return bool
        }
        func count(_ key: String) throws -> Int {
            guard let value = flags[key] else { return 0 }
            guard let int = value.int, int >= 0 else {
                throw ReferenceCaseError.malformedManifest("flags.\(key) is not a non-negative integer")
            }
            return int
        }
        let options = ProbabilisticAttentionOptions(
            magnitudePriors: try flag("magnitude_priors"), keyAdaptation: try flag("key_adaptation"),
            keyAdaptationIterations: try count("key_adaptation_iters"),
            valuePropagationIterations: try count("value_belief_propagation_iters"))

        guard let inputEntries = manifest["inputs"]?.object else {
            throw ReferenceCaseError.malformedManifest("no 'inputs' object")
        }
        for key in inputEntries.keys where !knownInputs.contains(key) { throw ReferenceCaseError.unknownInput(key) }
        func tensor(_ entries: [String: JSONValue], _ key: String, section: String) throws -> Tensor? {
            guard let raw = entries[key] else { return nil }
            guard let entry = raw.object else {
                throw ReferenceCaseError.malformedManifest("\(section).\(key) is not an object")
            }
            return try readTensor(entry, name: "\(section).\(key)", folder: folder)
        }
        func required(_ key: String) throws -> Tensor {
            guard let t = try tensor(inputEntries, key, section: "inputs") else {
                throw ReferenceCaseError.malformedManifest("required input '\(key)' is missing")
            }
            return t
        }
        let scalars = manifest["scalars"]?.object ?? [:]
        func precision(_ key: String, uniform: Bool) throws -> ReferencePrecision {
            if uniform {
                guard let value = scalars[key]?.number else {
                    throw ReferenceCaseError.malformedManifest(
                        "uniform_\(key == "alpha" ? "query" : "value")_precision is set but scalars.\(key) is missing")
                }
                return .scalar(Float(value))
            }
            return .perUnit(try required(key))
        }
        let inputs = ReferenceLayoutInputs(
            q: try required("q"), zeta: try required("zeta"), mu: try required("mu"),
            alpha: try precision("alpha", uniform: try flag("uniform_query_precision")),
            beta: try precision("beta", uniform: try flag("uniform_value_precision")),
            pi: try tensor(inputEntries, "pi", section: "inputs"),
            vInit: try tensor(inputEntries, "v_init", section: "inputs"),
            vFixed: try tensor(inputEntries, "v_fixed", section: "inputs"),
            zetaPriorPrecision: try tensor(inputEntries, "zeta_prior_precision", section: "inputs"),
            muPriorPrecision: try tensor(inputEntries, "mu_prior_precision", section: "inputs"),
            qPosEmb: try tensor(inputEntries, "q_pos_emb", section: "inputs"),
            zetaPosEmb: try tensor(inputEntries, "zeta_pos_emb", section: "inputs"),
            vPosEmb: try tensor(inputEntries, "v_pos_emb", section: "inputs"),
            nonzeroWeightsMask: try tensor(inputEntries, "nonzero_wts_mask", section: "inputs"))
        guard inputs.q.shape == [N, G, C, H] else {
            throw ReferenceCaseError.inconsistentShape("q has shape \(inputs.q.shape), dims say \([N, G, C, H])")
        }

        guard let outputEntries = manifest["outputs"]?.object,
              let vUpdated = outputEntries["v_updated"]?.object,
              let outputShape = vUpdated["shape"]?.intArray else {
            throw ReferenceCaseError.malformedManifest("outputs.v_updated with a shape is required")
        }
        let expectedChannels = inputs.vPosEmb != nil ? 2 * Cv : Cv
        guard outputShape == [N, G, expectedChannels, H] else {
            throw ReferenceCaseError.inconsistentShape(
                "outputs.v_updated has shape \(outputShape), expected \([N, G, expectedChannels, H])")
        }
        let referenceFloat32 = try tensor(outputEntries, "v_updated", section: "outputs")
        let referenceFloat64 = try tensor(outputEntries, "v_updated_f64ref", section: "outputs")
        if let t = referenceFloat64, t.shape != outputShape {
            throw ReferenceCaseError.inconsistentShape("outputs.v_updated_f64ref has shape \(t.shape)")
        }
        let name = manifest["name"]?.string ?? folder.lastPathComponent
        return ReferenceCase(
            name: name, isExtra: manifest["extra"]?.bool ?? name.hasPrefix("extra_"),
            batch: N, groups: G, channels: C, valueChannels: Cv, tokens: H, options: options, inputs: inputs,
            outputShape: outputShape, referenceFloat32: referenceFloat32, referenceFloat64: referenceFloat64)
    }

    /// Reads one `.f32` file described by a manifest entry (`file`, `shape`, optional `bytes` and `dtype`).
    static func readTensor(_ entry: [String: JSONValue], name: String, folder: URL) throws -> Tensor {
        guard let file = entry["file"]?.string, let shape = entry["shape"]?.intArray else {
            throw ReferenceCaseError.malformedManifest("\(name) needs 'file' and 'shape'")
        }
        if let dtype = entry["dtype"]?.string, dtype != "float32" {
            throw ReferenceCaseError.malformedManifest("\(name) has dtype \(dtype); only float32 is supported")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw ReferenceCaseError.malformedManifest("\(name) has a negative extent in \(shape)")
        }
        let expectedBytes = shape.reduce(1, *) * MemoryLayout<Float>.size
        if let declared = entry["bytes"]?.int, declared != expectedBytes {
            throw ReferenceCaseError.wrongByteCount(file: file, expected: expectedBytes, actual: declared)
        }
        let url = folder.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else { throw ReferenceCaseError.missingFile(url.path) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ReferenceCaseError.unreadableFile(url.path, "\(error)") }
        guard data.count == expectedBytes else {
            throw ReferenceCaseError.wrongByteCount(file: file, expected: expectedBytes, actual: data.count)
        }
        return try Tensor(shape: shape, storage: Float32File.decode(data))
    }

    /// Runs the operator on this case with its flags (plus any extra `adjust`ments to the options).
    public func run(adjust: (inout ProbabilisticAttentionOptions) -> Void = { _ in }) throws -> Tensor {
        var options = self.options
        adjust(&options)
        return try ProbabilisticAttention(options: options).attendReferenceLayout(inputs)
    }

    /// The acceptance tolerance: 2e-5 · max(1, max |v_updated_f64ref|).
    public var tolerance: Float? {
        referenceFloat64.map { 2e-5 * max(1, $0.maxMagnitude) }
    }
}

/// Raw little-endian float32 files.
public enum Float32File {
    /// Decodes little-endian float32 values (the byte count must be a multiple of 4).
    public static func decode(_ data: Data) -> [Float] {
        let count = data.count / 4
        var values = [Float](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            for index in 0..<count {
                let bits = raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)
                values[index] = Float(bitPattern: UInt32(littleEndian: bits))
            }
        }
        return values
    }

    /// Encodes values as little-endian float32.
    public static func encode(_ values: [Float]) -> Data {
        var data = Data(count: values.count * 4)
        data.withUnsafeMutableBytes { raw in
            for (index, value) in values.enumerated() {
                raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        }
        return data
    }
}
