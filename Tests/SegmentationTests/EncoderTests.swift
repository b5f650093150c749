import ProbattnImaging
import ProbattnStages
import Testing
@testable import ProbattnSegmentation
import ProbattnEvaluation
import ProbattnJSON

@Suite struct EncoderTests {
    @Test func gridCellsWithoutSuperpixelsAreExactFootprints() throws {
        let scene = DiscScene(width: 64, height: 48)
        let encoder = GridFeatureEncoder(stride: 8, maxTokens: 10_000, superpixelIterations: 0)
        let encoded = try encoder.encode(scene.image)
        #expect(encoded.grid == TokenGrid(rows: 6, cols: 8))
        #expect(encoded.tokenCount == 48)
        #expect(encoded.featureDimension == GridFeatureEncoder.featureDimension)
        #expect(encoded.features.count == 48 * GridFeatureEncoder.featureDimension)
        #expect(encoded.tokenColours.count == 48 * 3)
        #expect(encoded.tokenCentres.count == 48 * 2)
        #expect(encoded.tokenOfPixel.count == 64 * 48)
        for y in 0..<48 {
            for x in 0..<64 {
                #expect(encoded.tokenOfPixel[y * 64 + x] == Int32((y / 8) * 8 + x / 8))
            }
        }
        // The centre of cell (0, 0) is (3.5, 3.5).
        #expect(abs(encoded.tokenCentres[0] - 3.5) < 1e-4 && abs(encoded.tokenCentres[1] - 3.5) < 1e-4)
    }

    @Test func superpixelsStayNearTheirGridCellAndFollowTheDiscEdge() throws {
        let scene = DiscScene(width: 96, height: 72)
        let plain = try GridFeatureEncoder(stride: 8, maxTokens: 10_000, superpixelIterations: 0).encode(scene.image)
        let refined = try GridFeatureEncoder(stride: 8, maxTokens: 10_000, superpixelIterations: 6).encode(scene.image)
        let grid = try #require(refined.grid)
        #expect(refined.features.allSatisfy { $0.isFinite })
        // Every pixel belongs to its own grid cell or one of the 8 around it (the grid index keeps its meaning).
        for y in 0..<72 {
            for x in 0..<96 {
                let t = Int(refined.tokenOfPixel[y * 96 + x])
                #expect(t >= 0 && t < grid.rows * grid.cols)
                #expect(abs(t / grid.cols - y / 8) <= 1 && abs(t % grid.cols - x / 8) <= 1)
            }
        }
        // Superpixels mix fewer disc and background pixels than square cells do.
        func mixedPixels(_ encoded: EncodedImage) -> Int {
            var inCount = [Int](repeating: 0, count: encoded.tokenCount)
            var total = [Int](repeating: 0, count: encoded.tokenCount)
            for i in 0..<scene.inside.count {
                let t = Int(encoded.tokenOfPixel[i])
                total[t] += 1
                if scene.inside[i] { inCount[t] += 1 }
            }
            return zip(inCount, total).map { min($0, $1 - $0) }.reduce(0, +)
        }
        #expect(mixedPixels(refined) < mixedPixels(plain) / 2)
    }

    @Test func tokenBudgetEnlargesTheStride() throws {
        let encoder = GridFeatureEncoder(stride: 4, maxTokens: 100)
        let grid = encoder.grid(width: 640, height: 480)
        #expect(grid.rows * grid.cols <= 100)
        #expect(grid.rows * grid.cols >= 80)
        #expect(abs(Double(grid.cols) / Double(grid.rows) - 640.0 / 480.0) < 0.25)
    }

    @Test func featuresScaleWithTheirSigmas() throws {
        let scene = DiscScene(width: 48, height: 48)
        let a = try GridFeatureEncoder(stride: 8, superpixelIterations: 0, colourSigma: 10).encode(scene.image)
        let b = try GridFeatureEncoder(stride: 8, superpixelIterations: 0, colourSigma: 20).encode(scene.image)
        let c = GridFeatureEncoder.featureDimension
        for t in 0..<a.tokenCount {
            // Colour features halve, position features stay.
            #expect(abs(a.features[t * c] - 2 * b.features[t * c]) < 1e-3)
            #expect(a.features[t * c + 3] == b.features[t * c + 3])
            // L/colour_sigma is the token's mean L over sigma.
            #expect(abs(a.features[t * c] * 10 - a.tokenColours[t * 3]) < 1e-3)
        }
    }

    @Test func labConversionMatchesKnownColours() {
        let converter = LabConverter()
        let white = converter.lab(255, 255, 255)
        #expect(abs(white.0 - 100) < 0.01 && abs(white.1) < 0.01 && abs(white.2) < 0.01)
        let black = converter.lab(0, 0, 0)
        #expect(abs(black.0) < 0.01)
        // sRGB red is L 53.24, a 80.09, b 67.20 (CIE D65).
        let red = converter.lab(255, 0, 0)
        #expect(abs(red.0 - 53.24) < 0.05 && abs(red.1 - 80.09) < 0.1 && abs(red.2 - 67.20) < 0.1)
    }

    @Test func largeCellsAreEncodedOnTheBoxAveragedImage() throws {
        let scene = DiscScene(width: 190, height: 143)  // not multiples of 3: partial edge blocks
        let encoder = GridFeatureEncoder(stride: 8, maxTokens: 48, reducedResolution: true)
        #expect(encoder.scale(width: 190, height: 143) == 2)
        #expect(GridFeatureEncoder(stride: 8, maxTokens: 48, reducedResolution: false).scale(width: 190, height: 143) == 1)
        #expect(GridFeatureEncoder().scale(width: 4000, height: 3000) == 1, "off by default")
        let reducing = GridFeatureEncoder(reducedResolution: true)
        #expect(reducing.scale(width: 640, height: 480) == 1)
        #expect(reducing.scale(width: 481, height: 321) == 1)
        #expect(reducing.scale(width: 1920, height: 1080) == 2)
        #expect(reducing.scale(width: 4000, height: 3000) == 6)

        let encoded = try encoder.encode(scene.image)
        #expect(encoded.image == scene.image, "the pixel stages get the full-resolution image")
        #expect(encoded.grid == encoder.grid(width: 190, height: 143))
        #expect(encoded.tokenOfPixel.count == 190 * 143)

        // The same as encoding the 2 × 2 box average on the full image's grid, each pixel in its block's token.
        let reduced = scene.image.boxAveraged(factor: 2)
        #expect(reduced.width == 95 && reduced.height == 72)
        let block = (0..<4).map { Int(scene.image.pixels[[0, 3, 190 * 3, 190 * 3 + 3][$0]]) }.reduce(0, +)
        #expect(Int(reduced.pixels[0]) == (block + 2) / 4)
        // The bottom edge block has one row: the mean of two pixels.
        let last = 142 * 190 * 3
        #expect(Int(reduced.pixels[71 * 95 * 3]) == (Int(scene.image.pixels[last]) + Int(scene.image.pixels[last + 3]) + 1) / 2)
        let small = try GridFeatureEncoder(stride: 8, maxTokens: 48, reducedResolution: false).encode(reduced)
        #expect(small.grid == encoded.grid)
        #expect(small.features == encoded.features)
        for y in 0..<143 {
            for x in 0..<190 where encoded.tokenOfPixel[y * 190 + x] != small.tokenOfPixel[(y / 2) * 95 + x / 2] {
                Issue.record("pixel (\(x), \(y)) is not in its block's token")
            }
        }
        // Token centres in full-resolution pixels: within a pixel of the full-resolution footprint's mean.
        var sums = [Double](repeating: 0, count: encoded.tokenCount * 3)
        for y in 0..<143 {
            for x in 0..<190 {
                let t = Int(encoded.tokenOfPixel[y * 190 + x])
                sums[t * 3] += 1; sums[t * 3 + 1] += Double(x); sums[t * 3 + 2] += Double(y)
            }
        }
        for t in 0..<encoded.tokenCount where sums[t * 3] > 0 {
            #expect(abs(sums[t * 3 + 1] / sums[t * 3] - Double(encoded.tokenCentres[t * 2])) <= 1.0)
            #expect(abs(sums[t * 3 + 2] / sums[t * 3] - Double(encoded.tokenCentres[t * 2 + 1])) <= 1.0)
        }
    }
}
