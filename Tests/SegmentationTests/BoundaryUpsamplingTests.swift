import ProbattnImaging
import ProbattnSegmentation
import Testing

/// The full-resolution boundary of a reduced image's mask (`BoundaryUpsampler`).
@Suite("Boundary upsampling")
struct BoundaryUpsamplingTests {
    /// A sharp vertical edge inside a block: the block expansion puts the boundary at a block edge, the upsampling
    /// at the image's own edge, on every row; a protected block keeps its label.
    @Test func aBoundaryInsideABlockIsPlacedAtTheImageEdge() throws {
        let f = 4, w = 32, h = 12, edge = 13  // the edge falls inside working column 3 (image columns 12...15)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let v: UInt8 = x < edge ? 30 : 220
                pixels[(y * w + x) * 3] = v; pixels[(y * w + x) * 3 + 1] = v / 2; pixels[(y * w + x) * 3 + 2] = 255 - v
            }
        }
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let resolution = WorkingResolution(width: w, height: h, factor: f)
        let small = resolution.reduce(image)
        // Working columns 0...3 object (0), 4... background (1): the straddling block 3 is labelled object.
        var working = LabelMask(width: resolution.workingWidth, height: resolution.workingHeight, filledWith: 1)
        for y in 0..<working.height {
            for x in 0...3 { working.labels[y * working.width + x] = 0 }
        }
        let mask = BoundaryUpsampler.standard.upsample(working, image: image, workingImage: small,
                                                       resolution: resolution, protected: [])
        for y in 0..<h {
            for x in 0..<w {
                #expect(mask.labels[y * w + x] == (x < edge ? 0 : 1), "pixel (\(x), \(y))")
            }
        }
        // Protecting the straddling blocks of working row 1 keeps its block labels there.
        let protected: Set<Int> = [1 * working.width + 3]
        let kept = BoundaryUpsampler.standard.upsample(working, image: image, workingImage: small,
                                                       resolution: resolution, protected: protected)
        for y in 4..<8 {
            for x in 12..<16 { #expect(kept.labels[y * w + x] == 0, "protected pixel (\(x), \(y))") }
        }
        #expect(kept.labels[0 * w + 15] == 1, "an unprotected block of the same column is relabelled")
    }

    /// Rewriting only the changed working rectangle and the blocks whose protection changed, grown by the reach
    /// (and there only the blocks whose neighbourhood or protection changed), gives the from-scratch mask pixel for
    /// pixel, for random images, random changes of random rectangles and random protected sets, at factors the size
    /// does not divide.
    @Test(arguments: [(3, 47, 31), (7, 90, 61)])
    func relabellingTheGrownChangeEqualsRelabellingEverything(factor: Int, width: Int, height: Int) throws {
        var state: UInt64 = UInt64(factor * 7919 + width)
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        // Smooth colour regions with noise, so that the colour term decides somewhere.
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let region = (x * 3 / width + y * 2 / height) % 3
                for c in 0..<3 { pixels[(y * width + x) * 3 + c] = UInt8((region * 90 + c * 40 + next(25)) % 256) }
            }
        }
        let image = RGBImage(width: width, height: height, pixels: pixels)
        let resolution = WorkingResolution(width: width, height: height, factor: factor)
        let small = resolution.reduce(image)
        let ww = resolution.workingWidth, wh = resolution.workingHeight
        let upsampler = BoundaryUpsampler.standard
        var working = LabelMask(width: ww, height: wh, filledWith: 1)
        var protected: Set<Int> = []
        var mask = upsampler.upsample(working, image: image, workingImage: small, resolution: resolution,
                                      protected: protected)
        var relabelled = 0
        var previousWorking = working
        for step in 0..<30 {
            let x = next(ww), y = next(wh)
            let changed = PixelRect(x: x, y: y, width: 1 + next(min(6, ww - x)), height: 1 + next(min(6, wh - y)))
            let label = UInt8(next(3))
            for yy in changed.y..<changed.maxY {
                for xx in changed.x..<changed.maxX where next(4) > 0 { working.labels[yy * ww + xx] = label }
            }
            var updated = protected
            if step % 3 == 0 { updated.insert(next(ww * wh)) } else if step % 3 == 1, let any = updated.min() {
                updated.remove(any)
            }
            var region = changed
            for block in updated.symmetricDifference(protected) {
                region = region.union(PixelRect(x: block % ww, y: block / ww, width: 1, height: 1))
            }
            region = region.expanded(by: BoundaryUpsampler.reach, clippedTo: ww, wh)
            upsampler.write(working, rect: region, image: image, workingImage: small, resolution: resolution,
                            protected: updated, previous: (previousWorking, protected), into: &mask)
            protected = updated
            previousWorking = working
            let scratch = upsampler.upsample(working, image: image, workingImage: small, resolution: resolution,
                                             protected: protected)
            #expect(mask == scratch, "factor \(factor), step \(step)")
            relabelled += zip(scratch.labels, resolution.expand(working).labels).filter { $0 != $1 }.count
        }
        #expect(relabelled > 0, "the upsampling moved no boundary: the test checks nothing")
    }
}
