/// Strict decoding of one stage's `options:` block. Each stage's configuration reads the options it knows with a
/// default, then calls `finish()`, which fails on any option that was not read, naming the valid ones. Used by the
/// `StageConfiguration` initialisers of the built-in stages (and available to stage authors).
public struct StageOptionReader {
    public let stage: String
    private let options: [String: ConfigValue]
    private var known: [String] = []

    public init(stage: String, options: [String: ConfigValue]) {
        self.stage = stage
        self.options = options
    }

    private mutating func note(_ name: String) { if !known.contains(name) { known.append(name) } }

    private func invalid(_ name: String, _ value: ConfigValue, _ expected: String) -> SegmentationError {
        SegmentationError(.invalidOption, "\(stage): option '\(name)' = \(value) is invalid (expected \(expected))")
    }

    /// A floating-point option (integers are accepted), within `range`.
    public mutating func double(_ name: String, default value: Double, in range: ClosedRange<Double>) throws -> Double {
        note(name)
        guard let raw = options[name] else { return value }
        let v: Double
        switch raw {
        case .double(let d): v = d
        case .int(let i): v = Double(i)
        default: throw invalid(name, raw, "a number in \(range.lowerBound)...\(range.upperBound)")
        }
        guard v.isFinite, range.contains(v) else {
            throw invalid(name, raw, "a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// An integer option within `range`.
    public mutating func int(_ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        note(name)
        guard let raw = options[name] else { return value }
        let v: Int
        switch raw {
        case .int(let i): v = i
        case .double(let d) where d.rounded() == d && abs(d) < 1e15: v = Int(d)
        default: throw invalid(name, raw, "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        guard range.contains(v) else {
            throw invalid(name, raw, "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// A boolean option.
    public mutating func bool(_ name: String, default value: Bool) throws -> Bool {
        note(name)
        guard let raw = options[name] else { return value }
        guard case .bool(let b) = raw else { throw invalid(name, raw, "true or false") }
        return b
    }

    /// A string option that must be one of `choices`.
    public mutating func choice(_ name: String, default value: String, from choices: [String]) throws -> String {
        note(name)
        guard let raw = options[name] else { return value }
        guard case .string(let s) = raw, choices.contains(s) else {
            throw invalid(name, raw, "one of " + choices.joined(separator: ", "))
        }
        return s
    }

    /// Fails when an option was given that no reader call asked for.
    public func finish() throws {
        let unknown = options.keys.filter { !known.contains($0) }.sorted()
        if let first = unknown.first {
            throw SegmentationError(.unknownOption,
                                    "\(stage): unknown option '\(first)'; valid options: "
                                        + known.sorted().joined(separator: ", "))
        }
    }
}
