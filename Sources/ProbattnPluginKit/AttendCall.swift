// One attention call as a Swift plugin sees it: the C input and output structs wrapped as buffers, typed option
// lookups, and error reporting into output->error.

import CProbattnPlugin

/// A failure a variant reports to the host; `message` ends up in `probattn_attend_output.error` (at most 255 bytes).
public struct PluginFailure: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The options the host passed (every option of the variant, defaults filled, type-checked), read by name.
public struct OptionReader {
    let values: UnsafeBufferPointer<probattn_option_value>

    init(values: UnsafeBufferPointer<probattn_option_value>) { self.values = values }

    private func find(_ name: String) throws -> probattn_option_value {
        for value in values {
            if let namePointer = value.name, String(cString: namePointer) == name { return value }
        }
        throw PluginFailure("option '\(name)' was not passed by the host")
    }

    public func int(_ name: String) throws -> Int {
        let value = try find(name)
        guard value.type == PROBATTN_OPTION_INT else { throw PluginFailure("option '\(name)' must be an int") }
        guard let result = Int(exactly: value.int_value) else { throw PluginFailure("option '\(name)' is too large") }
        return result
    }

    /// A float option (an int value is accepted too).
    public func float(_ name: String) throws -> Double {
        let value = try find(name)
        switch value.type {
        case PROBATTN_OPTION_FLOAT: return value.float_value
        case PROBATTN_OPTION_INT: return Double(value.int_value)
        default: throw PluginFailure("option '\(name)' must be a float")
        }
    }

    public func bool(_ name: String) throws -> Bool {
        let value = try find(name)
        guard value.type == PROBATTN_OPTION_BOOL else { throw PluginFailure("option '\(name)' must be a bool") }
        return value.int_value != 0
    }

    public func string(_ name: String) throws -> String {
        let value = try find(name)
        guard value.type == PROBATTN_OPTION_STRING, let text = value.string_value else {
            throw PluginFailure("option '\(name)' must be a string")
        }
        return String(cString: text)
    }
}

/// The inputs and output buffers of one `attend` call. Valid only inside the `runAttend` body.
public struct AttendCall {
    /// H, M, C, Cv.
    public let tokens: Int
    public let units: Int
    public let channels: Int
    public let valueChannels: Int
    /// H×C, M×C, M×Cv (row-major).
    public let queries: UnsafeBufferPointer<Float>
    public let keys: UnsafeBufferPointer<Float>
    public let values: UnsafeBufferPointer<Float>
    /// H×(Cv+1): fixed values then the indicator weight m_i; nil when no token is fixed.
    public let fixed: UnsafeBufferPointer<Float>?
    /// The token grid; both 0 when there is none.
    public let gridRows: Int
    public let gridCols: Int
    /// PROBATTN_KEYS_ALREADY_ADAPTED: the keys passed in are adapted already; do not adapt them again.
    public let keysAlreadyAdapted: Bool
    /// The most threads the call may use (the host's compute budget, ABI 4; at least 1). Cut the work into chunks
    /// that do not depend on it, so that the output is the same for every value.
    public let threads: Int
    public let options: OptionReader
    /// H×Cv: where the token values go (always written).
    public let tokenValues: UnsafeMutableBufferPointer<Float>
    /// M×C and M×Cv buffers for adapted keys/values (nil when the host passed none); call `markKeysAdapted` /
    /// `markValuesAdapted` after writing them.
    public let adaptedKeys: UnsafeMutableBufferPointer<Float>?
    public let adaptedValues: UnsafeMutableBufferPointer<Float>?
    /// H×M buffer for the token-to-unit weights when the host asks for them (nil otherwise); see
    /// `probattn_attend_output.weights` for when a variant may write them. Call `markWeightsWritten` after writing.
    public let weights: UnsafeMutableBufferPointer<Float>?
    private let output: UnsafeMutablePointer<probattn_attend_output>

    public var hasGrid: Bool { gridRows > 0 && gridCols > 0 }

    /// Whether any token has a positive fixed weight.
    public var hasFixedTokens: Bool {
        guard let fixed else { return false }
        let stride = valueChannels + 1
        for i in 0..<tokens where fixed[i * stride + valueChannels] > 0 { return true }
        return false
    }

    public func markKeysAdapted() { output.pointee.keys_adapted = 1 }
    public func markValuesAdapted() { output.pointee.values_adapted = 1 }
    public func markWeightsWritten() { output.pointee.weights_written = 1 }

    fileprivate init(input: UnsafePointer<probattn_attend_input>, output: UnsafeMutablePointer<probattn_attend_output>)
        throws {
        let raw = input.pointee
        guard let h = Int(exactly: raw.tokens), let m = Int(exactly: raw.units), let c = Int(exactly: raw.channels),
              let cv = Int(exactly: raw.value_channels), h > 0, m > 0, c > 0, cv > 0 else {
            throw PluginFailure("tokens, units, channels and value channels must be positive")
        }
        guard let queries = raw.queries, let keys = raw.keys, let values = raw.values,
              let tokenValues = output.pointee.token_values else {
            throw PluginFailure("queries, keys, values and token_values must not be NULL")
        }
        guard raw.option_count >= 0, raw.option_count == 0 || raw.options != nil else {
            throw PluginFailure("option_count without options")
        }
        tokens = h
        units = m
        channels = c
        valueChannels = cv
        self.queries = UnsafeBufferPointer(start: queries, count: h * c)
        self.keys = UnsafeBufferPointer(start: keys, count: m * c)
        self.values = UnsafeBufferPointer(start: values, count: m * cv)
        fixed = raw.fixed.map { UnsafeBufferPointer(start: $0, count: h * (cv + 1)) }
        gridRows = Int(exactly: raw.grid_rows) ?? 0
        gridCols = Int(exactly: raw.grid_cols) ?? 0
        if gridRows > 0 || gridCols > 0 {
            guard gridRows > 0, gridCols > 0, gridRows * gridCols == h else {
                throw PluginFailure("grid \(gridRows)x\(gridCols) does not hold \(h) tokens")
            }
        }
        keysAlreadyAdapted = raw.flags & UInt32(PROBATTN_KEYS_ALREADY_ADAPTED) != 0
        threads = max(1, Int(raw.threads))
        options = OptionReader(values: UnsafeBufferPointer(start: raw.options, count: Int(raw.option_count)))
        self.tokenValues = UnsafeMutableBufferPointer(start: tokenValues, count: h * cv)
        adaptedKeys = output.pointee.adapted_keys.map { UnsafeMutableBufferPointer(start: $0, count: m * c) }
        adaptedValues = output.pointee.adapted_values.map { UnsafeMutableBufferPointer(start: $0, count: m * cv) }
        weights = output.pointee.weights.map { UnsafeMutableBufferPointer(start: $0, count: h * m) }
        self.output = output
    }
}

/// Runs a variant's body for one C `attend` call: wraps the structs, and turns a thrown error into a non-zero return
/// with the message in `output->error`. Use it as the whole body of a variant's `attend` closure.
public func runAttend(_ input: UnsafePointer<probattn_attend_input>?,
                      _ output: UnsafeMutablePointer<probattn_attend_output>?,
                      _ body: (AttendCall) throws -> Void) -> Int32 {
    guard let output else { return 2 }
    output.pointee.keys_adapted = 0
    output.pointee.values_adapted = 0
    output.pointee.weights_written = 0
    do {
        guard let input else { throw PluginFailure("input is NULL") }
        try body(try AttendCall(input: input, output: output))
        return 0
    } catch {
        writeError("\(error)", into: output)
        return 1
    }
}

/// Copies `message` into `output->error`, truncated to 255 bytes on a UTF-8 boundary, NUL-terminated.
public func writeError(_ message: String, into output: UnsafeMutablePointer<probattn_attend_output>) {
    withUnsafeMutableBytes(of: &output.pointee.error) { buffer in
        let capacity = buffer.count - 1
        var text = message
        while text.utf8.count > capacity { text.removeLast() }  // whole characters only
        let bytes = Array(text.utf8)
        for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        buffer[bytes.count] = 0
    }
}
