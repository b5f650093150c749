import ProbattnCore

/// Random token-major problems for the property tests.
enum RandomProblem {
    struct Dims {
        var H: Int, M: Int, C: Int, Cv: Int
    }

    /// Random extents: H in 4...40, M = H unless `unitsDiffer` (then a different count), C in 2...16, Cv in 1...5.
    static func dims(_ g: inout SeededGenerator, unitsDiffer: Bool = false) -> Dims {
        let H = g.int(4...40)
        var M = H
        if unitsDiffer { repeat { M = g.int(3...48) } while M == H }
        return Dims(H: H, M: M, C: g.int(2...16), Cv: g.int(1...5))
    }

    /// Queries, keys and values with normal entries; α = 1/√C.
    static func inputs(_ g: inout SeededGenerator, _ d: Dims, keyScale: Double = 1) -> TokenMajorInputs {
        TokenMajorInputs(queries: g.tensor(d.H, d.C), keys: g.tensor(d.M, d.C, scale: keyScale),
                         values: g.tensor(d.M, d.Cv), alpha: .uniform(Float(1 / Double(d.C).squareRoot())))
    }

    /// H × (Cv+1) fixed values: about `fraction` of the tokens fixed (at least one), normal values there, zeros
    /// (or `garbage`) elsewhere.
    static func fixed(_ g: inout SeededGenerator, _ d: Dims, fraction: Double = 0.25, garbage: Bool = false,
                      count: Int? = nil) -> Tensor {
        var data = [Float](repeating: 0, count: d.H * (d.Cv + 1))
        var chosen = Set<Int>()
        if let count {
            while chosen.count < count { chosen.insert(g.int(0...(d.H - 1))) }
        } else {
            for i in 0..<d.H where g.uniform() < fraction { chosen.insert(i) }
            if chosen.isEmpty { chosen.insert(g.int(0...(d.H - 1))) }
        }
        for i in 0..<d.H {
            let isFixed = chosen.contains(i)
            for c in 0..<d.Cv {
                data[i * (d.Cv + 1) + c] = isFixed ? Float(g.normal()) : (garbage ? Float(10 * g.normal()) : 0)
            }
            data[i * (d.Cv + 1) + d.Cv] = isFixed ? 1 : 0
        }
        return try! Tensor(shape: [d.H, d.Cv + 1], storage: data)
    }

    /// Per-unit precisions in [low, high).
    static func perUnit(_ g: inout SeededGenerator, _ count: Int, _ low: Double, _ high: Double) -> Precision {
        .perUnit((0..<count).map { _ in Float(g.uniform(low, high)) })
    }
}

/// The softmax flag set of spec §1.5: magnitude priors, uniform precisions, β = 0, no π / v_init / v_fixed.
let softmaxOptions = ProbabilisticAttentionOptions(magnitudePriors: true)

/// softmax_j(logits_ij) · values in double precision.
func softmaxOracle(_ logits: [[Double]], values: Tensor) -> [[Double]] {
    let cv = values.shape[1]
    return logits.map { row in
        let m = row.max() ?? 0
        let e = row.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return (0..<cv).map { c in (0..<row.count).reduce(0) { $0 + e[$1] / s * Double(values.storage[$1 * cv + c]) } }
    }
}

/// The rows of a rank-2 tensor as doubles.
func doubleRows(_ t: Tensor) -> [[Double]] {
    let w = t.shape[1]
    return (0..<t.shape[0]).map { r in (0..<w).map { Double(t.storage[r * w + $0]) } }
}

func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
