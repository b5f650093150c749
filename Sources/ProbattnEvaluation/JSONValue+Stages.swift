import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation
import ProbattnStages

// Evaluation reports name the stages they ran as JSON.

extension JSONValue {
    /// A stage option as JSON (for report fields whose shape is open: the stage options in `summary.json`'s `config`).
    public init(_ value: ConfigValue) {
        switch value {
        case .int(let v): self = .int(v)
        case .double(let v): self = .double(v)
        case .bool(let v): self = .bool(v)
        case .string(let v): self = .string(v)
        case .list(let vs): self = .array(vs.map(JSONValue.init))
        case .mapping(let m): self = .object(m.mapValues(JSONValue.init))
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
