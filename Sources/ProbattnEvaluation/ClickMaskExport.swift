import Foundation
import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// The files of `probattn eval --save-click-masks`, for error analysis outside the program: under
/// `<folder>/<name>/`, `click-NN.png` (the mask after click NN, 255 = object) and `tokens.png` (the encoder's token
/// footprint, token index = 256 · R + G, B = 0).
public enum ClickMaskExport {
    /// The folder of one instance.
    static func instanceFolder(_ folder: String, _ name: String) throws -> String {
        guard !name.isEmpty, !name.contains("/") else { throw ImageError.invalidArgument("instance name '\(name)'") }
        let path = (folder as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes the mask after click `click` (1-based) as `click-NN.png`. Returns its path.
    @discardableResult
    public static func writeMask(_ mask: LabelMask, click: Int, name: String, folder: String) throws -> String {
        let path = (try instanceFolder(folder, name) as NSString)
            .appendingPathComponent(String(format: "click-%02d.png", click))
        try ImageEncoding.write(try ImageEncoding.png(mask: mask, objectClass: 0), toPath: path)
        return path
    }

    /// The token footprint as RGB pixels: token index = 256 · R + G (at most 65536 tokens).
    public static func tokenPixels(_ encoded: EncodedImage) throws -> RGBImage {
        guard encoded.tokenCount <= 65536 else {
            throw ImageError.invalidArgument("\(encoded.tokenCount) tokens do not fit 16 bits")
        }
        var pixels = [UInt8](repeating: 0, count: encoded.tokenOfPixel.count * 3)
        for (i, t) in encoded.tokenOfPixel.enumerated() {
            pixels[3 * i] = UInt8(Int(t) >> 8)
            pixels[3 * i + 1] = UInt8(Int(t) & 255)
        }
        return RGBImage(width: encoded.image.width, height: encoded.image.height, pixels: pixels)
    }

    /// Writes `tokens.png` for one instance. Returns its path.
    @discardableResult
    public static func writeTokens(_ encoded: EncodedImage, name: String, folder: String) throws -> String {
        let path = (try instanceFolder(folder, name) as NSString).appendingPathComponent("tokens.png")
        try ImageEncoding.write(try ImageEncoding.png(try tokenPixels(encoded)), toPath: path)
        return path
    }
}
