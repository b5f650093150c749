import Foundation
import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// The files of `probattn eval --save-click-masks`, for error analysis outside the program: under
/// `<folder>/<name>/`, `click-NN.png` (the mask after click NN, 255 = object) and `tokens.png` (the encoder's token
/// footprint at the mask's size, token index = 256 · R + G, B = 0).
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

    /// The token footprint as RGB pixels at the image's size: token index = 256 · R + G (at most 65536 tokens).
    /// `encoded` is the encoding of the image's working copy under `resolution` (the image itself when it is not
    /// reduced); every pixel of the image takes the token of its working pixel, as the masks do.
    public static func tokenPixels(_ encoded: EncodedImage, resolution: WorkingResolution) throws -> RGBImage {
        guard encoded.tokenCount <= 65536 else {
            throw ImageError.invalidArgument("\(encoded.tokenCount) tokens do not fit 16 bits")
        }
        guard encoded.image.width == resolution.workingWidth, encoded.image.height == resolution.workingHeight else {
            throw ImageError.invalidArgument("an encoding of \(encoded.image.width)×\(encoded.image.height) pixels is "
                                             + "not the working copy of a \(resolution.width)×\(resolution.height) image")
        }
        let w = resolution.width, h = resolution.height, ww = resolution.workingWidth
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let row = resolution.working(y) * ww
            for x in 0..<w {
                let t = Int(encoded.tokenOfPixel[row + resolution.working(x)]), i = y * w + x
                pixels[3 * i] = UInt8(t >> 8)
                pixels[3 * i + 1] = UInt8(t & 255)
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// Writes `tokens.png` for one instance (see `tokenPixels`). Returns its path.
    @discardableResult
    public static func writeTokens(_ encoded: EncodedImage, resolution: WorkingResolution, name: String,
                                   folder: String) throws -> String {
        let path = (try instanceFolder(folder, name) as NSString).appendingPathComponent("tokens.png")
        try ImageEncoding.write(try ImageEncoding.png(try tokenPixels(encoded, resolution: resolution)), toPath: path)
        return path
    }
}
