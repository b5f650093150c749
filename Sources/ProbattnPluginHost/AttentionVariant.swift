// One loaded attention variant: its description (name, summary, options, requirements) and the call into the plugin.

import CProbattnPlugin
import Foundation

/// The inputs of one attention call (one image, one head), token-major as in probattn_plugin.h.
public struct AttentionInput: Sendable {
    /// H, the number of tokens (queries).
    public var tokens: Int
    /// M, the number of units (keys and values).
    public var units: Int
    /// C, the query/key channels.
    public var channels: Int
    /// Cv, the value channels.
    public var valueChannels: Int
    /// H×C, row-major.
    public var queries: [Float]
    /// M×C, row-major.
    public var keys: [Float]
    /// M×Cv, row-major.
    public var values: [Float]
    /// H×(Cv+1): fixed values, then the indicator/weight m_i in [0, 1]; nil when no token is fixed.
    public var fixed: [Float]?
    /// The token grid (rows × cols == tokens, row-major); both 0 when tokens have no grid.
    public var gridRows: Int
    public var gridCols: Int
    /// The keys are already adapted (cached from an earlier call): a variant that adapts keys must not do it again.
    public var keysAlreadyAdapted: Bool
    /// Ask the variant for its token-to-unit weights W (H×M; `probattn_attend_output.weights`, ABI ≥ 2). Only
    /// variants whose output is the two-hop mixture propagation through a W that depends on queries and keys alone
    /// give them (`AttentionOutput.weights`); the others ignore the request.
    public var wantsWeights: Bool
    /// The most threads the call may use (`probattn_attend_input.threads`, ABI ≥ 4: the caller's compute budget;
    /// at least 1). The variant's output is the same for every value.
    public var threads: Int

    public init(tokens: Int, units: Int, channels: Int, valueChannels: Int,
                queries: [Float], keys: [Float], values: [Float], fixed: [Float]? = nil,
                gridRows: Int = 0, gridCols: Int = 0, keysAlreadyAdapted: Bool = false, wantsWeights: Bool = false,
                threads: Int = 1) {
        self.tokens = tokens
        self.units = units
        self.channels = channels
        self.valueChannels = valueChannels
        self.queries = queries
        self.keys = keys
        self.values = values
        self.fixed = fixed
        self.gridRows = gridRows
        self.gridCols = gridCols
        self.keysAlreadyAdapted = keysAlreadyAdapted
        self.wantsWeights = wantsWeights
        self.threads = max(1, threads)
    }
}

/// What a variant returned.
public struct AttentionOutput: Sendable {
    /// H×Cv token values.
    public var tokenValues: [Float]
    /// M×C adapted keys, when the variant adapts keys (cacheable: they do not depend on feedback).
    public var adaptedKeys: [Float]?
    /// M×Cv adapted values, when the variant adapts values.
    public var adaptedValues: [Float]?
    /// H×M token-to-unit weights, when they were asked for (`AttentionInput.wantsWeights`) and the variant gives
    /// them: its output for any fixed values is then μ_j = Σ_i W_ij m_i v*_i / Σ_i W_ij m_i, out_i = Σ_j W_ij μ_j.
    public var weights: [Float]?

    public init(tokenValues: [Float], adaptedKeys: [Float]? = nil, adaptedValues: [Float]? = nil,
                weights: [Float]? = nil) {
        self.tokenValues = tokenValues
        self.adaptedKeys = adaptedKeys
        self.adaptedValues = adaptedValues
        self.weights = weights
    }
}

/// What a variant is (probattn_plugin.h's PROBATTN_PROPAGATION_NEEDS_UNITS_EQUAL_TOKENS, PROBATTN_COMPARES_BY_DISTANCE,
/// PROBATTN_GIVES_WEIGHTS): the host decides how to run a variant from these, never from its name.
public struct VariantCapabilities: Sendable, Equatable {
    /// Value propagation puts unit j at token j: the adapter must use one unit per token.
    public var propagationNeedsUnitsEqualTokens: Bool
    /// Similarity from query–key distances (RBF), not dot products.
    public var comparesByDistance: Bool
    /// Can give its token-to-unit weights W.
    public var givesWeights: Bool

    public init(propagationNeedsUnitsEqualTokens: Bool, comparesByDistance: Bool, givesWeights: Bool) {
        self.propagationNeedsUnitsEqualTokens = propagationNeedsUnitsEqualTokens
        self.comparesByDistance = comparesByDistance
        self.givesWeights = givesWeights
    }

    init(flags: UInt32) {
        self.init(propagationNeedsUnitsEqualTokens: flags & UInt32(PROBATTN_PROPAGATION_NEEDS_UNITS_EQUAL_TOKENS) != 0,
                  comparesByDistance: flags & UInt32(PROBATTN_COMPARES_BY_DISTANCE) != 0,
                  givesWeights: flags & UInt32(PROBATTN_GIVES_WEIGHTS) != 0)
    }

    /// What plugins of ABI versions 1 and 2 are taken to be.
    public static let legacy = VariantCapabilities(propagationNeedsUnitsEqualTokens: true, comparesByDistance: false,
                                                   givesWeights: false)
}

/// The C signature of a variant's `attend`.
typealias AttendFunction = @convention(c) (UnsafePointer<probattn_attend_input>?,
                                           UnsafeMutablePointer<probattn_attend_output>?) -> Int32

/// One attention variant registered by a plugin. Immutable; `attend` may be called from several threads at once
/// (the plugin contract requires reentrancy).
public final class AttentionVariant: Sendable {
    /// The `type:` in config (lower_snake_case).
    public let name: String
    /// One line describing the variant.
    public let summary: String
    /// The file name of the plugin that registered it (e.g. `libprobattn-softmax.so`).
    public let file: String
    /// The ABI version the plugin exported (one of `PluginRegistry.supportedABIVersions`).
    public let abiVersion: UInt32
    /// The options the variant accepts, in the plugin's order.
    public let options: [PluginOptionSpec]
    /// The variant needs the token grid (gridRows × gridCols).
    public let needsGrid: Bool
    /// The variant needs M == H (unit j sits at token j).
    public let needsUnitsEqualTokens: Bool
    /// What the variant is (from its descriptor; `VariantCapabilities.legacy` for ABI 1 and 2).
    public let capabilities: VariantCapabilities

    private let attendFunction: AttendFunction
    private let validateFunction: probattn_validate_options_fn?
    private let defaults: [PluginOptionValue]

    /// Whether the plugin checks option values itself (`validate_options`, ABI ≥ 3).
    public var validatesOptions: Bool { validateFunction != nil }

    init(name: String, summary: String, file: String, abiVersion: UInt32, options: [PluginOptionSpec],
         defaults: [PluginOptionValue], needsGrid: Bool, needsUnitsEqualTokens: Bool,
         capabilities: VariantCapabilities, attend: AttendFunction, validateOptions: probattn_validate_options_fn?) {
        self.capabilities = capabilities
        self.validateFunction = validateOptions
        self.name = name
        self.summary = summary
        self.file = file
        self.abiVersion = abiVersion
        self.options = options
        self.defaults = defaults
        self.needsGrid = needsGrid
        self.needsUnitsEqualTokens = needsUnitsEqualTokens
        self.attendFunction = attend
    }

    /// Checks `given` against the option specs and fills in the defaults.
    /// Strict: an unknown option name throws an error listing the valid ones; a value of the wrong type throws; an int
    /// is accepted for a float option.
    public func resolveOptions(_ given: [String: PluginOptionValue]) throws -> ResolvedOptions {
        let valid = options.map(\.name)
        for key in given.keys.sorted() where !valid.contains(key) {
            throw PluginHostError.unknownOption(variant: name, option: key, valid: valid)
        }
        var entries: [(spec: PluginOptionSpec, value: PluginOptionValue)] = []
        for (index, spec) in options.enumerated() {
            guard let value = given[spec.name] else {
                entries.append((spec, defaults[index]))
                continue
            }
            switch (spec.type, value) {
            case (.int, .int), (.float, .float), (.bool, .bool), (.string, .string):
                entries.append((spec, value))
            case (.float, .int(let integer)):
                entries.append((spec, .float(Double(integer))))
            default:
                throw PluginHostError.optionType(variant: name, option: spec.name, expected: spec.type,
                                                 given: "\(value.typeName) \(value)")
            }
        }
        return ResolvedOptions(variantName: name, entries: entries)
    }

    /// Runs the plugin's own option checks (`validate_options`; nothing when it has none). Called by
    /// `probattnd validate` and before a pipeline is built. Throws `PluginHostError.invalidOption` with the plugin's
    /// one-line message.
    public func validateOptions(_ resolved: ResolvedOptions) throws {
        guard let validateFunction else { return }
        let options = COptions(resolved)
        defer { options.free() }
        let values = options.values
        var message = [CChar](repeating: 0, count: 256)
        let status = values.withUnsafeBufferPointer { buffer in
            message.withUnsafeMutableBufferPointer { error in
                validateFunction(buffer.baseAddress, Int64(buffer.count), error.baseAddress, Int64(error.count))
            }
        }
        guard status != 0 else { return }
        message[message.count - 1] = 0
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw PluginHostError.invalidOption(variant: name, reason: text.isEmpty ? "options refused by the plugin" : text)
    }

    /// Validates the shapes and the variant's requirements, calls the plugin and returns its results.
    /// Throws `PluginHostError.invalidInput` for bad inputs and `.pluginFailed` with the plugin's text when it fails.
    public func attend(_ input: AttentionInput, options resolved: ResolvedOptions) throws -> AttentionOutput {
        try validate(input)
        guard resolved.variantName == name else {
            throw PluginHostError.invalidInput(
                variant: name, reason: "options were resolved for variant '\(resolved.variantName)'")
        }
        let (h, m, c, cv) = (input.tokens, input.units, input.channels, input.valueChannels)
        var tokenValues = [Float](repeating: 0, count: h * cv)
        var adaptedKeys = [Float](repeating: 0, count: m * c)
        var adaptedValues = [Float](repeating: 0, count: m * cv)
        // Only variants that say they give W are asked (ABI ≥ 3 descriptors); the buffer is allocated only then.
        let askWeights = input.wantsWeights && capabilities.givesWeights
        let (weightCount, overflow) = h.multipliedReportingOverflow(by: m)
        if askWeights && overflow {
            throw PluginHostError.invalidInput(variant: name, reason: "an H×M weight matrix of \(h)×\(m) is too large")
        }
        var weights = [Float](repeating: 0, count: askWeights ? weightCount : 0)

        let options = COptions(resolved)
        defer { options.free() }
        var cOptions = options.values

        var output = probattn_attend_output()
        let status: Int32 = input.queries.withUnsafeBufferPointer { queries in
            input.keys.withUnsafeBufferPointer { keys in
                input.values.withUnsafeBufferPointer { values in
                    withOptionalBuffer(input.fixed) { fixed in
                        cOptions.withUnsafeMutableBufferPointer { optionBuffer in
                            tokenValues.withUnsafeMutableBufferPointer { tokenOut in
                                adaptedKeys.withUnsafeMutableBufferPointer { keysOut in
                                    adaptedValues.withUnsafeMutableBufferPointer { valuesOut in
                                      weights.withUnsafeMutableBufferPointer { weightsOut in
                                        var cInput = probattn_attend_input()
                                        cInput.tokens = Int64(h)
                                        cInput.units = Int64(m)
                                        cInput.channels = Int64(c)
                                        cInput.value_channels = Int64(cv)
                                        cInput.queries = queries.baseAddress
                                        cInput.keys = keys.baseAddress
                                        cInput.values = values.baseAddress
                                        cInput.fixed = fixed
                                        cInput.grid_rows = Int64(input.gridRows)
                                        cInput.grid_cols = Int64(input.gridCols)
                                        cInput.options = UnsafePointer(optionBuffer.baseAddress)
                                        cInput.option_count = Int64(optionBuffer.count)
                                        cInput.flags = input.keysAlreadyAdapted
                                            ? UInt32(PROBATTN_KEYS_ALREADY_ADAPTED) : 0
                                        cInput.threads = UInt32(clamping: max(1, input.threads))
                                        output.token_values = tokenOut.baseAddress
                                        output.adapted_keys = keysOut.baseAddress
                                        output.adapted_values = valuesOut.baseAddress
                                        output.weights = askWeights ? weightsOut.baseAddress : nil
                                        return attendFunction(&cInput, &output)
                                      }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if status != 0 {
            let text = errorText(of: &output)
            throw PluginHostError.pluginFailed(
                variant: name, message: text.isEmpty ? "returned \(status) without a message" : text)
        }
        let weightsWritten = askWeights && output.weights_written != 0
        if weightsWritten, !weights.allSatisfy({ $0.isFinite && $0 >= 0 }) {
            throw PluginHostError.pluginFailed(variant: name, message: "returned weights that are negative or not finite")
        }
        return AttentionOutput(tokenValues: tokenValues,
                               adaptedKeys: output.keys_adapted != 0 ? adaptedKeys : nil,
                               adaptedValues: output.values_adapted != 0 ? adaptedValues : nil,
                               weights: weightsWritten ? weights : nil)
    }

    /// The shape and requirement checks `attend` runs before calling the plugin (public so that a stage can check a
    /// configuration once, before any image arrives).
    public func validate(_ input: AttentionInput) throws {
        func fail(_ reason: String) -> PluginHostError { .invalidInput(variant: name, reason: reason) }
        let (h, m, c, cv) = (input.tokens, input.units, input.channels, input.valueChannels)
        guard h > 0, m > 0, c > 0, cv > 0 else {
            throw fail("tokens, units, channels and value channels must be positive (got H=\(h), M=\(m), C=\(c), Cv=\(cv))")
        }
        func product(_ a: Int, _ b: Int) throws -> Int {
            let (result, overflow) = a.multipliedReportingOverflow(by: b)
            if overflow { throw fail("a matrix of \(a)×\(b) elements is too large") }
            return result
        }
        func check(_ array: [Float], rows: Int, cols: Int, _ what: String) throws {
            let expected = try product(rows, cols)
            guard array.count == expected else {
                throw fail("\(what) has \(array.count) elements, expected \(rows)×\(cols) = \(expected)")
            }
            guard array.allSatisfy({ $0.isFinite }) else { throw fail("\(what) contains NaN or infinite values") }
        }
        try check(input.queries, rows: h, cols: c, "queries")
        try check(input.keys, rows: m, cols: c, "keys")
        try check(input.values, rows: m, cols: cv, "values")
        if let fixed = input.fixed {
            try check(fixed, rows: h, cols: cv + 1, "fixed")
            for i in 0..<h {
                let weight = fixed[i * (cv + 1) + cv]
                guard weight >= 0, weight <= 1 else {
                    throw fail("fixed indicator of token \(i) is \(weight); it must lie in [0, 1]")
                }
            }
        }
        if input.gridRows != 0 || input.gridCols != 0 {
            guard input.gridRows > 0, input.gridCols > 0 else {
                throw fail("grid \(input.gridRows)×\(input.gridCols): both sides must be positive, or both 0 for no grid")
            }
            guard try product(input.gridRows, input.gridCols) == h else {
                throw fail("grid \(input.gridRows)×\(input.gridCols) does not hold the \(h) tokens")
            }
        } else if needsGrid {
            throw fail("this variant needs the token grid (grid rows and columns), and none was given")
        }
        if needsUnitsEqualTokens && m != h {
            throw fail("this variant needs as many units as tokens (unit j sits at token j); got M=\(m), H=\(h)")
        }
    }
}

/// Calls `body` with the base address of `array`, or nil when there is no array.
private func withOptionalBuffer<R>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// The NUL-terminated text in `output.error` (at most 255 bytes, invalid UTF-8 repaired).
private func errorText(of output: inout probattn_attend_output) -> String {
    withUnsafeBytes(of: &output.error) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Resolved options as the C ABI's `probattn_option_value` array, with the C strings it points to (freed by `free`).
private struct COptions {
    var values: [probattn_option_value] = []
    private var strings: [UnsafeMutablePointer<CChar>] = []

    init(_ resolved: ResolvedOptions) {
        func cString(_ text: String) -> UnsafePointer<CChar>? {
            guard let copy = strdup(text) else { return nil }
            strings.append(copy)
            return UnsafePointer(copy)
        }
        values = resolved.entries.map { entry in
            var option = probattn_option_value()
            option.name = cString(entry.spec.name)
            switch entry.value {
            case .int(let v):
                option.type = PROBATTN_OPTION_INT
                option.int_value = v
            case .float(let v):
                option.type = PROBATTN_OPTION_FLOAT
                option.float_value = v
            case .bool(let v):
                option.type = PROBATTN_OPTION_BOOL
                option.int_value = v ? 1 : 0
            case .string(let v):
                option.type = PROBATTN_OPTION_STRING
                option.string_value = cString(v)
            }
            return option
        }
    }

    func free() { strings.forEach { Glibc.free($0) } }
}
