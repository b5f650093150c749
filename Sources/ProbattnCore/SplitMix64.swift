import Foundation

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast, seedable pseudo-random generator. Benchmarks, synthetic
/// inputs and tests use it so that a seed reproduces a run exactly. Not for anything that must be unpredictable.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [low, high), from the top 53 bits of one draw.
    public mutating func uniform(_ low: Double = 0, _ high: Double = 1) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }

    /// A standard normal double (Box–Muller, one value of the pair).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// `count` standard normal Float32 values (Box–Muller, both values of each pair).
    public mutating func normals(_ count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var index = 0
        while index < count {
            let u1 = max(uniform(), 1e-300), u2 = uniform()
            let r = (-2 * log(u1)).squareRoot()
            out[index] = Float(r * cos(2 * .pi * u2))
            if index + 1 < count { out[index + 1] = Float(r * sin(2 * .pi * u2)) }
            index += 2
        }
        return out
    }
}
