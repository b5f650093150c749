import Foundation

/// A parsed JSON value that keeps booleans and numbers apart (manifest flags are checked by kind).
enum JSONValue: Decodable, Equatable {
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(Int.self) { self = .int(value); return }
        if let value = try? container.decode(Double.self) { self = .double(value); return }
        if let value = try? container.decode(String.self) { self = .string(value); return }
        if let value = try? container.decode([JSONValue].self) { self = .array(value); return }
        self = .object(try container.decode([String: JSONValue].self))
    }

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
