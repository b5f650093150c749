import ProbattnCore

/// A small seeded PRNG (SplitMix64) so that every property test draws reproducible random shapes and values.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Double = 0, _ high: Double = 1) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

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
