import Foundation
import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation

/// The propagator's optional neighbour coupling (`neighbour_weight`, off by default).
@Suite struct NeighbourCouplingTests {
    /// A 3 × 3 token grid with 1-channel features: the centre token and its left column alike (0), the rest far (10).
    func encoded() -> EncodedImage {
        let features: [Float] = [0, 10, 10, 0, 0, 10, 0, 10, 10]
        return EncodedImage(image: RGBImage(width: 3, height: 3, pixels: [UInt8](repeating: 0, count: 27)),
                            tokenCount: 9, featureDimension: 1, features: features, grid: TokenGrid(rows: 3, cols: 3),
                            tokenOfPixel: (0..<9).map(Int32.init))
    }

    @Test func similarNeighboursPullAndDissimilarOnesDoNot() throws {
        let e = encoded()
        let coupling = try #require(BeliefPropagator.NeighbourCoupling(encoded: e, features: e.features, channels: 1,
                                                                      kappa: 2))
        // The centre's similar neighbours (left column, 0, 3, 6) are object, the dissimilar ones background.
        var previous = [Float](repeating: 0, count: 18)
        for t in 0..<9 {
            let object = [0, 3, 6].contains(t)
            previous[2 * t] = object ? 1 : 0
            previous[2 * t + 1] = object ? 0 : 1
        }
        let none = BeliefPropagator.ClickedTokens(classOf: [Int32](repeating: BeliefPropagator.ClickedTokens.none,
                                                                    count: 9))
        var values: [Float] = [0.5, 0.5]
        let sum = values.withUnsafeMutableBufferPointer {
            coupling.apply(token: 4, to: $0.baseAddress!, classCount: 2, previous: previous, clicked: none)
        }
        #expect(abs(sum - (values[0] + values[1])) < 1e-6)
        // Field: object 3 (three neighbours at similarity 1), background ≈ 5·exp(−50) ≈ 0.
        #expect(abs(values[0] / sum - 1 / (1 + expf(-6))) < 1e-4)
        // A clicked neighbour speaks with its clicked class, not its posterior.
        var classOf = [Int32](repeating: BeliefPropagator.ClickedTokens.none, count: 9)
        for t in [0, 3, 6] { classOf[t] = 1 }
        var flipped: [Float] = [0.5, 0.5]
        _ = flipped.withUnsafeMutableBufferPointer {
            coupling.apply(token: 4, to: $0.baseAddress!, classCount: 2, previous: previous,
                           clicked: BeliefPropagator.ClickedTokens(classOf: classOf))
        }
        #expect(flipped[1] > flipped[0])
    }

    @Test func theOptionIsReadAndOffByDefault() throws {
        let attention = ReferenceAttention(keyIterations: 0)
        #expect(try BeliefPropagator(attention: attention, options: [:]).neighbourWeight == 0)
        #expect(try BeliefPropagator(attention: attention, options: ["neighbour_weight": .double(0.5)])
            .neighbourWeight == 0.5)
        #expect(throws: (any Error).self) {
            try BeliefPropagator(attention: attention, options: ["neighbour_weight": .double(-1)])
        }
    }
}
