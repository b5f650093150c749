import Foundation
/// Minimum s-t cut of a graph with non-negative capacities, by the Boykov–Kolmogorov augmenting-path algorithm
/// ("An Experimental Comparison of Min-Cut/Max-Flow Algorithms for Energy Minimization in Vision", PAMI 2004): two
/// search trees, one grown from the source and one from the sink, are reused between augmentations, which is what
/// makes it fast on the short-path grid graphs of image segmentation.
///
/// Used by `BoundaryRefinement` to minimise, once per click, a binary energy over the pixels of the uncertain band.
/// Build the graph with `addNode`, `addTerminalWeights` and `addEdge`, call `maximumFlow()` once, then read each
/// node's side with `isOnSourceSide`. Not thread-safe; cheap to create per call.
///
/// Capacities are stored as integers in units of 1/`resolution` (rounded to nearest): with floating-point residuals,
/// rounding leaves near-zero capacities open and the algorithm spends most of its time on tiny augmentations.
public struct MaxFlowGraph {
    // Arcs come in sister pairs: arc `a` and `a ^ 1` are the two directions of one edge.
    private var arcHead: [Int32] = []
    private var arcNext: [Int32] = []
    private var arcResidual: [Capacity] = []

    private var firstArc: [Int32] = []
    /// Terminal capacity: > 0 toward the source, < 0 toward the sink (only the net difference matters).
    private var terminalResidual: [Capacity] = []
    private var flowValue: Int64 = 0
    /// Capacity units per unit of the callers' weights.
    public let resolution: Float
    /// After `maximumFlow()`: the side of every node.
    private var sourceSide: [Bool]? = nil

    typealias Capacity = Int32

    public init(expectedNodes: Int = 0, expectedEdges: Int = 0, resolution: Float = 4096) {
        self.resolution = resolution
        firstArc.reserveCapacity(expectedNodes)
        terminalResidual.reserveCapacity(expectedNodes)
        arcHead.reserveCapacity(2 * expectedEdges)
        arcNext.reserveCapacity(2 * expectedEdges)
        arcResidual.reserveCapacity(2 * expectedEdges)
    }

    /// The number of nodes added so far.
    public var nodeCount: Int { firstArc.count }

    /// The value of the maximum flow (= the minimum cut's capacity, including the constant part of terminal
    /// weights that both sides paid), valid after `maximumFlow()`.
    public var flow: Float { Float(flowValue) / resolution }

    /// Adds a node and returns its index.
    @discardableResult
    public mutating func addNode() -> Int {
        firstArc.append(BoykovKolmogorovSolver.none)
        terminalResidual.append(0)
        return firstArc.count - 1
    }

    /// Adds capacity `source` on the edge source → node and `sink` on node → sink. In energy terms: the node pays
    /// `sink` when it ends on the source side and `source` when it ends on the sink side. Both must be ≥ 0.
    public mutating func addTerminalWeights(_ node: Int, source: Float, sink: Float) {
        precondition(source >= 0 && sink >= 0, "terminal capacities must be non-negative")
        let s = quantised(source), t = quantised(sink)
        flowValue += Int64(min(s, t))
        terminalResidual[node] += s - t
    }

    /// Adds an edge with capacity `forward` from `a` to `b` and `backward` from `b` to `a` (both ≥ 0).
    public mutating func addEdge(_ a: Int, _ b: Int, forward: Float, backward: Float) {
        precondition(a != b, "an edge needs two distinct nodes")
        precondition(forward >= 0 && backward >= 0, "edge capacities must be non-negative")
        let ab = Int32(arcHead.count)
        arcHead.append(Int32(b)); arcNext.append(firstArc[a]); arcResidual.append(quantised(forward))
        firstArc[a] = ab
        arcHead.append(Int32(a)); arcNext.append(firstArc[b]); arcResidual.append(quantised(backward))
        firstArc[b] = ab + 1
    }

    private func quantised(_ capacity: Float) -> Capacity {
        Capacity(min((capacity * resolution).rounded(), 1e9))
    }

    /// After `maximumFlow()`: whether `node` lies on the source side of the minimum cut (nodes reachable from the
    /// source in the residual graph). Nodes not decided by the flow are put on the sink side.
    public func isOnSourceSide(_ node: Int) -> Bool {
        guard let sides = sourceSide else { preconditionFailure("call maximumFlow() first") }
        return sides[node]
    }

    /// Computes the maximum flow; returns its value. Call once, after building the graph.
    @discardableResult
    public mutating func maximumFlow() -> Float {
        let solver = BoykovKolmogorovSolver(firstArc: firstArc, arcHead: arcHead, arcNext: arcNext,
                                            arcResidual: arcResidual, terminalResidual: terminalResidual)
        flowValue += Int64(solver.run())
        sourceSide = solver.sides()
        return flow
    }
}

/// The search-tree state of one max-flow computation, in raw buffers (the inner loops run without bounds or
/// uniqueness checks; every index they use comes from the graph's own arcs).
private final class BoykovKolmogorovSolver {
    static let none: Int32 = -1
    static let terminal: Int32 = -2
    static let orphan: Int32 = -3
    static let endOfQueue: Int32 = -4

    let nodeCount: Int
    let arcHead: UnsafeMutablePointer<Int32>
    let arcNext: UnsafeMutablePointer<Int32>
    let arcResidual: UnsafeMutablePointer<Capacity>
    let firstArc: UnsafeMutablePointer<Int32>
    /// Residual terminal capacity: > 0 toward the source, < 0 toward the sink.
    let terminalResidual: UnsafeMutablePointer<Capacity>
    /// The arc from a node to its parent in its search tree; `terminal` for a tree root, `none` for a node in no
    /// tree (free), `orphan` while a node is being re-attached.
    let parentArc: UnsafeMutablePointer<Int32>
    let inSinkTree: UnsafeMutablePointer<Bool>
    let timestamp: UnsafeMutablePointer<Int32>
    let distance: UnsafeMutablePointer<Int32>
    let nextActive: UnsafeMutablePointer<Int32>
    var queueHead = endOfQueue
    var queueTail = endOfQueue
    var orphans: [Int] = []
    var flow: Int64 = 0

    typealias Capacity = MaxFlowGraph.Capacity

    init(firstArc: [Int32], arcHead: [Int32], arcNext: [Int32], arcResidual: [Capacity],
         terminalResidual: [Capacity]) {
        nodeCount = firstArc.count
        func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, a.count))
            _ = UnsafeMutableBufferPointer(start: p, count: a.count).initialize(from: a)
            return p
        }
        func filled<T>(_ value: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, firstArc.count))
            p.initialize(repeating: value, count: firstArc.count)
            return p
        }
        self.arcHead = copy(arcHead)
        self.arcNext = copy(arcNext)
        self.arcResidual = copy(arcResidual)
        self.firstArc = copy(firstArc)
        self.terminalResidual = copy(terminalResidual)
        parentArc = filled(Self.none)
        inSinkTree = filled(false)
        timestamp = filled(0)
        distance = filled(0)
        nextActive = filled(Self.none)
    }

    deinit {
        for p in [arcHead, arcNext, firstArc, parentArc, timestamp, distance, nextActive] { p.deallocate() }
        arcResidual.deallocate(); terminalResidual.deallocate(); inSinkTree.deallocate()
    }

    /// The side of every node after `run()`: source when it is in the source tree.
    func sides() -> [Bool] {
        (0..<nodeCount).map { parentArc[$0] != Self.none && !inSinkTree[$0] }
    }

    /// Runs the algorithm; returns the flow pushed through non-terminal paths.
    func run() -> Int64 {
        let n = nodeCount
        var time: Int32 = 0
        for i in 0..<n where terminalResidual[i] != 0 {
            inSinkTree[i] = terminalResidual[i] < 0
            parentArc[i] = Self.terminal
            distance[i] = 1
            activate(i)
        }
        var current: Int? = nil
        while true {
            // Grow the trees from an active node until an arc joins them.
            var i: Int
            if let c = current, parentArc[c] != Self.none {
                i = c
            } else {
                guard let next = popActive() else { break }
                i = next
            }
            current = nil
            var joining = Self.none
            var a = firstArc[i]
            if !inSinkTree[i] {
                while a != Self.none {
                    let ai = Int(a)
                    if arcResidual[ai] > 0 {
                        let j = Int(arcHead[ai])
                        if parentArc[j] == Self.none {
                            inSinkTree[j] = false
                            parentArc[j] = a ^ 1
                            timestamp[j] = timestamp[i]; distance[j] = distance[i] + 1
                            activate(j)
                        } else if inSinkTree[j] {
                            joining = a
                            break
                        } else if timestamp[j] <= timestamp[i] && distance[j] > distance[i] {
                            parentArc[j] = a ^ 1
                            timestamp[j] = timestamp[i]; distance[j] = distance[i] + 1
                        }
                    }
                    a = arcNext[ai]
                }
            } else {
                while a != Self.none {
                    let ai = Int(a)
                    if arcResidual[ai ^ 1] > 0 {
                        let j = Int(arcHead[ai])
                        if parentArc[j] == Self.none {
                            inSinkTree[j] = true
                            parentArc[j] = a ^ 1
                            timestamp[j] = timestamp[i]; distance[j] = distance[i] + 1
                            activate(j)
                        } else if !inSinkTree[j] {
                            joining = a ^ 1
                            break
                        } else if timestamp[j] <= timestamp[i] && distance[j] > distance[i] {
                            parentArc[j] = a ^ 1
                            timestamp[j] = timestamp[i]; distance[j] = distance[i] + 1
                        }
                    }
                    a = arcNext[ai]
                }
            }
            guard joining != Self.none else { continue }
            time += 1
            // Keep growing from this node after the augmentation (it may have more joining arcs).
            current = i
            augment(through: Int(joining))
            // Re-attach the orphans the augmentation made, or free them.
            // First in, first out, as in the original: an orphan's children are adopted after it.
            var next = 0
            while next < orphans.count { adopt(orphans[next], time: time); next += 1 }
            orphans.removeAll(keepingCapacity: true)
        }
        return flow
    }

    /// Appends a node to the queue of active nodes (those whose neighbours may still join its tree).
    func activate(_ i: Int) {
        guard nextActive[i] == Self.none else { return }
        nextActive[i] = Self.endOfQueue
        if queueTail == Self.endOfQueue { queueHead = Int32(i) } else { nextActive[Int(queueTail)] = Int32(i) }
        queueTail = Int32(i)
    }

    /// The next active node still in a tree, or nil when none is left.
    func popActive() -> Int? {
        while queueHead != Self.endOfQueue {
            let i = Int(queueHead)
            queueHead = nextActive[i]
            if queueHead == Self.endOfQueue { queueTail = Self.endOfQueue }
            nextActive[i] = Self.none
            if parentArc[i] != Self.none { return i }
        }
        return nil
    }

    /// Pushes the bottleneck flow along source → … → tail(joining) → head(joining) → … → sink, and collects the
    /// nodes whose link to their parent became saturated as orphans.
    func augment(through joining: Int) {
        var bottleneck = arcResidual[joining]
        // Source tree: from the arc's tail up to the root.
        var i = Int(arcHead[joining ^ 1])
        while true {
            let a = parentArc[i]
            if a == Self.terminal { break }
            bottleneck = min(bottleneck, arcResidual[Int(a) ^ 1])
            i = Int(arcHead[Int(a)])
        }
        bottleneck = min(bottleneck, terminalResidual[i])
        // Sink tree: from the arc's head down to the root.
        i = Int(arcHead[joining])
        while true {
            let a = parentArc[i]
            if a == Self.terminal { break }
            bottleneck = min(bottleneck, arcResidual[Int(a)])
            i = Int(arcHead[Int(a)])
        }
        bottleneck = min(bottleneck, -terminalResidual[i])

        arcResidual[joining ^ 1] += bottleneck
        arcResidual[joining] -= bottleneck
        i = Int(arcHead[joining ^ 1])
        while true {
            let a = parentArc[i]
            if a == Self.terminal { break }
            let ai = Int(a)
            arcResidual[ai] += bottleneck
            arcResidual[ai ^ 1] -= bottleneck
            if arcResidual[ai ^ 1] <= 0 { arcResidual[ai ^ 1] = 0; parentArc[i] = Self.orphan; orphans.append(i) }
            i = Int(arcHead[ai])
        }
        terminalResidual[i] -= bottleneck
        if terminalResidual[i] <= 0 { terminalResidual[i] = 0; parentArc[i] = Self.orphan; orphans.append(i) }
        i = Int(arcHead[joining])
        while true {
            let a = parentArc[i]
            if a == Self.terminal { break }
            let ai = Int(a)
            arcResidual[ai ^ 1] += bottleneck
            arcResidual[ai] -= bottleneck
            if arcResidual[ai] <= 0 { arcResidual[ai] = 0; parentArc[i] = Self.orphan; orphans.append(i) }
            i = Int(arcHead[ai])
        }
        terminalResidual[i] += bottleneck
        if terminalResidual[i] >= 0 { terminalResidual[i] = 0; parentArc[i] = Self.orphan; orphans.append(i) }
        flow += Int64(bottleneck)
    }

    /// Finds `node` a new parent in its own tree with a valid path to the root (the nearest one), or frees it; its
    /// children become orphans in turn and its tree neighbours become active again.
    func adopt(_ node: Int, time: Int32) {
        let sinkSide = inSinkTree[node]
        var bestArc = Self.none
        var bestDistance = Int32.max
        var a = firstArc[node]
        while a != Self.none {
            let ai = Int(a)
            // The residual edge must point toward the node for the source tree, away from it for the sink tree.
            let open = sinkSide ? arcResidual[ai] > 0 : arcResidual[ai ^ 1] > 0
            let j = Int(arcHead[ai])
            if open, inSinkTree[j] == sinkSide, parentArc[j] != Self.none {
                // Walk up to the root, checking the path is still attached to a terminal.
                var k = j
                var steps: Int32 = 0
                var attached = false
                while true {
                    if timestamp[k] == time { steps += distance[k]; attached = true; break }
                    let pa = parentArc[k]
                    steps += 1
                    if pa == Self.terminal { timestamp[k] = time; distance[k] = 1; attached = true; break }
                    if pa == Self.orphan || pa == Self.none { break }
                    k = Int(arcHead[Int(pa)])
                }
                if attached {
                    if steps < bestDistance { bestArc = a; bestDistance = steps }
                    // Record distances along the path for later walks.
                    var k2 = j
                    var d = steps
                    while timestamp[k2] != time {
                        timestamp[k2] = time; distance[k2] = d; d -= 1
                        k2 = Int(arcHead[Int(parentArc[k2])])
                    }
                }
            }
            a = arcNext[ai]
        }
        if bestArc != Self.none {
            parentArc[node] = bestArc
            timestamp[node] = time
            distance[node] = bestDistance + 1
            return
        }
        // No valid parent: the node becomes free.
        parentArc[node] = Self.none
        a = firstArc[node]
        while a != Self.none {
            let ai = Int(a)
            let j = Int(arcHead[ai])
            let pa = parentArc[j]
            if inSinkTree[j] == sinkSide, pa != Self.none {
                let open = sinkSide ? arcResidual[ai] > 0 : arcResidual[ai ^ 1] > 0
                if open { activate(j) }
                if pa != Self.terminal, pa != Self.orphan, Int(arcHead[Int(pa)]) == node {
                    parentArc[j] = Self.orphan
                    orphans.append(j)
                }
            }
            a = arcNext[ai]
        }
    }
}
