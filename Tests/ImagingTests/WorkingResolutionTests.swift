import ProbattnCore
import ProbattnImaging
import Testing

@Suite struct WorkingResolutionTests {
    @Test func theFactorIsTheSmallestThatFitsTheBudget() {
        let budget = WorkingResolution.defaultMaxPixels
        #expect(WorkingResolution(width: 640, height: 480, maxPixels: budget).factor == 1)
        #expect(WorkingResolution(width: 481, height: 321, maxPixels: budget).factor == 1)
        let hd = WorkingResolution(width: 1920, height: 1080, maxPixels: budget)
        #expect(hd.factor == 3 && hd.workingWidth == 640 && hd.workingHeight == 360)
        let photo = WorkingResolution(width: 4000, height: 3000, maxPixels: budget)
        #expect(photo.factor == 7 && photo.workingWidth == 572 && photo.workingHeight == 429)
        #expect(photo.workingWidth * photo.workingHeight <= budget)
        let six = WorkingResolution(width: 4000, height: 3000, factor: 6)
        #expect(six.workingWidth * six.workingHeight > budget, "factor 6 would not fit")
        // A strip far narrower than the factor still gets one working pixel per block.
        let strip = WorkingResolution(width: 100_000, height: 2, maxPixels: 4096)
        #expect(strip.workingWidth * strip.workingHeight <= 4096 && strip.workingHeight == 1)
    }

    @Test func aClickedPixelHasItsWorkingPixelsLabel() {
        // 23 × 17 at factor 4: 6 × 5 working pixels, the right and bottom blocks narrower.
        let resolution = WorkingResolution(width: 23, height: 17, factor: 4)
        var labels = [UInt8](repeating: 0, count: 30)
        var state: UInt64 = 7
        for i in labels.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            labels[i] = UInt8(state >> 61)
        }
        let working = LabelMask(width: 6, height: 5, labels: labels)
        let mask = resolution.expand(working)
        for y in 0..<17 {
            for x in 0..<23 {
                #expect(mask.labels[y * 23 + x] == labels[resolution.working(y) * 6 + resolution.working(x)])
            }
        }
    }

    @Test func expandingARectangleWritesOnlyItsBlocks() {
        let resolution = WorkingResolution(width: 23, height: 17, factor: 4)
        let working = LabelMask(width: 6, height: 5, filledWith: 2)
        var mask = LabelMask(width: 23, height: 17, filledWith: 9)
        let written = resolution.expand(working, rect: PixelRect(x: 4, y: 3, width: 2, height: 2), into: &mask)
        #expect(written == PixelRect(x: 16, y: 12, width: 7, height: 5), "clipped to the image")
        for y in 0..<17 {
            for x in 0..<23 {
                let inside = x >= 16 && y >= 12
                #expect(mask.labels[y * 23 + x] == (inside ? 2 : 9), "(\(x), \(y))")
            }
        }
        #expect(resolution.expand(working, rect: .empty, into: &mask) == .empty)
    }

    @Test(arguments: [2, 3, 7])
    func theNextVersionBuiltInBandsEqualsTheRectangleExpandedIntoACopy(factor: Int) {
        // Sizes the factor does not divide, random labels and rectangles (the whole image among them), bands of a
        // few block rows run in reverse order and concurrently: the same bytes as a copy of the previous version
        // with the rectangle expanded into it, and the previous version untouched.
        let width = 10 * factor + 3, height = 8 * factor + 2
        let resolution = WorkingResolution(width: width, height: height, factor: factor)
        let ww = resolution.workingWidth, wh = resolution.workingHeight
        var state: UInt64 = UInt64(factor)
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % bound
        }
        var previous = LabelMask(width: width, height: height, labels: (0..<(width * height)).map { _ in UInt8(next(3)) })
        for trial in 0..<30 {
            let working = LabelMask(width: ww, height: wh, labels: (0..<(ww * wh)).map { _ in UInt8(next(3)) })
            let x = next(ww), y = next(wh)
            let rect = trial == 0 ? PixelRect(x: 0, y: 0, width: ww, height: wh)
                : PixelRect(x: x, y: y, width: 1 + next(ww - x), height: 1 + next(wh - y))
            var expected = previous
            let expectedRect = resolution.expand(working, rect: rect, into: &expected)
            let before = previous
            let reversed = resolution.expanded(working, rect: rect, over: previous, pixelsPerBand: 3 * factor * width) {
                count, body in for band in (0..<count).reversed() { body(band) }
            }
            let concurrent = resolution.expanded(working, rect: rect, over: previous, pixelsPerBand: 2 * factor * width) {
                count, body in ParallelChunks.perform(count, body)
            }
            #expect(reversed.mask == expected && reversed.rect == expectedRect, "trial \(trial)")
            #expect(concurrent.mask == expected && concurrent.rect == expectedRect, "trial \(trial)")
            #expect(previous == before)
            previous = expected
        }
    }

    @Test func theWorkingCopyIsTheBlockMean() {
        var pixels = [UInt8](repeating: 0, count: 5 * 3 * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 37) % 256) }
        let image = RGBImage(width: 5, height: 3, pixels: pixels)
        let resolution = WorkingResolution(width: 5, height: 3, factor: 2)
        let reduced = resolution.reduce(image)
        #expect(reduced.width == 3 && reduced.height == 2)
        for ry in 0..<2 {
            for rx in 0..<3 {
                for c in 0..<3 {
                    var sum = 0, count = 0
                    for y in (ry * 2)..<min(3, ry * 2 + 2) {
                        for x in (rx * 2)..<min(5, rx * 2 + 2) { sum += Int(pixels[(y * 5 + x) * 3 + c]); count += 1 }
                    }
                    #expect(Int(reduced.pixels[(ry * 3 + rx) * 3 + c]) == (sum + count / 2) / count)
                }
            }
        }
        #expect(WorkingResolution(width: 5, height: 3, factor: 1).reduce(image) == image)
    }
}
