// Opening plugin shared objects: dlopen, the ABI check, the registration callback, and the process-wide table that
// makes each library register once per process (dlopen of the same file returns the same handle).

import CProbattnPlugin
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A variant as its plugin registered it, copied out of the C structs.
struct RegisteredVariant {
    let name: String
    let summary: String
    let options: [PluginOptionSpec]
    let defaults: [PluginOptionValue]
    let requirements: UInt32
    let capabilities: VariantCapabilities
    let attend: AttendFunction
    let validateOptions: probattn_validate_options_fn?

    func variant(file: String, abiVersion: UInt32) -> AttentionVariant {
        AttentionVariant(name: name, summary: summary, file: file, abiVersion: abiVersion, options: options,
                         defaults: defaults,
                         needsGrid: requirements & UInt32(PROBATTN_NEEDS_GRID) != 0,
                         needsUnitsEqualTokens: requirements & UInt32(PROBATTN_NEEDS_UNITS_EQUAL_TOKENS) != 0,
                         capabilities: capabilities, attend: attend, validateOptions: validateOptions)
    }
}

/// A library that loaded and registered: its variants and the variants it tried to register but the host refused.
struct LoadedLibrary {
    let abiVersion: UInt32
    let variants: [RegisteredVariant]
    let refusals: [String]
}

enum LibraryLoadResult {
    case success(LoadedLibrary)
    case failure(String)
}

/// Every library this process has opened, by dlopen handle. Libraries are never closed: Swift code cannot be
/// unloaded safely, and a variant's `attend` pointer must stay valid.
/// Unchecked `Sendable`: `byHandle` is read and written only inside `lock`, held across the whole dlopen-and-register
/// step.
final class LoadedLibraries: @unchecked Sendable {
    static let shared = LoadedLibraries()

    private let lock = NSLock()
    private var byHandle: [UnsafeMutableRawPointer: LoadedLibrary] = [:]

    /// Opens `path` and registers its variants, or returns what was registered the first time this library was
    /// opened. The failure text is one line for operators.
    func load(path: String) -> LibraryLoadResult {
        lock.lock()
        defer { lock.unlock() }
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let detail = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            if !Self.hasELFMagic(path) {
                return .failure("not a shared object (\(detail))")
            }
            return .failure("cannot be loaded: \(detail)")
        }
        if let known = byHandle[handle] {
            return .success(known)
        }
        let versionSymbol = dlsym(handle, PROBATTN_PLUGIN_ABI_SYMBOL)
        let entrySymbol = dlsym(handle, PROBATTN_PLUGIN_ENTRY_SYMBOL)
        var missing: [String] = []
        if versionSymbol == nil { missing.append(PROBATTN_PLUGIN_ABI_SYMBOL) }
        if entrySymbol == nil { missing.append(PROBATTN_PLUGIN_ENTRY_SYMBOL) }
        guard let versionSymbol, let entrySymbol, missing.isEmpty else {
            return .failure("missing entry symbols: " + missing.joined(separator: ", ")
                            + " (not a probattn plugin)")
        }
        let version = versionSymbol.load(as: UInt32.self)
        guard PluginRegistry.supportedABIVersions.contains(version) else {
            return .failure("ABI version \(version), host speaks \(PluginRegistry.supportedABIVersionsText)"
                            + " (rebuild the plugin against this probattn_plugin.h)")
        }
        let entry = unsafeBitCast(entrySymbol, to: probattn_plugin_register_fn.self)
        let collector = RegistrationCollector(abiVersion: version)
        let context = Unmanaged.passRetained(collector)
        var registrar = probattn_registrar(host: context.toOpaque(), register_variant: registerVariantCallback)
        let status = entry(&registrar)
        context.release()
        collector.closed = true
        guard status == 0 else {
            let refusals = collector.refusals.isEmpty ? "" : " (" + collector.refusals.joined(separator: "; ") + ")"
            return .failure("probattn_plugin_register returned \(status)\(refusals)")
        }
        guard !collector.variants.isEmpty || !collector.refusals.isEmpty else {
            return .failure("probattn_plugin_register registered no variant")
        }
        let library = LoadedLibrary(abiVersion: version, variants: collector.variants,
                                    refusals: collector.refusals)
        byHandle[handle] = library
        return .success(library)
    }

    /// Whether the file starts with the ELF magic number (tells "not a shared object" from "cannot be loaded").
    private static func hasELFMagic(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let magic = (try? handle.read(upToCount: 4)) ?? Data()
        return magic == Data([0x7F, 0x45, 0x4C, 0x46])
    }
}

/// Receives the `register_variant` calls of one plugin entry.
private final class RegistrationCollector {
    /// The ABI version the plugin exported: its `probattn_variant` has the fields of that version only.
    let abiVersion: UInt32
    var variants: [RegisteredVariant] = []
    var refusals: [String] = []
    /// Set after the entry returns: later calls (a plugin keeping the registrar) are refused.
    var closed = false

    init(abiVersion: UInt32) { self.abiVersion = abiVersion }

    /// Copies and checks one variant. Returns the refusal reason, or nil when accepted.
    func accept(_ pointer: UnsafePointer<probattn_variant>?) -> String? {
        if closed { return "register_variant called after probattn_plugin_register returned" }
        guard let pointer else { return "register_variant called with NULL" }
        // A plugin built against an older header passed a shorter struct: copy only the fields it has, the rest stay
        // zero (version 1 and 2 variants: no capability flags, no validate_options).
        var raw = probattn_variant()
        let size = abiVersion >= 3 ? MemoryLayout<probattn_variant>.size
            : MemoryLayout<probattn_variant>.offset(of: \probattn_variant.capabilities)!
        withUnsafeMutableBytes(of: &raw) { destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: size))
        }
        guard let namePointer = raw.name else { return "a variant with no name" }
        let name = String(cString: namePointer)
        guard Self.isSnakeCase(name) else {
            return "variant name '\(name)' is not lower_snake_case"
        }
        if variants.contains(where: { $0.name == name }) {
            return "variant name '\(name)' registered twice by this file"
        }
        guard let attend = raw.attend else { return "variant '\(name)' has no attend function" }
        let summary = raw.summary.map { String(cString: $0) } ?? ""
        guard raw.option_count >= 0, raw.option_count == 0 || raw.options != nil else {
            return "variant '\(name)': option_count \(raw.option_count) without options"
        }
        var options: [PluginOptionSpec] = []
        var defaults: [PluginOptionValue] = []
        for index in 0..<Int(raw.option_count) {
            guard let spec = raw.options?[index] else { break }
            guard let optionNamePointer = spec.name else { return "variant '\(name)': option \(index) has no name" }
            let optionName = String(cString: optionNamePointer)
            guard Self.isSnakeCase(optionName) else {
                return "variant '\(name)': option name '\(optionName)' is not lower_snake_case"
            }
            guard !options.contains(where: { $0.name == optionName }) else {
                return "variant '\(name)': option '\(optionName)' declared twice"
            }
            let type: PluginOptionType
            switch spec.type {
            case PROBATTN_OPTION_INT: type = .int
            case PROBATTN_OPTION_FLOAT: type = .float
            case PROBATTN_OPTION_BOOL: type = .bool
            case PROBATTN_OPTION_STRING: type = .string
            default: return "variant '\(name)': option '\(optionName)' has unknown type \(spec.type.rawValue)"
            }
            let defaultText = spec.default_value.map { String(cString: $0) } ?? ""
            guard let parsed = PluginOptionValue.parse(defaultText, as: type) else {
                return "variant '\(name)': default '\(defaultText)' of option '\(optionName)' is not \(type.rawValue)"
            }
            let meaning = spec.meaning.map { String(cString: $0) } ?? ""
            options.append(PluginOptionSpec(name: optionName, type: type, defaultValue: defaultText,
                                            meaning: meaning))
            defaults.append(parsed)
        }
        // Versions 1 and 2 could not say what they are: they get the conservative reading (propagation needs
        // M == H, dot-product similarity, no W).
        let capabilities = abiVersion >= 3 ? VariantCapabilities(flags: raw.capabilities) : .legacy
        variants.append(RegisteredVariant(name: name, summary: summary, options: options, defaults: defaults,
                                          requirements: raw.requirements, capabilities: capabilities,
                                          attend: attend, validateOptions: raw.validate_options))
        return nil
    }

    private static func isSnakeCase(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
        return text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}

/// The C callback behind `probattn_registrar.register_variant`.
private let registerVariantCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<probattn_variant>?)
    -> Int32 = { host, variant in
        guard let host else { return 1 }
        let collector = Unmanaged<RegistrationCollector>.fromOpaque(host).takeUnretainedValue()
        if let refusal = collector.accept(variant) {
            collector.refusals.append(refusal)
            return 1
        }
        return 0
    }
