import ProbattnImaging
import ProbattnStages
@testable import ProbattnSegmentation

/// The token line the prior tests (`BackgroundPriorTests`, `PreviousPosteriorPriorTests`) measure distances on.
protocol TokenLineFixture {}

extension TokenLineFixture {
    /// A 1 × 5 token grid, one pixel per token, 1-channel features: tokens 0–2 alike (0), tokens 3–4 far (10).
    func encoded() -> EncodedImage {
        EncodedImage(image: RGBImage(width: 5, height: 1, pixels: [UInt8](repeating: 0, count: 15)),
                     tokenCount: 5, featureDimension: 1, features: [0, 0, 0, 10, 10],
                     grid: TokenGrid(rows: 1, cols: 5), tokenOfPixel: (0..<5).map(Int32.init))
    }

    /// The line's tokens fixed to the given classes (token → class), the others unclicked.
    func clicked(_ classes: [Int: Int32]) -> BeliefPropagator.ClickedTokens {
        var classOf = [Int32](repeating: BeliefPropagator.ClickedTokens.none, count: 5)
        for (t, c) in classes { classOf[t] = c }
        return BeliefPropagator.ClickedTokens(classOf: classOf)
    }
}
