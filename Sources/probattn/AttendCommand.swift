import ArgumentParser
import Foundation
import ProbattnCore
import ProbattnReferenceCases

/// `probattn attend --case <dir> --out <file.f32>`: runs the operator on a probattn-case-v1 reference case with the
/// manifest's flags and scalars, writes the output as raw little-endian float32 in the shape of `outputs.v_updated`,
/// and prints the max abs error against `v_updated_f64ref` when the case has one.
struct AttendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attend",
        abstract: "Run the probabilistic attention operator on a reference case (probattn-case-v1).")

    @Option(name: .customLong("case"), help: "The case folder (holding manifest.json and the .f32 inputs).")
    var caseDirectory: String

    @Option(name: .customLong("out"), help: "Where to write the output (raw little-endian float32).")
    var outputPath: String

    @Option(help: "Implementation: automatic, plain or blocked.")
    var kernel: String = AttentionKernel.automatic.rawValue

    func run() throws {
        guard let kernel = AttentionKernel(rawValue: kernel) else {
            throw ValidationError("unknown kernel '\(kernel)' (automatic, plain, blocked)")
        }
        let referenceCase: ReferenceCase
        do {
            referenceCase = try ReferenceCase.load(from: caseDirectory)
        } catch {
            throw AttendFailure("case \(caseDirectory): \(error)")
        }
        let output: Tensor
        do {
            output = try referenceCase.run { $0.kernel = kernel }
        } catch {
            throw AttendFailure("case \(referenceCase.name): \(error)")
        }
        do {
            try Float32File.encode(output.storage).write(to: URL(fileURLWithPath: outputPath))
        } catch {
            throw AttendFailure("cannot write \(outputPath): \(error.localizedDescription)")
        }
        print("\(referenceCase.name): wrote \(output.shape) to \(outputPath)")
        if !output.isFinite { print("warning: the output holds NaN or infinite values") }
        if let reference = referenceCase.referenceFloat64, let tolerance = referenceCase.tolerance {
            let error = try output.maxAbsDifference(reference)
            print("max abs error vs v_updated_f64ref: \(error) (tolerance \(tolerance))")
        }
    }
}

/// A failure of `probattn attend` with its message (exit code 1).
struct AttendFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
