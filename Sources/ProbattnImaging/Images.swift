/// An 8-bit RGB image, row-major, 3 bytes per pixel (R, G, B). Grey images are expanded to RGB when decoded.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes, row by row.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3, "RGBImage: size mismatch")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The (r, g, b) of the pixel at column `x`, row `y`.
    @inlinable public func rgb(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let o = (y * width + x) * 3
        return (pixels[o], pixels[o + 1], pixels[o + 2])
    }
}

/// A per-pixel class map: `labels[y * width + x]` is the class index of that pixel (0 = the first class, which is
/// `object` in the default class list). For a binary mask, "object" pixels are those equal to `objectClass`.
public struct LabelMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var labels: [UInt8]

    public init(width: Int, height: Int, labels: [UInt8]) {
        precondition(width > 0 && height > 0 && labels.count == width * height, "LabelMask: size mismatch")
        self.width = width
        self.height = height
        self.labels = labels
    }

    public init(width: Int, height: Int, filledWith label: UInt8) {
        self.init(width: width, height: height, labels: [UInt8](repeating: label, count: width * height))
    }

    /// The binary mask of one class: true where the pixel has class `label`.
    public func binary(_ label: UInt8) -> [Bool] { labels.map { $0 == label } }
}
