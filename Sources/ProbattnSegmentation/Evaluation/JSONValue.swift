/// A JSON value, for report fields whose shape is open (the pipeline's stage options in `summary.json`'s `config`).
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let v = try? container.decode(Bool.self) { self = .bool(v) }
        else if let v = try? container.decode(Int.self) { self = .int(v) }
        else if let v = try? container.decode(Double.self) { self = .double(v) }
        else if let v = try? container.decode(String.self) { self = .string(v) }
        else if let v = try? container.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let v): try container.encode(v)
        case .int(let v): try container.encode(v)
        case .double(let v): try container.encode(v)
        case .string(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }

    /// A stage option as JSON.
    public init(_ value: ConfigValue) {
        switch value {
        case .int(let v): self = .int(v)
        case .double(let v): self = .double(v)
        case .bool(let v): self = .bool(v)
        case .string(let v): self = .string(v)
        case .list(let vs): self = .array(vs.map(JSONValue.init))
        }
    }

    /// A pipeline's stages as JSON: `[{"role": ..., "type": ..., "options": {...}}, ...]`.
    public static func stages(_ stages: [StageSpec]) -> JSONValue {
        .array(stages.map { stage in
            .object(["role": .string(stage.role.rawValue), "type": .string(stage.type),
                     "options": .object(stage.options.mapValues(JSONValue.init))])
        })
    }
}
