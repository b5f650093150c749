/// A benchmark's ground truth for one object: `values[y * width + x]` is 1 (object), 0 (background) or -1 (ignore:
/// such pixels count toward neither IoU nor the click simulator's error regions).
public struct GroundTruthMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var values: [Int8]

    /// How a mask file's 8-bit values become object / background / ignore.
    public enum Rule: Sendable, Equatable {
        /// GrabCut `boundary_GT` (and RITM's loader for every set): 128 → ignore, > 128 → object, else background.
        case grabCut
        /// A plain binary mask: value > 127 → object, else background (Berkeley's 0/255 PNGs; two stray pixels of
        /// `8023.png` are 197 and 243 and become object).
        case threshold127
        /// A label mask read by each pixel's largest channel (grey, RGB or a palette's colours alike): the value
        /// `ignore` (when given) → ignore; then `object` picks the object's pixels; everything else is background.
        case labels(object: ObjectValue, ignore: UInt8?)
    }

    /// Which values of a label mask are the object.
    public enum ObjectValue: Sendable, Equatable {
        /// Every non-zero value (RITM's DAVIS loader: `max over channels > 0`).
        case nonZero
        /// Exactly this value (one instance of a multi-instance mask).
        case value(UInt8)
    }

    /// The value of pixel `i` of a decoded mask image as `.labels` reads it: its largest channel.
    public static func labelValue(_ image: RGBImage, _ i: Int) -> UInt8 {
        max(image.pixels[i * 3], image.pixels[i * 3 + 1], image.pixels[i * 3 + 2])
    }

    public init(width: Int, height: Int, values: [Int8]) throws {
        guard width > 0, height > 0, values.count == width * height else {
            throw ImageError.invalidArgument("ground truth: \(values.count) values for \(width)x\(height)")
        }
        guard values.allSatisfy({ $0 >= -1 && $0 <= 1 }) else {
            throw ImageError.invalidArgument("ground truth values must be -1, 0 or 1")
        }
        self.width = width
        self.height = height
        self.values = values
    }

    /// Converts a decoded mask image. Like RITM's loader (`cv2.imread(path)[:, :, 0]`), it reads the blue channel;
    /// for the benchmarks' grey and equal-channel masks that is simply the mask value.
    public init(maskImage: RGBImage, rule: Rule) {
        width = maskImage.width
        height = maskImage.height
        var values = [Int8](repeating: 0, count: maskImage.width * maskImage.height)
        for i in values.indices {
            let v = maskImage.pixels[i * 3 + 2]
            switch rule {
            case .grabCut: values[i] = v == 128 ? -1 : (v > 128 ? 1 : 0)
            case .threshold127: values[i] = v > 127 ? 1 : 0
            case .labels(let object, let ignore):
                let label = Self.labelValue(maskImage, i)
                if let ignore, label == ignore {
                    values[i] = -1
                } else {
                    switch object {
                    case .nonZero: values[i] = label != 0 ? 1 : 0
                    case .value(let wanted): values[i] = label == wanted ? 1 : 0
                    }
                }
            }
        }
        self.values = values
    }

    /// Decodes a mask file (PNG, JPEG or BMP) and applies `rule`.
    public static func load(path: String, rule: Rule, maxPixels: Int? = nil) throws -> GroundTruthMask {
        GroundTruthMask(maskImage: try ImageDecoder.decodeFile(atPath: path, maxPixels: maxPixels), rule: rule)
    }

    /// The number of object, background and ignored pixels.
    public var counts: (object: Int, background: Int, ignored: Int) {
        var o = 0, b = 0, i = 0
        for v in values {
            switch v { case 1: o += 1; case 0: b += 1; default: i += 1 }
        }
        return (o, b, i)
    }

    /// The object as a label mask (object = `objectClass`, background and ignore = `backgroundClass`).
    public func labelMask(objectClass: UInt8 = 0, backgroundClass: UInt8 = 1) -> LabelMask {
        LabelMask(width: width, height: height, labels: values.map { $0 == 1 ? objectClass : backgroundClass })
    }
}
