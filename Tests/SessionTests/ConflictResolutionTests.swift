import ProbattnImaging
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import Testing

@Suite struct ConflictResolutionTests {
    private func active(_ id: Int64, _ x: Int, _ y: Int, _ c: Int) -> ActiveClick {
        ActiveClick(id: id, annotator: "a\(id)", click: Click(x: x, y: y, classIndex: c))
    }

    private let full = WorkingResolution(width: 10, height: 10, factor: 1)

    @Test func clicksOnDifferentPixelsAreAllInForce() {
        let clicks = [active(1, 3, 3, 0), active(2, 4, 3, 1), active(3, 3, 4, 0)]
        for policy in ConflictPolicy.allCases {
            let outcome = ConflictResolution.resolve(clicks, resolution: full, policy: policy)
            #expect(outcome.overridden.isEmpty)
            #expect(Set(outcome.inForce.map { "\($0.x),\($0.y)" }) == ["3,3", "4,3", "3,4"])
        }
    }

    @Test func samePixelDifferentClassIsDecidedByThePolicy() {
        let clicks = [active(1, 5, 5, 0), active(2, 7, 7, 1), active(3, 5, 5, 1)]
        let latest = ConflictResolution.resolve(clicks, resolution: full, policy: .latestWins)
        #expect(latest.overridden == [1])
        #expect(latest.inForce == [Click(x: 7, y: 7, classIndex: 1), Click(x: 5, y: 5, classIndex: 1)])
        let first = ConflictResolution.resolve(clicks, resolution: full, policy: .firstWins)
        #expect(first.overridden == [3])
        // Log order under either policy (the propagator breaks ties by `ConflictPolicy.clickTieBreak`).
        #expect(first.inForce == [Click(x: 5, y: 5, classIndex: 0), Click(x: 7, y: 7, classIndex: 1)])
        #expect(ConflictPolicy.firstWins.clickTieBreak == .earlier)
        #expect(ConflictPolicy.latestWins.clickTieBreak == .later)
    }

    @Test func samePixelSameClassIsNoConflict() {
        let clicks = [active(1, 5, 5, 0), active(2, 5, 5, 0)]
        #expect(ConflictResolution.resolve(clicks, resolution: full, policy: .latestWins).overridden.isEmpty)
    }

    @Test func clicksInOneWorkingPixelSitOnTheSamePixel() {
        // At factor 4 image pixels (8, 8) and (11, 9) are both working pixel (2, 2); (12, 8) is (3, 2).
        let reduced = WorkingResolution(width: 40, height: 40, factor: 4)
        let clicks = [active(1, 8, 8, 0), active(2, 11, 9, 1), active(3, 12, 8, 0)]
        let latest = ConflictResolution.resolve(clicks, resolution: reduced, policy: .latestWins)
        #expect(latest.overridden == [1])
        #expect(latest.inForce == [Click(x: 2, y: 2, classIndex: 1), Click(x: 3, y: 2, classIndex: 0)],
                "in force, in working coordinates")
        #expect(ConflictResolution.resolve(clicks, resolution: ownResolution(40), policy: .latestWins).overridden.isEmpty,
                "at the image's own resolution the three pixels differ")
    }

    private func ownResolution(_ side: Int) -> WorkingResolution { WorkingResolution(width: side, height: side, factor: 1) }
}
