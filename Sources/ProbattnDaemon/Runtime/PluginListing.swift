import ProbattnPluginHost
import ProbattnSegmentation

/// The `list_plugins` reply body: the same facts `probattnd plugins` prints.
enum PluginListing {
    static func json(_ registry: PluginRegistry) -> JSONValue {
        [
            "directory": .string(registry.directory),
            "plugins": .array(registry.variants.map { variant in
                [
                    "name": .string(variant.name), "file": .string(variant.file),
                    "abi_version": .int(Int(variant.abiVersion)), "summary": .string(variant.summary),
                    "options": .array(variant.options.map { option in
                        ["name": .string(option.name), "type": .string(option.type.rawValue),
                         "default": .string(option.defaultValue), "meaning": .string(option.meaning)]
                    }),
                ]
            }),
            "failures": .array(registry.failures.map { ["file": .string($0.file), "reason": .string($0.reason)] }),
        ]
    }
}
