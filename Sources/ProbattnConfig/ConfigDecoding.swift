import Foundation
import ProbattnSegmentation
import ProbattnStages
import Yams

/// A YAML node together with where it sits in the file, read strictly: every accessor either returns a value of the
/// requested type or throws a one-line `ConfigError` naming the key path (and line). Used by `DaemonConfig.decode`;
/// Swift's `Decodable` ignores unknown keys, so the config is walked by hand instead.
struct ConfigNode {
    let node: Node
    /// Dotted path from the document root, e.g. `limits.max_frames` or `pipeline[0].options.stride`.
    let path: String

    init(_ node: Node, path: String) {
        self.node = node
        self.path = path
    }

    /// ` (line N)` when the parser recorded a position, for messages.
    var lineSuffix: String { node.mark.map { " (line \($0.line))" } ?? "" }

    /// `path` for messages: the root is called "the document".
    var displayPath: String { path.isEmpty ? "the document" : path }

    /// Path of a child key.
    func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// True when the parser resolved the node to the YAML core tag `name` (plain `5` is int, `'5'` is str).
    func tagIs(_ name: Tag.Name) -> Bool { node.tag.rawValue == name.rawValue }

    /// True for an explicit YAML null (`~`, `null` or an empty value).
    var isNull: Bool {
        if case .scalar = node { return tagIs(.null) }
        return false
    }

    /// A short description of what the node is, for "expected X, found Y" messages.
    var found: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull { return "nothing" }
            return "'\(ConfigError.excerpt(scalar.string))'"
        }
    }

    func wrongType(_ expected: String) -> ConfigError {
        ConfigError(.wrongType, path: path, "\(displayPath): expected \(expected), found \(found)\(lineSuffix)")
    }

    func invalidValue(_ detail: String) -> ConfigError {
        ConfigError(.invalidValue, path: path, "\(displayPath): \(detail)\(lineSuffix)")
    }

    /// The node as a mapping whose keys must all be in `allowed` (listed in the error in this order).
    /// Keys must be plain strings and appear once.
    func mapping(allowed: [String]) throws -> [String: ConfigNode] {
        guard case .mapping(let mapping) = node else { throw wrongType("a mapping") }
        var result: [String: ConfigNode] = [:]
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                throw ConfigError(.wrongType, path: path,
                                  "\(displayPath): keys must be words, found a \(keyNode.mapping != nil ? "mapping" : "list")\(ConfigNode(keyNode, path: path).lineSuffix)")
            }
            let key = ConfigError.excerpt(keyScalar.string)
            let child = ConfigNode(valueNode, path: childPath(key))
            guard allowed.contains(key) else {
                let keyLine = ConfigNode(keyNode, path: path).lineSuffix
                throw ConfigError(.unknownKey, path: child.path,
                                  "unknown key '\(key)' at \(child.path)\(keyLine); valid keys \(path.isEmpty ? "at the top level" : "in \(path)"): \(allowed.joined(separator: ", "))")
            }
            guard result[key] == nil else {
                throw ConfigError(.invalidValue, path: child.path,
                                  "duplicate key '\(key)' at \(child.path)\(ConfigNode(keyNode, path: path).lineSuffix)")
            }
            result[key] = child
        }
        return result
    }

    /// The node as a list of nodes.
    func sequence() throws -> [ConfigNode] {
        guard case .sequence(let sequence) = node else { throw wrongType("a list") }
        return sequence.enumerated().map { ConfigNode($0.element, path: "\(path)[\($0.offset)]") }
    }

    /// A scalar as text (an unquoted number or boolean is taken as its text).
    func string() throws -> String {
        guard case .scalar(let scalar) = node, !isNull else { throw wrongType("a string") }
        return scalar.string
    }

    /// A non-empty string.
    func nonEmptyString() throws -> String {
        let text = try string()
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { throw invalidValue("must not be empty") }
        return text
    }

    /// An integer (YAML int; `1_000` and hex are accepted as YAML allows).
    func int() throws -> Int {
        guard case .scalar = node, tagIs(.int), let value = node.int else { throw wrongType("an integer") }
        return value
    }

    /// An integer ≥ `minimum`.
    func int(atLeast minimum: Int) throws -> Int {
        let value = try int()
        guard value >= minimum else { throw invalidValue("must be at least \(minimum), found \(value)") }
        return value
    }

    /// An integer within `range` (the message names the bound it passes).
    func int(in range: ClosedRange<Int>) throws -> Int {
        let value = try int(atLeast: range.lowerBound)
        guard value <= range.upperBound else { throw invalidValue("must be at most \(range.upperBound), found \(value)") }
        return value
    }

    /// `true` or `false`.
    func bool() throws -> Bool {
        guard case .scalar = node, tagIs(.bool), let value = node.bool else { throw wrongType("true or false") }
        return value
    }

    /// One of an enumeration's words (its raw values), listed in the error in declaration order.
    func choice<Choice: CaseIterable & RawRepresentable>(_ type: Choice.Type) throws -> Choice
    where Choice.RawValue == String {
        let text = try string()
        guard let value = Choice(rawValue: text) else {
            let valid = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw invalidValue("'\(ConfigError.excerpt(text))' is not one of: \(valid)")
        }
        return value
    }

    /// A stage option: a scalar (int, float, bool, string), a list of them, or a mapping of such options (a nested
    /// stanza: the adapter's `variant: {type: ..., ...}`).
    func configValue() throws -> ConfigValue {
        switch node {
        case .scalar(let scalar):
            if isNull { throw wrongType("a value") }
            switch node.tag.rawValue {
            case Tag.Name.int.rawValue: if let value = node.int { return .int(value) }
            case Tag.Name.float.rawValue: if let value = node.float { return .double(value) }
            case Tag.Name.bool.rawValue: if let value = node.bool { return .bool(value) }
            default: break
            }
            return .string(scalar.string)
        case .sequence:
            return .list(try sequence().map { try $0.configValue() })
        case .mapping(let mapping):
            var result: [String: ConfigValue] = [:]
            for (keyNode, valueNode) in mapping {
                let key = try ConfigNode(keyNode, path: path).string()
                guard result[key] == nil else { throw invalidValue("duplicate key '\(key)'") }
                result[key] = try ConfigNode(valueNode, path: childPath(key)).configValue()
            }
            return .mapping(result)
        case .alias:
            throw wrongType("a number, true/false, a string, a list or a mapping")
        }
    }
}

extension ConfigNode {
    /// `DaemonConfig.maxNodes`.
    static var maxNodes: Int { DaemonConfig.maxNodes }

    /// Parses YAML text into its root node; nil for an empty document. Throws a `.syntax` error for text that is
    /// not YAML and a `.tooLarge` error naming `maxNodes` for a document that expands beyond it.
    static func root(yaml: String) throws -> ConfigNode? {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(.syntax, path: "", "not valid YAML: \(error)")
        } catch {
            throw ConfigError(.syntax, path: "", "not valid YAML: \(error)")
        }
        guard let node else { return nil }
        try checkNodeCount(node)
        return ConfigNode(node, path: "")
    }

    /// Counts the nodes of the expanded document without recursion and stops at the first node past `maxNodes`.
    /// Yams shares an anchored node between its aliases (copy-on-write), so composing costs the text's size;
    /// only a walk pays for the expansion, and this one pays at most `maxNodes` steps.
    private static func checkNodeCount(_ root: Node) throws {
        // Nodes are counted when they are found (before they are stacked), so the stack never holds more than
        // `maxNodes` of them.
        var stack: [Node] = [root]
        var count = 1
        func found(_ children: Int, under node: Node) throws {
            count += children
            guard count <= maxNodes else {
                let line = node.mark.map { " (line \($0.line))" } ?? ""
                throw ConfigError(.tooLarge, path: "",
                                  "the document has more than \(maxNodes) YAML nodes after alias expansion\(line); "
                                      + "the cap is \(maxNodes) nodes (an alias counts as a copy of its anchor)")
            }
        }
        while let node = stack.popLast() {
            switch node {
            case .scalar, .alias: break
            case .sequence(let sequence):
                try found(sequence.count, under: node)
                stack.append(contentsOf: sequence)
            case .mapping(let mapping):
                try found(2 * mapping.count, under: node)
                for (key, value) in mapping { stack.append(key); stack.append(value) }
            }
        }
    }
}
