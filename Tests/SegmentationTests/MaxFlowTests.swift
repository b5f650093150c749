import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The minimum cut against brute force over every labelling of small random graphs, and on hand-checkable ones.
@Suite struct MaxFlowTests {
    /// A graph description both the solver and the brute force read.
    struct Problem {
        var terminals: [(source: Float, sink: Float)]
        var edges: [(a: Int, b: Int, forward: Float, backward: Float)]

        /// The cut's capacity when `onSource[i]` says which side node i is on.
        func cost(_ onSource: [Bool]) -> Float {
            var total: Float = 0
            for (i, t) in terminals.enumerated() { total += onSource[i] ? t.sink : t.source }
            for e in edges {
                if onSource[e.a] && !onSource[e.b] { total += e.forward }
                if onSource[e.b] && !onSource[e.a] { total += e.backward }
            }
            return total
        }

        func bruteForceMinimum() -> Float {
            let n = terminals.count
            var best = Float.infinity
            for mask in 0..<(1 << n) {
                best = min(best, cost((0..<n).map { mask & (1 << $0) != 0 }))
            }
            return best
        }

        func solve() -> (flow: Float, sides: [Bool]) {
            var g = MaxFlowGraph()
            for _ in terminals { g.addNode() }
            for (i, t) in terminals.enumerated() { g.addTerminalWeights(i, source: t.source, sink: t.sink) }
            for e in edges { g.addEdge(e.a, e.b, forward: e.forward, backward: e.backward) }
            let flow = g.maximumFlow()
            return (flow, (0..<terminals.count).map { g.isOnSourceSide($0) })
        }
    }

    @Test func randomGraphsMatchBruteForce() {
        var rng = SplitMix64(state: 2024)
        for trial in 0..<400 {
            let n = 2 + Int(rng.next() % 9)
            // Integer capacities keep the sums exact in Float.
            func capacity(_ zeroOdds: UInt64) -> Float { rng.next() % zeroOdds == 0 ? 0 : Float(rng.next() % 20) }
            let terminals = (0..<n).map { _ in (source: capacity(3), sink: capacity(3)) }
            var edges: [(a: Int, b: Int, forward: Float, backward: Float)] = []
            for a in 0..<n {
                for b in (a + 1)..<n where rng.next() % 2 == 0 {
                    edges.append((a, b, capacity(4), capacity(4)))
                }
            }
            let problem = Problem(terminals: terminals, edges: edges)
            let best = problem.bruteForceMinimum()
            let (flow, sides) = problem.solve()
            #expect(flow == best, "trial \(trial): max flow \(flow), min cut \(best)")
            #expect(problem.cost(sides) == best, "trial \(trial): the returned cut is not minimal")
        }
    }

    @Test func aChainIsCutAtItsWeakestLink() {
        // source ─9→ 0 ─5→ 1 ─2→ 2 ─7→ 3 ─9→ sink: the cut is the 2 between nodes 1 and 2.
        let problem = Problem(terminals: [(9, 0), (0, 0), (0, 0), (0, 9)],
                              edges: [(0, 1, 5, 0), (1, 2, 2, 0), (2, 3, 7, 0)])
        let (flow, sides) = problem.solve()
        #expect(flow == 2)
        #expect(sides == [true, true, false, false])
    }

    @Test func aGridSplitsAlongTheCheapColumn() {
        // A 6 × 5 grid, left column tied to the source, right column to the sink; horizontal links between
        // columns 2 and 3 are weak, so the cut runs between them.
        let cols = 6, rows = 5
        var terminals = [(source: Float, sink: Float)](repeating: (0, 0), count: cols * rows)
        var edges: [(a: Int, b: Int, forward: Float, backward: Float)] = []
        for r in 0..<rows {
            terminals[r * cols] = (100, 0)
            terminals[r * cols + cols - 1] = (0, 100)
            for c in 0..<(cols - 1) {
                let w: Float = c == 2 ? 1 : 10
                edges.append((r * cols + c, r * cols + c + 1, w, w))
            }
            if r + 1 < rows { for c in 0..<cols { edges.append((r * cols + c, (r + 1) * cols + c, 10, 10)) } }
        }
        let (flow, sides) = Problem(terminals: terminals, edges: edges).solve()
        #expect(flow == Float(rows))
        for r in 0..<rows { for c in 0..<cols { #expect(sides[r * cols + c] == (c <= 2)) } }
    }
}
