import Foundation
import ProbattnImaging
import Testing

/// The decoder on real files of every supported layout, written by our encoders and by the test's BMP writer.
@Suite struct DecodingTests {
    @Test func pngRGBRoundTripIsExact() throws {
        let image = TestImages.noise(width: 37, height: 23)
        let bytes = try ImageEncoding.png(image)
        #expect(ImageFormat.detect(bytes) == .png)
        #expect(try ImageDecoder.decode(bytes) == image)
        #expect(try ImageDecoder.decode(Data(bytes)) == image)
    }

    @Test func greyPNGBecomesEqualRGBChannels() throws {
        let grey: [UInt8] = (0..<(19 * 7)).map { UInt8(($0 * 37) % 256) }
        let decoded = try ImageDecoder.decode(try ImageEncoding.png(grey: grey, width: 19, height: 7))
        #expect(decoded.width == 19 && decoded.height == 7)
        for i in grey.indices {
            #expect(decoded.pixels[i * 3] == grey[i] && decoded.pixels[i * 3 + 1] == grey[i]
                    && decoded.pixels[i * 3 + 2] == grey[i])
        }
    }

    @Test func maskPNGHoldsTheObjectClassAs255() throws {
        let mask = LabelMask(width: 4, height: 2, labels: [0, 1, 1, 0, 2, 0, 1, 1])
        let decoded = try ImageDecoder.decode(try ImageEncoding.png(mask: mask, objectClass: 0))
        #expect(stride(from: 0, to: decoded.pixels.count, by: 3).map { decoded.pixels[$0] }
                == [255, 0, 0, 255, 0, 255, 0, 0])
        let labels = try ImageDecoder.decode(try ImageEncoding.png(labels: mask))
        #expect(stride(from: 0, to: labels.pixels.count, by: 3).map { labels.pixels[$0] } == mask.labels)
    }

    @Test func jpegRGBRoundTripIsClose() throws {
        let image = TestImages.gradient(width: 64, height: 48)
        let bytes = try ImageEncoding.jpeg(image, quality: 95)
        #expect(ImageFormat.detect(bytes) == .jpeg)
        let decoded = try ImageDecoder.decode(bytes)
        #expect(decoded.width == 64 && decoded.height == 48)
        let meanError = zip(decoded.pixels, image.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)
        #expect(Double(meanError) / Double(image.pixels.count) < 3.0)
    }

    @Test func greyJPEGBecomesEqualRGBChannels() throws {
        let grey: [UInt8] = (0..<(32 * 16)).map { UInt8(($0 % 32) * 8) }
        let decoded = try ImageDecoder.decode(try ImageEncoding.jpeg(grey: grey, width: 32, height: 16, quality: 90))
        #expect(decoded.width == 32 && decoded.height == 16)
        var worst = 0
        for i in grey.indices {
            #expect(decoded.pixels[i * 3] == decoded.pixels[i * 3 + 1] && decoded.pixels[i * 3] == decoded.pixels[i * 3 + 2])
            worst = max(worst, abs(Int(decoded.pixels[i * 3]) - Int(grey[i])))
        }
        #expect(worst < 16)
    }

    @Test(arguments: [(24, false), (24, true), (32, false), (32, true)])
    func directColourBMP(bits: Int, topDown: Bool) throws {
        // Width 5: 15 bytes of 24-bit pixels per row, padded to 16, so padding is exercised.
        let image = TestImages.noise(width: 5, height: 4, seed: UInt32(bits + (topDown ? 1 : 0)))
        let bytes = TestImages.bmp(width: 5, height: 4, bits: bits, topDown: topDown, image: image)
        #expect(ImageFormat.detect(bytes) == .bmp)
        #expect(try ImageDecoder.decode(bytes) == image)
    }

    @Test(arguments: [(8, false), (8, true), (4, false), (1, false)])
    func palettisedBMP(bits: Int, topDown: Bool) throws {
        let width = 7, height = 3
        let colours = 1 << bits
        var palette: [(UInt8, UInt8, UInt8)] = []
        for i in 0..<colours {
            let r = UInt8((i * 53) % 256), g = UInt8((i * 101) % 256), b = UInt8(255 - (i * 7) % 256)
            palette.append((r, g, b))
        }
        let indices: [UInt8] = (0..<(width * height)).map { UInt8(($0 * 5 + 3) % colours) }
        let bytes = TestImages.bmp(width: width, height: height, bits: bits, topDown: topDown,
                                   indices: indices, palette: palette)
        let decoded = try ImageDecoder.decode(bytes)
        #expect(decoded.width == width && decoded.height == height)
        for y in 0..<height {
            for x in 0..<width {
                let (r, g, b) = decoded.rgb(x: x, y: y)
                let p = palette[Int(indices[y * width + x])]
                #expect(r == p.0 && g == p.1 && b == p.2, "pixel \(x),\(y)")
            }
        }
    }

    @Test func greyPaletteBMPMaskBecomesGroundTruth() throws {
        // A GrabCut-style mask: 8-bit grey palette, values 0 (background), 128 (ignore band), 255 (object).
        let palette: [(UInt8, UInt8, UInt8)] = (0..<256).map { (UInt8($0), UInt8($0), UInt8($0)) }
        let values: [UInt8] = [0, 0, 128, 255, 255,
                               0, 128, 255, 255, 128,
                               0, 0, 128, 128, 0]
        let bytes = TestImages.bmp(width: 5, height: 3, bits: 8, indices: values, palette: palette)
        let truth = GroundTruthMask(maskImage: try ImageDecoder.decode(bytes), rule: .grabCut)
        #expect(truth.values == [0, 0, -1, 1, 1, 0, -1, 1, 1, -1, 0, 0, -1, -1, 0])
        #expect(truth.counts.object == 4 && truth.counts.ignored == 5 && truth.counts.background == 6)
        let thresholded = GroundTruthMask(maskImage: try ImageDecoder.decode(bytes), rule: .threshold127)
        #expect(thresholded.values == values.map { $0 > 127 ? 1 : 0 })
        #expect(truth.labelMask(objectClass: 0, backgroundClass: 1).labels
                == [1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1])
    }

    @Test func groundTruthRejectsBadValues() {
        #expect(throws: ImageError.self) { try GroundTruthMask(width: 2, height: 1, values: [0, 2]) }
        #expect(throws: ImageError.self) { try GroundTruthMask(width: 2, height: 2, values: [0, 1]) }
    }
}

/// Corrupt, truncated, unsupported and oversized inputs give `ImageError`s, never a crash.
@Suite struct DecodingErrorTests {
    private func code(_ body: () throws -> Any) -> String? {
        do { _ = try body(); return nil } catch let error as ImageError { return error.code } catch { return "other" }
    }

    @Test func unknownSignaturesAreUnsupported() {
        #expect(code { try ImageDecoder.decode([UInt8]()) } == "unsupported_image_format")
        #expect(code { try ImageDecoder.decode(Array("GIF89a....".utf8)) } == "unsupported_image_format")
        #expect(code { try ImageDecoder.decode([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]) }
                == "unsupported_image_format")
    }

    @Test func truncatedAndDamagedPNGAreCorrupt() throws {
        let bytes = try ImageEncoding.png(TestImages.noise(width: 40, height: 30))
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(bytes.count / 2))) } == "corrupt_image")
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(12))) } == "corrupt_image")
        var damaged = bytes
        damaged[damaged.count / 2] ^= 0x5A  // inside IDAT: its CRC no longer matches
        #expect(code { try ImageDecoder.decode(damaged) } == "corrupt_image")
    }

    @Test func truncatedAndDamagedJPEGAreCorrupt() throws {
        let bytes = try ImageEncoding.jpeg(TestImages.gradient(width: 64, height: 64), quality: 90)
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(bytes.count / 2))) } == "corrupt_image")
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(20))) } == "corrupt_image")
        #expect(code { try ImageDecoder.decode([0xFF, 0xD8, 0xFF]) } == "corrupt_image")
        #expect(code { try ImageDecoder.decode([0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 0x41, count: 200)) }
                == "corrupt_image")
    }

    @Test func truncatedAndUnsupportedBMP() throws {
        let image = TestImages.noise(width: 6, height: 6)
        let bytes = TestImages.bmp(width: 6, height: 6, bits: 24, image: image)
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(bytes.count - 10))) } == "corrupt_image")
        #expect(code { try ImageDecoder.decode(Array(bytes.prefix(30))) } == "corrupt_image")
        let rle = TestImages.bmp(width: 6, height: 6, bits: 8, indices: [UInt8](repeating: 0, count: 36),
                                 palette: [(0, 0, 0)], compression: 1)
        #expect(code { try ImageDecoder.decode(rle) } == "unsupported_image_format")
        var sixteenBit = bytes
        sixteenBit[28] = 16
        #expect(code { try ImageDecoder.decode(sixteenBit) } == "unsupported_image_format")
        // A palette index beyond the palette is corrupt data.
        let badIndex = TestImages.bmp(width: 2, height: 1, bits: 8, indices: [0, 5], palette: [(1, 2, 3), (4, 5, 6)])
        #expect(code { try ImageDecoder.decode(badIndex) } == "corrupt_image")
        var zeroWidth = bytes
        zeroWidth[18] = 0; zeroWidth[19] = 0; zeroWidth[20] = 0; zeroWidth[21] = 0
        #expect(code { try ImageDecoder.decode(zeroWidth) } == "corrupt_image")
    }

    @Test func oversizedImagesAreRefused() throws {
        let image = TestImages.noise(width: 64, height: 64)
        for bytes in [try ImageEncoding.png(image), try ImageEncoding.jpeg(image),
                      TestImages.bmp(width: 64, height: 64, bits: 24, image: image)] {
            #expect(throws: ImageError.tooLarge(width: 64, height: 64, limit: 4095)) {
                try ImageDecoder.decode(bytes, maxPixels: 4095)
            }
            #expect(try ImageDecoder.decode(bytes, maxPixels: 4096).width == 64)
        }
    }

    /// Headers claiming 40000 × 40000 pixels with almost no data behind them: the limit is reported (not a truncation),
    /// which shows it is checked on the header, before 4.8 GB of pixels would be allocated.
    @Test func pixelLimitIsCheckedOnTheHeaderBeforeAllocation() throws {
        let limit = 10_000_000
        let tooLarge = ImageError.tooLarge(width: 40000, height: 40000, limit: limit)

        // PNG: signature, IHDR, and the start of an IDAT chunk.
        let ihdrData: [UInt8] = be32(40000) + be32(40000) + [8, 2, 0, 0, 0]
        let ihdr = be32(13) + Array("IHDR".utf8) + ihdrData + be32(crc32(Array("IHDR".utf8) + ihdrData))
        let idat = be32(4) + Array("IDAT".utf8) + [0, 0, 0, 0] + be32(crc32(Array("IDAT".utf8) + [0, 0, 0, 0]))
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + ihdr + idat
        #expect(throws: tooLarge) { try ImageDecoder.decode(png, maxPixels: limit) }

        // JPEG: a real file whose SOF0 dimensions are rewritten, cut off shortly after the scan header.
        var jpeg = try ImageEncoding.jpeg(TestImages.gradient(width: 16, height: 16), quality: 80)
        let sof = try #require((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 5] = UInt8(40000 >> 8); jpeg[sof + 6] = UInt8(40000 & 0xff)
        jpeg[sof + 7] = UInt8(40000 >> 8); jpeg[sof + 8] = UInt8(40000 & 0xff)
        let sos = try #require((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xDA })
        #expect(throws: tooLarge) { try ImageDecoder.decode(Array(jpeg.prefix(sos + 20)), maxPixels: limit) }

        // BMP: a header alone.
        var bmp = TestImages.bmp(width: 1, height: 1, bits: 24, image: TestImages.noise(width: 1, height: 1))
        bmp.replaceSubrange(18..<26, with: [0x40, 0x9C, 0, 0, 0x40, 0x9C, 0, 0])
        #expect(throws: tooLarge) { try ImageDecoder.decode(bmp, maxPixels: limit) }
        #expect(throws: ImageError.self) { try ImageDecoder.decode(bmp) }  // and without a limit: truncated
    }

    @Test func encodersRejectBadArguments() {
        #expect(code { try ImageEncoding.jpeg(TestImages.noise(width: 2, height: 2), quality: 0) }
                == "invalid_image_argument")
        #expect(code { try ImageEncoding.png(grey: [1, 2, 3], width: 2, height: 2) } == "invalid_image_argument")
    }

    @Test func missingFileIsAnIOError() {
        #expect(code { try ImageDecoder.decodeFile(atPath: "/nonexistent/probattn-test.png") } == "image_io_error")
    }
}

/// The benchmark files themselves, when `../shared/datasets` is present next to the repository.
@Suite struct DatasetFileTests {
    static let grabCut = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/datasets/GrabCut").standardized.path
    static var present: Bool { FileManager.default.fileExists(atPath: grabCut + "/data_GT/banana1.bmp") }

    @Test(.enabled(if: present)) func grabCutBMPImageJPEGImageAndMaskDecode() throws {
        let bmp = try ImageDecoder.decodeFile(atPath: Self.grabCut + "/data_GT/banana1.bmp")
        #expect(bmp.width == 640 && bmp.height == 480)
        let jpg = try ImageDecoder.decodeFile(atPath: Self.grabCut + "/data_GT/106024.jpg")
        #expect(jpg.width == 481 && jpg.height == 321)
        let truth = try GroundTruthMask.load(path: Self.grabCut + "/boundary_GT/banana1.bmp", rule: .grabCut)
        #expect(truth.width == 640 && truth.height == 480)
        let counts = truth.counts
        #expect(counts.object > 0 && counts.background > counts.object && counts.ignored > 0)
        #expect(Double(counts.ignored) / Double(640 * 480) < 0.016)
    }
}
