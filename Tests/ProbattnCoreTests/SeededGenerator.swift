import ProbattnCore

/// ProbattnCore's SplitMix64 with the shape and tensor helpers the tests need, so that every property test draws reproducible random shapes and values.
struct SeededGenerator: RandomNumberGenerator {
    private var base: SplitMix64

    init(seed: UInt64) { base = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }

    mutating func next() -> UInt64 { base.next() }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Double = 0, _ high: Double = 1) -> Double { base.uniform(low, high) }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double { base.normal() }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// A rows × columns tensor of normal values times `scale`.
    mutating func tensor(_ rows: Int, _ columns: Int, scale: Double = 1) -> Tensor {
        let values = (0..<(rows * columns)).map { _ in Float(scale * normal()) }
        return try! Tensor(shape: [rows, columns], storage: values)
    }

    /// A tensor of the given shape with uniform values in [low, high).
    mutating func uniformTensor(_ shape: [Int], _ low: Double, _ high: Double) -> Tensor {
        let values = (0..<shape.reduce(1, *)).map { _ in Float(uniform(low, high)) }
        return try! Tensor(shape: shape, storage: values)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
