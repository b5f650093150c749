import ProbattnCore
// Shared helpers of the plugin tests: where the built plugins are, compiling throwaway C plugins, random inputs.

import Foundation
import ProbattnPluginHost

/// The folder of the build's products (the test binary's folder, e.g. .build/debug), which holds libprobattn-*.so.
let productsDirectory: String = PluginRegistry.executableDirectory() ?? "."

/// The registry of the built plugins, loaded once per test process through dlopen.
let builtPlugins: PluginRegistry = PluginRegistry.load(directory: productsDirectory)

/// The repository root, from this file's path (Tests/PluginTests/TestSupport.swift).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The folder holding probattn_plugin.h.
let pluginHeaderDirectory: String = repositoryRoot.appendingPathComponent("Sources/CProbattnPlugin/include").path

struct CompileFailure: Error, CustomStringConvertible {
    let description: String
}

/// A fresh empty temporary folder.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("probattn-plugin-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Compiles `source` (C) with `cc -shared -fPIC` into `directory/fileName`.
func compileSharedObject(_ source: String, named fileName: String, in directory: URL) throws {
    let sourceURL = directory.appendingPathComponent(fileName + ".c")
    try source.write(to: sourceURL, atomically: true, encoding: .utf8)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["cc", "-shared", "-fPIC", "-O1", "-I", pluginHeaderDirectory, sourceURL.path,
                         "-o", directory.appendingPathComponent(fileName).path]
    let errors = Pipe()
    process.standardError = errors
    try process.run()
    let message = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CompileFailure(description: "cc failed for \(fileName): " + String(decoding: message, as: UTF8.self))
    }
    try FileManager.default.removeItem(at: sourceURL)
}

/// The tests' generator: ProbattnCore's SplitMix64; each test seeds it from the system generator so inputs are fresh
/// on every run, and prints the seed in failure messages.
typealias SeededGenerator = SplitMix64

/// `count` uniform random floats in [-scale, scale].
func randomFloats(_ count: Int, scale: Float = 1, using generator: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in Float.random(in: -scale...scale, using: &generator) }
}

/// Fixed values H×(Cv+1): about a quarter of the tokens fixed to a random one-hot class with weight 1, a few with a
/// soft weight, the rest free with garbage in their value channels (which must be ignored).
func randomFixed(tokens: Int, valueChannels: Int, using generator: inout SeededGenerator) -> [Float] {
    var fixed = [Float](repeating: 0, count: tokens * (valueChannels + 1))
    for i in 0..<tokens {
        let row = i * (valueChannels + 1)
        let draw = Int.random(in: 0..<8, using: &generator)
        if draw < 2 {
            let cls = Int.random(in: 0..<valueChannels, using: &generator)
            fixed[row + cls] = 1
            fixed[row + valueChannels] = draw == 0 ? 1 : 0.5
        } else {
            for c in 0..<valueChannels { fixed[row + c] = Float.random(in: -9...9, using: &generator) }
        }
    }
    return fixed
}

/// max |a − b| and whether it is within 2e-5 · max(1, max |expected|) (the project's tolerance).
func withinTolerance(_ actual: [Float], _ expected: [Double], factor: Double = 2e-5) -> (ok: Bool, error: Double,
                                                                                         bound: Double) {
    guard actual.count == expected.count else { return (false, .infinity, 0) }
    var maxError = 0.0
    var maxMagnitude = 0.0
    for (a, e) in zip(actual, expected) {
        maxError = max(maxError, a.isFinite ? abs(Double(a) - e) : .infinity)
        maxMagnitude = max(maxMagnitude, abs(e))
    }
    let bound = factor * max(1, maxMagnitude)
    return (maxError <= bound, maxError, bound)
}
