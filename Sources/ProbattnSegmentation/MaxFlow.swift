import ProbattnStages

/// Minimum s-t cut of a graph with non-negative capacities, by the Boykov–Kolmogorov augmenting-path algorithm
/// ("An Experimental Comparison of Min-Cut/Max-Flow Algorithms for Energy Minimization in Vision", PAMI 2004): two
/// search trees, one grown from the source and one from the sink, are reused between augmentations, which is what
/// makes it fast on the short-path grid graphs of image segmentation.
///
/// Used by `BoundaryRefinement` to minimise, once per click, a binary energy over the pixels of the uncertain band.
/// Build the graph with `addNode`, `addTerminalWeights` and `addEdge`, call `maximumFlow()` once, then read each
/// node's side with `isOnSourceSide`. Not thread-safe; cheap to create per call.
///
/// The cut returned is the set of nodes the source reaches in the residual graph of a maximum flow, which is the
/// same for every maximum flow (the smallest source side among all minimum cuts): so a flow found in parts
/// (`maximumFlow(parts:budget:)`) gives the same sides as one found in one piece.
///
/// Capacities are stored as integers in units of 1/`resolution` (rounded to nearest), so that pushing a path's
/// bottleneck leaves exactly zero on the saturated arcs: the algorithm detects orphans by a residual reaching zero,
/// which floating-point sums do not guarantee.
struct MaxFlowGraph {
    typealias Capacity = Int32
    typealias Node = BoykovKolmogorovSolver.Node
    typealias Arc = BoykovKolmogorovSolver.Arc

    /// One edge as added: its two nodes and its two capacities (quantised).
    private struct Edge {
        var a: Int32, b: Int32, forward: Capacity, backward: Capacity
    }

    /// Per node: the terminal residual (> 0 toward the source, < 0 toward the sink).
    private var terminals: [Capacity] = []
    private var edges: [Edge] = []
    private var flowValue: Int64 = 0
    /// Capacity units per unit of the callers' weights.
    let resolution: Float
    /// After `maximumFlow()`: the side of every node.
    private var sourceSide: [Bool]? = nil

    init(expectedNodes: Int = 0, expectedEdges: Int = 0, resolution: Float = 4096) {
        self.resolution = resolution
        terminals.reserveCapacity(expectedNodes)
        edges.reserveCapacity(expectedEdges)
    }

    /// The number of nodes added so far.
    var nodeCount: Int { terminals.count }

    /// The value of the maximum flow (= the minimum cut's capacity, including the constant part of terminal
    /// weights that both sides paid), valid after `maximumFlow()`.
    var flow: Float { Float(flowValue) / resolution }

    /// Adds a node and returns its index.
    @discardableResult
    mutating func addNode() -> Int {
        terminals.append(0)
        return terminals.count - 1
    }

    /// Adds `count` nodes at once (indices `nodeCount ..< nodeCount + count`).
    mutating func addNodes(_ count: Int) {
        terminals.append(contentsOf: repeatElement(0, count: count))
    }

    /// Adds capacity `source` on the edge source → node and `sink` on node → sink. In energy terms: the node pays
    /// `sink` when it ends on the source side and `source` when it ends on the sink side. Both must be ≥ 0.
    mutating func addTerminalWeights(_ node: Int, source: Float, sink: Float) {
        precondition(source >= 0 && sink >= 0, "terminal capacities must be non-negative")
        let s = quantised(source), t = quantised(sink)
        flowValue += Int64(min(s, t))
        terminals[node] += s - t
    }

    /// Adds an edge with capacity `forward` from `a` to `b` and `backward` from `b` to `a` (both ≥ 0).
    mutating func addEdge(_ a: Int, _ b: Int, forward: Float, backward: Float) {
        precondition(a != b, "an edge needs two distinct nodes")
        precondition(a >= 0 && a < terminals.count && b >= 0 && b < terminals.count, "an edge needs existing nodes")
        precondition(forward >= 0 && backward >= 0, "edge capacities must be non-negative")
        edges.append(Edge(a: Int32(a), b: Int32(b), forward: quantised(forward), backward: quantised(backward)))
    }

    private func quantised(_ capacity: Float) -> Capacity {
        // Non-negative, so adding ½ and truncating rounds to nearest.
        Capacity(min(capacity * resolution + 0.5, 1e9))
    }

    /// After `maximumFlow()`: whether `node` lies on the source side of the minimum cut (nodes reachable from the
    /// source in the residual graph). Nodes not decided by the flow are put on the sink side.
    func isOnSourceSide(_ node: Int) -> Bool {
        guard let sides = sourceSide else { preconditionFailure("call maximumFlow() first") }
        return sides[node]
    }

    /// Computes the maximum flow; returns its value. Call once, after building the graph.
    ///
    /// The arcs are laid out node by node (each node's arcs contiguous, both residuals in every arc), each node's
    /// arcs in the reverse of the order they were added: the order in which a linked list of arcs, each new arc put
    /// at its head, would give them, so the search visits arcs as that classic layout would.
    @discardableResult
    mutating func maximumFlow() -> Float {
        maximumFlow(parts: nil, budget: .single)
    }

    /// `maximumFlow()` with the nodes cut in two parts, `0 ..< parts` and `parts ..< nodeCount`, whose flows are
    /// found first on their own (the edges between the parts held at zero capacity; side by side within `budget`),
    /// after which the edges between the parts get their capacities back and the search goes on from both parts'
    /// trees and flows until no augmenting path is left (the merge of Liu and Sun's parallel graph cuts, CVPR 2010).
    /// The result is a maximum flow of the whole graph, so the sides are those of `maximumFlow()` whatever the
    /// parts; it is faster when few edges cross between the parts (two halves of an image band, split at a row).
    /// `parts` nil, 0 or `nodeCount`: one piece.
    @discardableResult
    mutating func maximumFlow(parts split: Int?, budget: ComputeBudget) -> Float {
        let count = terminals.count
        guard !edges.isEmpty else {
            // No edges: each node sides with its larger terminal capacity (ties: the sink).
            sourceSide = terminals.map { $0 > 0 }
            return flow
        }
        var nodes = [Node](unsafeUninitializedCapacity: count) { buffer, initialised in
            for i in 0..<count { (buffer.baseAddress! + i).initialize(to: Node(firstArc: 0, endArc: 0,
                                                                            terminalResidual: terminals[i])) }
            initialised = count
        }
        var arcs = [Arc](repeating: Arc(head: 0, sister: 0, residual: 0, reverseResidual: 0), count: 2 * edges.count)
        var sides: [Bool] = []
        let pushed = nodes.withUnsafeMutableBufferPointer { nodes -> Int64 in
            arcs.withUnsafeMutableBufferPointer { arcs -> Int64 in
                edges.withUnsafeBufferPointer { edges -> Int64 in
                    let n = nodes.baseAddress!, arc = arcs.baseAddress!
                    // Degrees, then each node's first slot; edges placed last to first.
                    for e in edges { n[Int(e.a)].endArc += 1; n[Int(e.b)].endArc += 1 }
                    var next: Int32 = 0
                    for i in 0..<count {
                        let degree = n[i].endArc
                        n[i].firstArc = next
                        n[i].endArc = next      // the fill cursor until every arc is placed
                        next += degree
                    }
                    for e in edges.reversed() {
                        let ab = n[Int(e.a)].endArc, ba = n[Int(e.b)].endArc
                        n[Int(e.a)].endArc += 1; n[Int(e.b)].endArc += 1
                        arc[Int(ab)] = Arc(head: e.b, sister: ba, residual: e.forward, reverseResidual: e.backward)
                        arc[Int(ba)] = Arc(head: e.a, sister: ab, residual: e.backward, reverseResidual: e.forward)
                    }
                    guard let split, split > 0, split < count else {
                        let solver = BoykovKolmogorovSolver(nodes: n, nodeCount: count, arcs: arc)
                        let pushed = solver.run(nodes: 0..<count)
                        sides = solver.sides()
                        return pushed
                    }
                    // The end nodes of the edges between the parts, and those edges' arcs, which have no residual
                    // capacity while the parts run (their residuals kept to be put back).
                    var crossing: [Int32] = []
                    for e in edges where (Int(e.a) < split) != (Int(e.b) < split) {
                        crossing.append(e.a); crossing.append(e.b)
                    }
                    var crossingArcs: [(arc: Int, residual: Capacity, reverseResidual: Capacity)] = []
                    crossingArcs.reserveCapacity(crossing.count)
                    for i in 0..<count {
                        let upper = i < split
                        for a in Int(n[i].firstArc)..<Int(n[i].endArc) where (Int(arc[a].head) < split) != upper {
                            crossingArcs.append((a, arc[a].residual, arc[a].reverseResidual))
                            arc[a].residual = 0; arc[a].reverseResidual = 0
                        }
                    }
                    let parts = [BoykovKolmogorovSolver(nodes: n, nodeCount: count, arcs: arc),
                                 BoykovKolmogorovSolver(nodes: n, nodeCount: count, arcs: arc)]
                    // Each part's search touches only its own nodes and the arcs between them: an arc to the other
                    // part has no residual capacity either way, so it is never followed.
                    budget.forEachChunk(count: 2) { part in
                        _ = parts[part].run(nodes: part == 0 ? 0..<split : split..<count)
                    }
                    for c in crossingArcs { arc[c.arc].residual = c.residual; arc[c.arc].reverseResidual = c.reverseResidual }
                    let merge = BoykovKolmogorovSolver(nodes: n, nodeCount: count, arcs: arc)
                    let pushed = merge.resume(crossing: crossing, after: max(parts[0].time, parts[1].time))
                    sides = merge.sides()
                    return parts[0].flow + parts[1].flow + pushed
                }
            }
        }
        flowValue += pushed
        sourceSide = sides
        return flow
    }
}

/// The search-tree state of one max-flow computation, in raw buffers of per-node and per-arc records (a node's arcs
/// lie side by side and hold their reverse arc's residual too, so the inner loops read one node's arcs from
/// consecutive memory; no bounds or uniqueness checks: every index they use comes from the graph's own arcs).
final class BoykovKolmogorovSolver {
    typealias Capacity = MaxFlowGraph.Capacity

    static let none: Int32 = -1
    static let terminal: Int32 = -2
    static let orphan: Int32 = -3
    static let endOfQueue: Int32 = -4

    struct Node {
        /// The node's arcs are `firstArc ..< endArc`.
        var firstArc: Int32
        var endArc: Int32
        /// The arc from the node to its parent in its search tree; `terminal` for a tree root, `none` for a node in
        /// no tree (free), `orphan` while it is being re-attached.
        var parent: Int32 = BoykovKolmogorovSolver.none
        /// The head of `parent` while it is an arc (so a walk up the tree reads one record per step).
        var parentNode: Int32 = 0
        /// Next node in the active queue; `none` when not queued.
        var nextActive: Int32 = BoykovKolmogorovSolver.none
        var timestamp: Int32 = 0
        var distance: Int32 = 0
        /// Residual terminal capacity: > 0 toward the source, < 0 toward the sink.
        var terminalResidual: Capacity
        var inSinkTree = false
    }

    struct Arc {
        var head: Int32
        /// The reverse arc (head → tail).
        var sister: Int32
        var residual: Capacity
        /// The sister's residual (kept equal to `arcs[sister].residual`).
        var reverseResidual: Capacity
    }

    let nodeCount: Int
    /// The graph's records (owned by `MaxFlowGraph.maximumFlow`), updated in place.
    let nodes: UnsafeMutablePointer<Node>
    let arcs: UnsafeMutablePointer<Arc>
    // Unchecked: these are touched in every step of the inner loops, only by this object's own methods, one call at
    // a time; dynamic exclusivity checks on them cost about a sixth of the refinement's time.
    @exclusivity(unchecked) var queueHead = endOfQueue
    @exclusivity(unchecked) var queueTail = endOfQueue
    @exclusivity(unchecked) var orphans: [Int32] = []
    @exclusivity(unchecked) var flow: Int64 = 0
    /// The adoption rounds so far (each augmentation starts one; a node's `timestamp` is the round in which its
    /// distance to the root was last known to be right).
    @exclusivity(unchecked) var time: Int32 = 0

    init(nodes: UnsafeMutablePointer<Node>, nodeCount: Int, arcs: UnsafeMutablePointer<Arc>) {
        self.nodes = nodes
        self.nodeCount = nodeCount
        self.arcs = arcs
    }

    /// The side of every node after `run()`: source when it is in the source tree.
    func sides() -> [Bool] {
        (0..<nodeCount).map { nodes[$0].parent != Self.none && !nodes[$0].inSinkTree }
    }

    /// `bottleneck` pushed along arc `a` (and taken back on its sister).
    @inline(__always) private func push(_ bottleneck: Capacity, along a: Int) {
        let s = Int(arcs[a].sister)
        arcs[a].residual -= bottleneck; arcs[a].reverseResidual += bottleneck
        arcs[s].residual += bottleneck; arcs[s].reverseResidual -= bottleneck
    }

    /// Runs the algorithm on the nodes of `range` (all of them, or one part whose arcs to the other nodes have no
    /// residual capacity either way); returns the flow pushed through non-terminal paths.
    func run(nodes range: Range<Int>) -> Int64 {
        for i in range where nodes[i].terminalResidual != 0 {
            nodes[i].inSinkTree = nodes[i].terminalResidual < 0
            nodes[i].parent = Self.terminal
            nodes[i].distance = 1
            activate(Int32(i))
        }
        search()
        return flow
    }

    /// Goes on from the trees and flow that `run` left on parts of the graph once the arcs between the parts have
    /// their capacity back: the tree nodes among `crossing` (the end nodes of those arcs) become active, the only
    /// nodes that may now reach a node outside their tree, and the search runs until no augmenting path is left.
    /// `time` is the largest round the parts reached, so this search's rounds are new to every node. Returns the
    /// flow this search pushed.
    func resume(crossing: [Int32], after time: Int32) -> Int64 {
        self.time = time
        for i in crossing where nodes[Int(i)].parent != Self.none { activate(i) }
        search()
        return flow
    }

    /// Grows the trees from the active nodes, augments along every path that joins them and adopts the orphans,
    /// until no active node is left.
    private func search() {
        var current = Self.none
        while true {
            // Grow the trees from an active node until an arc joins them.
            var i: Int32
            if current != Self.none, nodes[Int(current)].parent != Self.none {
                i = current
            } else {
                i = popActive()
                if i == Self.none { break }
            }
            current = Self.none
            let ni = Int(i)
            let sinkSide = nodes[ni].inSinkTree
            let ts = nodes[ni].timestamp, dist = nodes[ni].distance
            var joining = Self.none
            var a = Int(nodes[ni].firstArc)
            let end = Int(nodes[ni].endArc)
            while a < end {
                // Source tree: the arc i → j must have residual capacity; sink tree: the arc j → i.
                if (sinkSide ? arcs[a].reverseResidual : arcs[a].residual) > 0 {
                    let j = Int(arcs[a].head)
                    if nodes[j].parent == Self.none {
                        nodes[j].inSinkTree = sinkSide
                        nodes[j].parent = arcs[a].sister; nodes[j].parentNode = i
                        nodes[j].timestamp = ts; nodes[j].distance = dist + 1
                        activate(Int32(j))
                    } else if nodes[j].inSinkTree != sinkSide {
                        joining = sinkSide ? arcs[a].sister : Int32(a)
                        break
                    } else if nodes[j].timestamp <= ts && nodes[j].distance > dist {
                        nodes[j].parent = arcs[a].sister; nodes[j].parentNode = i
                        nodes[j].timestamp = ts; nodes[j].distance = dist + 1
                    }
                }
                a += 1
            }
            guard joining != Self.none else { continue }
            time += 1
            // Keep growing from this node after the augmentation (it may have more joining arcs).
            current = i
            augment(through: Int(joining))
            // Re-attach the orphans the augmentation made, or free them; first in, first out, as in the original.
            var next = 0
            while next < orphans.count { adopt(Int(orphans[next]), time: time); next += 1 }
            orphans.removeAll(keepingCapacity: true)
        }
    }

    /// Appends a node to the queue of active nodes (those whose neighbours may still join its tree).
    @inline(__always) func activate(_ i: Int32) {
        guard nodes[Int(i)].nextActive == Self.none else { return }
        nodes[Int(i)].nextActive = Self.endOfQueue
        if queueTail == Self.endOfQueue { queueHead = i } else { nodes[Int(queueTail)].nextActive = i }
        queueTail = i
    }

    /// The next active node still in a tree, or `none` when none is left.
    @inline(__always) func popActive() -> Int32 {
        while queueHead != Self.endOfQueue {
            let i = queueHead
            queueHead = nodes[Int(i)].nextActive
            if queueHead == Self.endOfQueue { queueTail = Self.endOfQueue }
            nodes[Int(i)].nextActive = Self.none
            if nodes[Int(i)].parent != Self.none { return i }
        }
        return Self.none
    }

    @inline(__always) func makeOrphan(_ i: Int) {
        nodes[i].parent = Self.orphan
        orphans.append(Int32(i))
    }

    /// Pushes the bottleneck flow along source → … → tail(joining) → head(joining) → … → sink, and collects the
    /// nodes whose link to their parent became saturated as orphans.
    func augment(through joining: Int) {
        var bottleneck = arcs[joining].residual
        let tail = Int(arcs[Int(arcs[joining].sister)].head)
        // Source tree: from the arc's tail up to the root (a parent arc points child → parent; the flow runs
        // parent → child, on its sister).
        var i = tail
        while true {
            let a = nodes[i].parent
            if a == Self.terminal { break }
            bottleneck = min(bottleneck, arcs[Int(a)].reverseResidual)
            i = Int(nodes[i].parentNode)
        }
        bottleneck = min(bottleneck, nodes[i].terminalResidual)
        // Sink tree: from the arc's head down to the root.
        i = Int(arcs[joining].head)
        while true {
            let a = nodes[i].parent
            if a == Self.terminal { break }
            bottleneck = min(bottleneck, arcs[Int(a)].residual)
            i = Int(nodes[i].parentNode)
        }
        bottleneck = min(bottleneck, -nodes[i].terminalResidual)

        push(bottleneck, along: joining)
        i = tail
        while true {
            let a = nodes[i].parent
            if a == Self.terminal { break }
            let ai = Int(a)
            push(bottleneck, along: Int(arcs[ai].sister))
            let up = Int(nodes[i].parentNode)
            if arcs[ai].reverseResidual == 0 { makeOrphan(i) }
            i = up
        }
        nodes[i].terminalResidual -= bottleneck
        if nodes[i].terminalResidual == 0 { makeOrphan(i) }
        i = Int(arcs[joining].head)
        while true {
            let a = nodes[i].parent
            if a == Self.terminal { break }
            let ai = Int(a)
            push(bottleneck, along: ai)
            let up = Int(nodes[i].parentNode)
            if arcs[ai].residual == 0 { makeOrphan(i) }
            i = up
        }
        nodes[i].terminalResidual += bottleneck
        if nodes[i].terminalResidual == 0 { makeOrphan(i) }
        flow += Int64(bottleneck)
    }

    /// Finds `node` a new parent in its own tree with a valid path to the root (the nearest one), or frees it; its
    /// children become orphans in turn and its tree neighbours become active again.
    func adopt(_ node: Int, time: Int32) {
        let sinkSide = nodes[node].inSinkTree
        var bestArc = Self.none
        var bestNode: Int32 = 0
        var bestDistance = Int32.max
        let first = Int(nodes[node].firstArc), end = Int(nodes[node].endArc)
        for ai in first..<end {
            // The residual edge must point toward the node for the source tree, away from it for the sink tree.
            let j = Int(arcs[ai].head)
            if (sinkSide ? arcs[ai].residual : arcs[ai].reverseResidual) > 0, nodes[j].inSinkTree == sinkSide,
               nodes[j].parent != Self.none {
                // Walk up to the root, checking the path is still attached to a terminal.
                var k = j
                var steps: Int32 = 0
                var attached = false
                while true {
                    if nodes[k].timestamp == time { steps += nodes[k].distance; attached = true; break }
                    let pa = nodes[k].parent
                    steps += 1
                    if pa == Self.terminal { nodes[k].timestamp = time; nodes[k].distance = 1; attached = true; break }
                    if pa == Self.orphan || pa == Self.none { break }
                    k = Int(nodes[k].parentNode)
                }
                if attached {
                    if steps < bestDistance { bestArc = Int32(ai); bestNode = Int32(j); bestDistance = steps }
                    // Record distances along the path for later walks.
                    var k2 = j
                    var d = steps
                    while nodes[k2].timestamp != time {
                        nodes[k2].timestamp = time; nodes[k2].distance = d; d -= 1
                        k2 = Int(nodes[k2].parentNode)
                    }
                }
            }
        }
        if bestArc != Self.none {
            nodes[node].parent = bestArc
            nodes[node].parentNode = bestNode
            nodes[node].timestamp = time
            nodes[node].distance = bestDistance + 1
            return
        }
        // No valid parent: the node becomes free.
        nodes[node].parent = Self.none
        for ai in first..<end {
            // An arc with no residual capacity either way is neither a tree link nor a way into the tree (and, while
            // the parts of `MaxFlowGraph.maximumFlow(parts:budget:)` run, leads into the other part: never read it).
            guard arcs[ai].residual != 0 || arcs[ai].reverseResidual != 0 else { continue }
            let j = Int(arcs[ai].head)
            let pa = nodes[j].parent
            if nodes[j].inSinkTree == sinkSide, pa != Self.none {
                if (sinkSide ? arcs[ai].residual : arcs[ai].reverseResidual) > 0 { activate(Int32(j)) }
                if pa != Self.terminal, pa != Self.orphan, Int(nodes[j].parentNode) == node { makeOrphan(j) }
            }
        }
    }
}
