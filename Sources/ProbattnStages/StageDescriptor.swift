/// A stage's options as a typed value: decoded strictly from the config's `options:` block, then checked.
/// Both steps throw `SegmentationError` with a one-line message that names the stage and the option, which
/// `probattnd validate` prints as it is.
public protocol StageConfiguration: Sendable {
    /// Reads the options: an unknown option, or a value of the wrong type or out of its range, is an error.
    init(options: [String: ConfigValue]) throws
    /// Checks what depends on several options together (called after `init(options:)`, before the factory).
    func validate() throws
}

extension StageConfiguration {
    public func validate() throws {}
}

/// A configuration for stages that take no options (every option is an error).
public struct NoOptions: StageConfiguration {
    public init(options: [String: ConfigValue]) throws {
        if let first = options.keys.sorted().first {
            throw SegmentationError(.unknownOption, "unknown option '\(first)'; it takes no options")
        }
    }
}

/// How one stage type is registered: its role, the `type` name the config uses, its typed configuration and its
/// factory. `Stage` is what the factory builds (the role's protocol); `Environment` is what the factory needs
/// besides the options (the loaded plugins for the adapter, the attention for the propagator, the store settings for
/// the writer). A registry of descriptors (`StageRegistry`) is the only place where a stage type is found by name.
public struct StageDescriptor<Stage, Environment>: Sendable {
    public let role: StageRole
    public let typeName: String
    /// One line saying what the stage does (for listings and errors).
    public let summary: String
    private let check: @Sendable ([String: ConfigValue]) throws -> Void
    private let build: @Sendable ([String: ConfigValue], Environment) throws -> Stage
    private let deprecated: @Sendable ([String: ConfigValue]) -> [String]

    /// Registers a stage whose options decode into `Configuration`; `make` builds the stage from a validated
    /// configuration. Errors of the configuration are prefixed with "role 'type': " unless they already name it.
    /// `deprecations` says which ways of writing the options still work but will not always (one line each, without
    /// the key path; none by default).
    public init<Configuration: StageConfiguration>(
        role: StageRole, typeName: String, summary: String, configuration: Configuration.Type,
        deprecations: @escaping @Sendable ([String: ConfigValue]) -> [String] = { _ in [] },
        make: @escaping @Sendable (Configuration, Environment) throws -> Stage
    ) {
        self.role = role
        self.typeName = typeName
        self.summary = summary
        deprecated = deprecations
        let prefix = "\(role.rawValue) '\(typeName)': "
        let decode: @Sendable ([String: ConfigValue]) throws -> Configuration = { options in
            do {
                let configuration = try Configuration(options: options)
                try configuration.validate()
                return configuration
            } catch let error as SegmentationError where !error.message.hasPrefix(prefix) {
                throw SegmentationError(error.code, prefix + error.message)
            }
        }
        check = { options in _ = try decode(options) }
        build = { options, environment in try make(try decode(options), environment) }
    }

    /// Decodes and checks `options` without building the stage.
    public func validate(options: [String: ConfigValue]) throws { try check(options) }

    /// The deprecated forms `options` uses (one line each; empty when none).
    public func deprecations(options: [String: ConfigValue]) -> [String] { deprecated(options) }

    /// Decodes and checks `options`, then builds the stage.
    public func make(options: [String: ConfigValue], environment: Environment) throws -> Stage {
        try build(options, environment)
    }
}

extension StageDescriptor where Environment == Void {
    public func make(options: [String: ConfigValue]) throws -> Stage { try make(options: options, environment: ()) }
}

/// The stage types one role accepts, by `type` name.
public struct StageRegistry<Stage, Environment>: Sendable {
    public let role: StageRole
    /// The descriptors in registration order.
    public let descriptors: [StageDescriptor<Stage, Environment>]

    /// A registry of `descriptors`, each of role `role` and with a distinct type name.
    public init(role: StageRole, _ descriptors: [StageDescriptor<Stage, Environment>]) {
        precondition(descriptors.allSatisfy { $0.role == role }, "a descriptor of another role")
        precondition(Set(descriptors.map(\.typeName)).count == descriptors.count, "two descriptors of one type name")
        self.role = role
        self.descriptors = descriptors
    }

    /// The accepted type names, in registration order.
    public var typeNames: [String] { descriptors.map(\.typeName) }

    /// The descriptor of `type`; an unknown type is an error naming the valid ones.
    public func descriptor(_ type: String) throws -> StageDescriptor<Stage, Environment> {
        guard let descriptor = descriptors.first(where: { $0.typeName == type }) else {
            // The name as given, shortened and on one line (it comes from a config file).
            let shown = (type.count > 80 ? String(type.prefix(80)) + "…" : type)
                .split(whereSeparator: \.isNewline).joined(separator: " ")
            throw SegmentationError(.unknownStageType, "unknown \(role.rawValue) type '\(shown)'; valid types: "
                                        + typeNames.joined(separator: ", "))
        }
        return descriptor
    }

    /// Builds the stage `spec` names (its role must be this registry's).
    public func make(_ spec: StageSpec, environment: Environment) throws -> Stage {
        try descriptor(spec.type).make(options: spec.options, environment: environment)
    }

    /// Checks the type and options of `spec` without building it.
    public func validate(_ spec: StageSpec) throws {
        try descriptor(spec.type).validate(options: spec.options)
    }

    /// The deprecated forms of `spec`'s options (none for an unknown type).
    public func deprecations(_ spec: StageSpec) -> [String] {
        (try? descriptor(spec.type))?.deprecations(options: spec.options) ?? []
    }
}

extension StageRegistry where Environment == Void {
    public func make(_ spec: StageSpec) throws -> Stage { try make(spec, environment: ()) }
}
