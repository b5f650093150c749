import CImageShims
import Foundation

/// The container formats the decoder recognises by their first bytes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case png, jpeg, bmp

    /// The format whose magic bytes start `bytes`, or nil.
    public static func detect<C: Collection>(_ bytes: C) -> ImageFormat? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head.count >= 8 && head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF { return .jpeg }
        if head.count >= 2 && head[0] == 0x42 && head[1] == 0x4D { return .bmp }
        return nil
    }
}

/// Decodes PNG (libpng), JPEG (libjpeg-turbo) and BMP (in Swift) into 8-bit RGB. Called by the daemon for every
/// uploaded image, by `probattn eval` for the benchmark images and masks, and by the CLI.
///
/// `maxPixels` is checked against the header's dimensions before any pixel buffer is allocated, so an oversized or
/// lying header costs nothing. Every failure is an `ImageError`; no input can crash the process.
public enum ImageDecoder {
    /// Decodes an image held in memory.
    public static func decode(_ bytes: [UInt8], maxPixels: Int? = nil) throws -> RGBImage {
        guard let format = ImageFormat.detect(bytes) else {
            throw ImageError.unsupportedFormat(bytes.isEmpty
                ? "empty data" : "not a PNG, JPEG or BMP file (unrecognised signature)")
        }
        if let limit = maxPixels, limit <= 0 {
            throw ImageError.invalidArgument("maxPixels must be positive, got \(limit)")
        }
        switch format {
        case .bmp: return try BMPDecoder.decode(bytes, maxPixels: maxPixels)
        case .png: return try decodeWithShim(bytes, maxPixels: maxPixels, format: "PNG", pa_png_decode_rgb)
        case .jpeg: return try decodeWithShim(bytes, maxPixels: maxPixels, format: "JPEG", pa_jpeg_decode_rgb)
        }
    }

    /// Decodes an image held in memory.
    public static func decode(_ data: Data, maxPixels: Int? = nil) throws -> RGBImage {
        try decode([UInt8](data), maxPixels: maxPixels)
    }

    /// Reads and decodes an image file.
    public static func decodeFile(atPath path: String, maxPixels: Int? = nil) throws -> RGBImage {
        try decode(try readFile(atPath: path), maxPixels: maxPixels)
    }

    /// The bytes of a file, or `ImageError.io`.
    static func readFile(atPath path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageError.io("cannot read \(path)")
        }
        return [UInt8](data)
    }

    private typealias ShimDecoder = (UnsafePointer<UInt8>?, Int, UInt64, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                                     UnsafeMutablePointer<UInt32>?, UnsafeMutablePointer<UInt32>?,
                                     UnsafeMutablePointer<CChar>?) -> pa_image_status

    private static func decodeWithShim(_ bytes: [UInt8], maxPixels: Int?, format: String,
                                       _ shim: ShimDecoder) throws -> RGBImage {
        var output: UnsafeMutablePointer<UInt8>? = nil
        var width: UInt32 = 0
        var height: UInt32 = 0
        var message = [CChar](repeating: 0, count: Int(PA_IMAGE_MESSAGE_SIZE))
        let limit = UInt64(maxPixels ?? 0)
        let status = bytes.withUnsafeBufferPointer { buffer in
            message.withUnsafeMutableBufferPointer { text in
                shim(buffer.baseAddress, buffer.count, limit, &output, &width, &height, text.baseAddress)
            }
        }
        defer { pa_image_free(output) }
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch status {
        case PA_IMAGE_OK:
            guard let output, width > 0, height > 0 else { throw ImageError.corrupt("\(format): empty image") }
            let count = Int(width) * Int(height) * 3
            return RGBImage(width: Int(width), height: Int(height),
                            pixels: Array(UnsafeBufferPointer(start: output, count: count)))
        case PA_IMAGE_TOO_LARGE:
            throw ImageError.tooLarge(width: Int(width), height: Int(height), limit: maxPixels ?? 0)
        case PA_IMAGE_UNSUPPORTED:
            throw ImageError.unsupportedFormat("\(format): \(text)")
        case PA_IMAGE_NO_MEMORY:
            throw ImageError.outOfMemory
        default:
            throw ImageError.corrupt("\(format): \(text.isEmpty ? "invalid data" : text)")
        }
    }
}

/// Windows bitmaps with a BITMAPINFOHEADER (or its V4/V5 extensions): uncompressed (BI_RGB) 1-, 4- and 8-bit
/// palettised, 24-bit and 32-bit (the 4th byte is ignored), bottom-up or top-down, rows padded to 4 bytes.
enum BMPDecoder {
    static func decode(_ bytes: [UInt8], maxPixels: Int?) throws -> RGBImage {
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func i32(_ o: Int) -> Int { Int(Int32(bitPattern: UInt32(u32(o)))) }

        guard bytes.count >= 18 else { throw ImageError.corrupt("BMP: truncated file header") }
        let dataOffset = u32(10)
        let headerSize = u32(14)
        if headerSize == 12 { throw ImageError.unsupportedFormat("BMP: OS/2 BITMAPCOREHEADER is not supported") }
        guard headerSize >= 40 else { throw ImageError.corrupt("BMP: info header of \(headerSize) bytes") }
        guard bytes.count >= 14 + 40 else { throw ImageError.corrupt("BMP: truncated info header") }
        let width = i32(18)
        let rawHeight = i32(22)
        let bitCount = u16(28)
        let compression = u32(30)
        let colorsUsed = u32(46)
        guard width > 0, rawHeight != 0 else {
            throw ImageError.corrupt("BMP: invalid dimensions \(width)x\(rawHeight)")
        }
        let height = abs(rawHeight)
        let topDown = rawHeight < 0
        guard compression == 0 else {
            throw ImageError.unsupportedFormat("BMP: compression \(compression) (only uncompressed BI_RGB is supported)")
        }
        guard [1, 4, 8, 24, 32].contains(bitCount) else {
            throw ImageError.unsupportedFormat("BMP: \(bitCount) bits per pixel (supported: 1, 4, 8, 24, 32)")
        }
        if let limit = maxPixels, width * height > limit {
            throw ImageError.tooLarge(width: width, height: height, limit: limit)
        }
        // Palette.
        var palette: [UInt8] = []  // RGB triples
        if bitCount <= 8 {
            let maximum = 1 << bitCount
            let entries = colorsUsed == 0 ? maximum : colorsUsed
            guard entries <= maximum else {
                throw ImageError.corrupt("BMP: \(entries) palette entries for \(bitCount) bits per pixel")
            }
            let paletteOffset = 14 + headerSize
            guard paletteOffset + 4 * entries <= bytes.count else { throw ImageError.corrupt("BMP: truncated palette") }
            palette.reserveCapacity(entries * 3)
            for e in 0..<entries {
                let o = paletteOffset + 4 * e
                palette += [bytes[o + 2], bytes[o + 1], bytes[o]]
            }
        }
        let stride = (width * bitCount + 31) / 32 * 4
        let lastRowBytes = (width * bitCount + 7) / 8
        let available = bytes.count - dataOffset  // written as a division so that no product can overflow
        guard dataOffset >= 14 + 40, available >= lastRowBytes, (available - lastRowBytes) / stride >= height - 1 else {
            throw ImageError.corrupt("BMP: truncated pixel data")
        }
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        var badIndex = false
        bytes.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                let paletteCount = palette.count / 3
                for row in 0..<height {
                    let y = topDown ? row : height - 1 - row
                    let rowStart = dataOffset + row * stride
                    var out = y * width * 3
                    switch bitCount {
                    case 24, 32:
                        let step = bitCount / 8
                        var i = rowStart
                        for _ in 0..<width {
                            dst[out] = src[i + 2]; dst[out + 1] = src[i + 1]; dst[out + 2] = src[i]
                            out += 3; i += step
                        }
                    default:
                        let perByte = 8 / bitCount
                        let mask = (1 << bitCount) - 1
                        for x in 0..<width {
                            let byte = Int(src[rowStart + x / perByte])
                            let shift = 8 - bitCount * (x % perByte + 1)
                            let index = (byte >> shift) & mask
                            if index >= paletteCount { badIndex = true; continue }
                            dst[out] = palette[index * 3]
                            dst[out + 1] = palette[index * 3 + 1]
                            dst[out + 2] = palette[index * 3 + 2]
                            out += 3
                        }
                    }
                }
            }
        }
        if badIndex { throw ImageError.corrupt("BMP: pixel index outside the palette") }
        return RGBImage(width: width, height: height, pixels: pixels)
    }
}
