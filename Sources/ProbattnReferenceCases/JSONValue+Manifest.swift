import ProbattnJSON

/// Typed reads of the manifest's JSON (the package's `JSONValue`, which keeps booleans and numbers apart: manifest
/// flags are checked by kind).
extension JSONValue {
    var object: [String: JSONValue]? { if case .object(let v) = self { return v } else { return nil } }
    var string: String? { if case .string(let v) = self { return v } else { return nil } }
    var bool: Bool? { if case .bool(let v) = self { return v } else { return nil } }
    var int: Int? { if case .int(let v) = self { return v } else { return nil } }
    /// A number as Double (integers included).
    var number: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }
    /// An array of integers (a shape).
    var intArray: [Int]? {
        guard case .array(let items) = self else { return nil }
        let ints = items.compactMap(\.int)
        return ints.count == items.count ? ints : nil
    }
}
