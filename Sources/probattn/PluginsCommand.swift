import ArgumentParser
import Foundation
import ProbattnCommandLine
import ProbattnPluginHost

/// `probattn plugins [--plugin-dir DIR]`: loads the attention plugins of a folder and prints every variant (name,
/// file, ABI version, summary, options with defaults), then one line per file that failed to load.
/// With `--benchmark`, it then times every variant (default options, fixed values on a quarter of the tokens) on
/// random inputs on a grid × grid token grid with units = tokens, and prints the median time per call.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: PluginListingCommand.abstract)

    @OptionGroup var folder: PluginFolderOption

    @Flag(help: "Time every variant on random inputs after the listing.")
    var benchmark = false

    @Option(help: "Benchmark: tokens lie on a grid × grid grid (units = tokens).")
    var grid = 32

    @Option(help: "Benchmark: query/key channels.")
    var channels = 64

    @Option(name: .customLong("value-channels"), help: "Benchmark: value channels (classes).")
    var valueChannels = 2

    @Option(help: "Benchmark: timed calls per variant (after one warm-up call).")
    var repeats = 5

    func validate() throws {
        guard grid >= 1, grid <= 256 else { throw ValidationError("--grid must be in 1...256") }
        guard channels >= 1, valueChannels >= 1 else { throw ValidationError("--channels and --value-channels must be >= 1") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be >= 1") }
    }

    func run() throws {
        let registry = PluginListingCommand.printListing(folder)
        guard benchmark else { return }
        let input = benchmarkInput()
        print("\nBenchmark: \(input.tokens) tokens (\(grid)x\(grid) grid) = units, C=\(channels), Cv=\(valueChannels), "
              + "default options, median of \(repeats) calls")
        for variant in registry.variants {
            do {
                let options = try variant.resolveOptions([:])
                _ = try variant.attend(input, options: options)
                var seconds: [Double] = []
                for _ in 0..<repeats {
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = try variant.attend(input, options: options)
                    seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                }
                let median = seconds.sorted()[seconds.count / 2]
                print("  \(variant.name.padding(toLength: 14, withPad: " ", startingAt: 0)) "
                      + String(format: "%9.2f ms", median * 1000))
            } catch {
                print("  \(variant.name): \(error)")
            }
        }
    }

    /// Random queries and keys (keys = queries, as when units are the tokens), random class scores, and a quarter of
    /// the tokens fixed to a class.
    private func benchmarkInput() -> AttentionInput {
        var generator = SystemRandomNumberGenerator()
        let tokens = grid * grid
        let queries = (0..<(tokens * channels)).map { _ in Float.random(in: -1...1, using: &generator) }
        let values = (0..<(tokens * valueChannels)).map { _ in Float.random(in: 0...1, using: &generator) }
        var fixed = [Float](repeating: 0, count: tokens * (valueChannels + 1))
        for i in stride(from: 0, to: tokens, by: 4) {
            fixed[i * (valueChannels + 1) + Int.random(in: 0..<valueChannels, using: &generator)] = 1
            fixed[i * (valueChannels + 1) + valueChannels] = 1
        }
        return AttentionInput(tokens: tokens, units: tokens, channels: channels, valueChannels: valueChannels,
                              queries: queries, keys: queries, values: values, fixed: fixed,
                              gridRows: grid, gridCols: grid)
    }
}
