import CImageShims
import Foundation

/// Writes images and masks as PNG (libpng) and JPEG (libjpeg-turbo). Used for users' mask output, by
/// `probattn segment`, by the benchmarks' synthetic images and by the tests.
public enum ImageEncoding {
    /// An RGB picture as an 8-bit RGB PNG.
    public static func png(_ image: RGBImage) throws -> [UInt8] {
        try encode(image.pixels, width: image.width, height: image.height, channels: 3, format: "PNG") {
            pa_png_encode($0, $1, $2, $3, $4, $5, $6)
        }
    }

    /// An 8-bit grey image (`pixels.count == width * height`, row-major) as a grey PNG.
    public static func png(grey pixels: [UInt8], width: Int, height: Int) throws -> [UInt8] {
        guard width > 0, height > 0, pixels.count == width * height else {
            throw ImageError.invalidArgument("grey PNG: \(pixels.count) bytes for \(width)x\(height)")
        }
        return try encode(pixels, width: width, height: height, channels: 1, format: "PNG") {
            pa_png_encode($0, $1, $2, $3, $4, $5, $6)
        }
    }

    /// The binary mask of one class as a grey PNG: 255 where the pixel has `objectClass`, 0 elsewhere.
    public static func png(mask: LabelMask, objectClass: UInt8 = 0) throws -> [UInt8] {
        try png(grey: mask.labels.map { $0 == objectClass ? 255 : 0 }, width: mask.width, height: mask.height)
    }

    /// A class map as a grey PNG whose pixel values are the class indices (0, 1, 2, ...).
    public static func png(labels mask: LabelMask) throws -> [UInt8] {
        try png(grey: mask.labels, width: mask.width, height: mask.height)
    }

    /// An RGB picture as a baseline JPEG; `quality` in 1...100.
    public static func jpeg(_ image: RGBImage, quality: Int = 90) throws -> [UInt8] {
        guard (1...100).contains(quality) else { throw ImageError.invalidArgument("JPEG quality \(quality) not in 1...100") }
        return try encode(image.pixels, width: image.width, height: image.height, channels: 3, format: "JPEG") {
            pa_jpeg_encode($0, $1, $2, $3, Int32(quality), $4, $5, $6)
        }
    }

    /// An 8-bit grey image as a grey JPEG; `quality` in 1...100.
    public static func jpeg(grey pixels: [UInt8], width: Int, height: Int, quality: Int = 90) throws -> [UInt8] {
        guard width > 0, height > 0, pixels.count == width * height else {
            throw ImageError.invalidArgument("grey JPEG: \(pixels.count) bytes for \(width)x\(height)")
        }
        guard (1...100).contains(quality) else { throw ImageError.invalidArgument("JPEG quality \(quality) not in 1...100") }
        return try encode(pixels, width: width, height: height, channels: 1, format: "JPEG") {
            pa_jpeg_encode($0, $1, $2, $3, Int32(quality), $4, $5, $6)
        }
    }

    /// Writes bytes to a file, creating or replacing it.
    public static func write(_ bytes: [UInt8], toPath path: String) throws {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        } catch {
            throw ImageError.io("cannot write \(path): \(error.localizedDescription)")
        }
    }

    private static func encode(
        _ pixels: [UInt8], width: Int, height: Int, channels: Int32, format: String,
        _ shim: (UnsafePointer<UInt8>?, UInt32, UInt32, Int32, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                 UnsafeMutablePointer<Int>?, UnsafeMutablePointer<CChar>?) -> pa_image_status
    ) throws -> [UInt8] {
        guard width > 0, height > 0, width <= Int(UInt32.max), height <= Int(UInt32.max) else {
            throw ImageError.invalidArgument("\(format): bad size \(width)x\(height)")
        }
        var output: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: Int(PA_IMAGE_MESSAGE_SIZE))
        let status = pixels.withUnsafeBufferPointer { buffer in
            message.withUnsafeMutableBufferPointer { text in
                shim(buffer.baseAddress, UInt32(width), UInt32(height), channels, &output, &size, text.baseAddress)
            }
        }
        defer { pa_image_free(output) }
        guard status == PA_IMAGE_OK, let output else {
            if status == PA_IMAGE_NO_MEMORY { throw ImageError.outOfMemory }
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.invalidArgument("\(format) encoder: \(text)")
        }
        return Array(UnsafeBufferPointer(start: output, count: size))
    }
}
