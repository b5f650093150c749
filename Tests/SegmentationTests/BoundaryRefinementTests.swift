import Foundation
import ProbattnImaging
import Testing
import ProbattnStages
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

/// The pixel-level refinement on hand-made bands whose answer is known: a soft class ramp across a sharp colour
/// edge must end exactly on the edge, fixed pixels keep their labels, isolated outliers in a flat region go, and
/// three classes are handled by expansion moves; each both with every pixel its own graph node (the exact minimum)
/// and with flat 2 × 2 blocks moving together (the default).
@Suite struct BoundaryRefinementTests {
    /// An image whose colour changes at every x in `edges` (vertical stripes of well-separated colours).
    func stripes(width: Int, height: Int, edges: [Int]) -> RGBImage {
        let colours: [(UInt8, UInt8, UInt8)] = [(200, 60, 50), (60, 160, 80), (40, 60, 200), (220, 220, 40)]
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let stripe = edges.filter { x >= $0 }.count
                let c = colours[stripe % colours.count]
                let o = (y * width + x) * 3
                pixels[o] = c.0; pixels[o + 1] = c.1; pixels[o + 2] = c.2
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Every pixel with x in `columns` as the band, in raster order.
    func band(width: Int, height: Int, columns: ClosedRange<Int>) -> [Int32] {
        var band: [Int32] = []
        for y in 0..<height { for x in columns { band.append(Int32(y * width + x)) } }
        return band
    }

    /// A colour edge at x = 17 (odd: inside a 2 × 2 block's columns), the band x = 10…29 and class probabilities
    /// falling linearly across it, crossing 0.5 at x ≈ 19.5; the starting labels are their argmax, 2–3 pixels inside
    /// the second colour.
    func ramp(height h: Int) -> (image: RGBImage, pixels: [Int32], probabilities: [Float], labels: [UInt8]) {
        let w = Self.rampWidth
        let pixels = band(width: w, height: h, columns: 10...29)
        func p0(_ x: Int) -> Double { 1 - Double(x - 10) / 19 * 0.9 - 0.05 }
        let probabilities = pixels.flatMap { p -> [Float] in let p = Float(p0(Int(p) % w)); return [p, 1 - p] }
        let labels = (0..<(w * h)).map { i -> UInt8 in
            let x = i % w
            return x < 10 ? 0 : x > 29 ? 1 : (p0(x) < 0.5 ? 1 : 0)
        }
        return (stripes(width: w, height: h, edges: [Self.rampEdge]), pixels, probabilities, labels)
    }
    static let rampWidth = 40, rampEdge = 17

    @Test(arguments: [false, true]) func aSoftRampEndsOnTheColourEdge(flatBlocks: Bool) {
        let w = Self.rampWidth, h = 12, edge = Self.rampEdge
        var (image, pixels, probabilities, labels) = ramp(height: h)
        let before = (0..<(w * h)).filter { labels[$0] != (($0 % w) < edge ? 0 : 1) }.count
        #expect(before >= 2 * h, "the argmax should start off the edge")
        BoundaryRefinement(smoothness: 2, reach: 20, flatBlockThreshold: flatBlocks ? 0.5 : nil)
            .refine(labels: &labels, image: image, band: pixels, probabilities: probabilities,
                    fixedInBand: [Bool](repeating: false, count: pixels.count), classCount: 2)
        for i in 0..<(w * h) { #expect(labels[i] == ((i % w) < edge ? 0 : 1), "pixel (\(i % w), \(i / w))") }
    }

    @Test func aLargeBandCutOnTwoThreadsEndsOnTheColourEdgeToo() {
        // The ramp on an image tall enough for the two-class move to be cut in two halves and merged (every pixel its
        // own node: 20 × 400 = 8000 nodes): the same cut as in one piece.
        let w = Self.rampWidth, h = 400, edge = Self.rampEdge
        let (image, pixels, probabilities, initial) = ramp(height: h)
        var split = initial, whole = initial
        let fixed = [Bool](repeating: false, count: pixels.count)
        BoundaryRefinement(smoothness: 2, reach: 20, flatBlockThreshold: nil, splitNodes: 4000)
            .refine(labels: &split, image: image, band: pixels, probabilities: probabilities, fixedInBand: fixed,
                    classCount: 2, budget: ComputeBudget(threads: 2))
        BoundaryRefinement(smoothness: 2, reach: 20, flatBlockThreshold: nil, splitNodes: .max)
            .refine(labels: &whole, image: image, band: pixels, probabilities: probabilities, fixedInBand: fixed,
                    classCount: 2)
        let differing = zip(split, whole).filter { $0 != $1 }.count
        #expect(differing == 0)
        let offEdge = (0..<(w * h)).filter { split[$0] != (($0 % w) < edge ? 0 : 1) }.count
        #expect(offEdge == 0)
    }

    @Test(arguments: [(false, 2), (true, 2), (false, 3), (true, 3)])
    func aLargeNoisyBandCutInHalvesEqualsTheCutInOnePiece(flatBlocks: Bool, classCount k: Int) {
        // Random colours in flat patches and random class probabilities over a 180 × 200 band, some pixels fixed: a
        // tangle of small cuts on both sides of the split row. In halves and in chunks (the pixels within reach and
        // the neighbour weights searched chunk by chunk), on one thread and two, against one piece and one chunk;
        // with three classes every α-expansion move is cut in halves.
        let w = 180, h = 200
        var rng = SplitMix64(state: 31)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        var patch: [[UInt8]] = []
        for _ in 0..<((w / 6 + 1) * (h / 6 + 1)) { patch.append((0..<3).map { _ in UInt8(rng.next() % 256) }) }
        for y in 0..<h {
            for x in 0..<w {
                let c = patch[(y / 6) * (w / 6 + 1) + x / 6]
                for k in 0..<3 { pixels[(y * w + x) * 3 + k] = UInt8(min(255, Int(c[k]) + Int(rng.next() % 12))) }
            }
        }
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let band = band(width: w, height: h, columns: 0...(w - 1))
        let probabilities = band.flatMap { _ -> [Float] in
            let raw = (0..<k).map { _ in Float(rng.next() % 1000 + 1) }
            let total = raw.reduce(0, +)
            return raw.map { $0 / total }
        }
        let initial = (0..<(w * h)).map { i -> UInt8 in
            let p = probabilities[(k * i)..<(k * i + k)]
            return UInt8(p.firstIndex(of: p.max()!)! - k * i)
        }
        let fixed = band.map { _ in rng.next() % 50 == 0 }
        let threshold: Float? = flatBlocks ? 0.5 : nil
        var whole = initial
        BoundaryRefinement(smoothness: 3, reach: 6, flatBlockThreshold: threshold, splitNodes: .max,
                           chunkPixels: .max)
            .refine(labels: &whole, image: image, band: band, probabilities: probabilities, fixedInBand: fixed,
                    classCount: k)
        #expect(whole != initial, "the cut should move some pixels")
        for threads in [1, 2] {
            var halves = initial
            BoundaryRefinement(smoothness: 3, reach: 6, flatBlockThreshold: threshold, splitNodes: 100,
                               chunkPixels: 5_000)
                .refine(labels: &halves, image: image, band: band, probabilities: probabilities, fixedInBand: fixed,
                        classCount: k, budget: ComputeBudget(threads: threads))
            #expect(zip(halves, whole).filter { $0 != $1 }.count == 0, "\(k) classes, \(threads) thread(s)")
        }
    }

    @Test(arguments: [false, true]) func fixedPixelsKeepTheirLabels(flatBlocks: Bool) {
        // A flat image, a confident class-0 band, and one fixed class-1 pixel in its middle.
        let w = 20, h = 9
        let image = stripes(width: w, height: h, edges: [])
        let pixels = band(width: w, height: h, columns: 0...(w - 1))
        var labels = [UInt8](repeating: 0, count: w * h)
        let fixedPixel = 4 * w + 10
        labels[fixedPixel] = 1
        let probabilities = pixels.flatMap { _ in [Float(0.9), Float(0.1)] }
        let fixed = pixels.map { Int($0) == fixedPixel }
        BoundaryRefinement(smoothness: 5, reach: 20, flatBlockThreshold: flatBlocks ? 0.5 : nil)
            .refine(labels: &labels, image: image, band: pixels, probabilities: probabilities, fixedInBand: fixed,
                    classCount: 2)
        #expect(labels[fixedPixel] == 1)
        #expect(labels.filter { $0 == 1 }.count == 1, "the strong class-0 evidence keeps every other pixel")
    }

    @Test(arguments: [false, true]) func isolatedOutliersInAFlatRegionAreRemoved(flatBlocks: Bool) {
        // A flat image: a single pixel whose probabilities lean to class 1 among class-0 neighbours flips back;
        // with no smoothness it stays.
        let w = 15, h = 15
        let image = stripes(width: w, height: h, edges: [])
        let pixels = band(width: w, height: h, columns: 0...(w - 1))
        let outlier = 7 * w + 7
        let probabilities = pixels.flatMap { Int($0) == outlier ? [Float(0.3), Float(0.7)] : [Float(0.7), Float(0.3)] }
        let initial = (0..<(w * h)).map { UInt8($0 == outlier ? 1 : 0) }
        var smoothed = initial
        BoundaryRefinement(smoothness: 1, reach: 20, flatBlockThreshold: flatBlocks ? 0.5 : nil)
            .refine(labels: &smoothed, image: image, band: pixels, probabilities: probabilities,
                    fixedInBand: [Bool](repeating: false, count: pixels.count), classCount: 2)
        #expect(smoothed.allSatisfy { $0 == 0 })
        var unsmoothed = initial
        BoundaryRefinement(smoothness: 0, reach: 20, flatBlockThreshold: flatBlocks ? 0.5 : nil)
            .refine(labels: &unsmoothed, image: image, band: pixels, probabilities: probabilities,
                    fixedInBand: [Bool](repeating: false, count: pixels.count), classCount: 2)
        #expect(unsmoothed == initial)
    }

    @Test(arguments: [false, true]) func threeClassesFollowTwoColourEdges(flatBlocks: Bool) {
        // Colour edges at x = 12 and x = 26; each class's probability is highest on its own stripe but blurred
        // over ±4 pixels, and the starting labels are shifted by 3 pixels.
        let w = 38, h = 8, edges = [12, 26]
        let image = stripes(width: w, height: h, edges: edges)
        let pixels = band(width: w, height: h, columns: 0...(w - 1))
        func truth(_ x: Int) -> Int { edges.filter { x >= $0 }.count }
        var probabilities: [Float] = []
        for p in pixels {
            let x = Int(p) % w
            var scores = (0..<3).map { c -> Float in
                let centre = [6, 19, 32][c]
                return expf(-Float((x - centre) * (x - centre)) / 60)
            }
            let total = scores.reduce(0, +)
            scores = scores.map { $0 / total }
            probabilities += scores
        }
        var labels = (0..<(w * h)).map { UInt8(truth(min(w - 1, $0 % w + 3))) }
        BoundaryRefinement(smoothness: 3, reach: 40, flatBlockThreshold: flatBlocks ? 0.5 : nil)
            .refine(labels: &labels, image: image, band: pixels, probabilities: probabilities,
                    fixedInBand: [Bool](repeating: false, count: pixels.count), classCount: 3)
        for i in 0..<(w * h) { #expect(Int(labels[i]) == truth(i % w), "pixel (\(i % w), \(i / w))") }
    }
}
