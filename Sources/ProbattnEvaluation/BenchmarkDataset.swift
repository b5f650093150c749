import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation

/// The click-based benchmarks `probattn eval` knows (layout as in the f-BRS/RITM evaluation zips; see
/// `../shared/datasets/README.md`).
public enum BenchmarkKind: String, Sendable, CaseIterable, Codable {
    case grabcut, berkeley
    /// DAVIS-345 as laid out for the RITM/f-BRS evaluation: `img/<stem>.jpg`, `gt/<stem>.png`, object = any non-zero
    /// label.
    case davis
    /// Any folder of images and a folder of masks, paired by file stem (`FolderLayout`).
    case folder
}

/// How `--dataset folder` reads a user's own data: images in one folder, masks (PNG or BMP) in another, paired by
/// file stem; masks are read by each pixel's largest channel.
public struct FolderLayout: Sendable, Equatable {
    public var images: String
    public var masks: String
    /// A mask value marking pixels that are neither object nor background (an unknown band).
    public var ignoreValue: UInt8?
    /// The object's value (nil: every non-zero value other than `ignoreValue`).
    public var objectValue: UInt8?
    /// One instance per distinct non-zero value (other than `ignoreValue`) of each mask.
    public var instances: Bool

    public init(images: String, masks: String, ignoreValue: UInt8? = nil, objectValue: UInt8? = nil,
                instances: Bool = false) {
        self.images = images
        self.masks = masks
        self.ignoreValue = ignoreValue
        self.objectValue = objectValue
        self.instances = instances
    }
}

/// Which part of a benchmark to evaluate. Berkeley's instances carry the BSDS300 split of their image (46 train,
/// 54 test), which separates the masks used to choose defaults from the untuned check. GrabCut has no split.
public enum BenchmarkSplit: String, Sendable, CaseIterable, Codable {
    case train, test, all
}

/// A geometric fix applied to an image so that it lines up with its mask.
public enum ImageTransform: String, Sendable, Codable {
    case none
    /// Rotate 90° clockwise (PIL's `ROTATE_270`): Berkeley's `101087.jpg` is stored sideways.
    case rotate90Clockwise = "rotate_90_clockwise"

    /// The transformed image.
    public func apply(_ image: RGBImage) -> RGBImage {
        switch self {
        case .none:
            return image
        case .rotate90Clockwise:
            // Output is h wide and w high; output (x', y') = input (x = y', y = h - 1 - x').
            let w = image.width, h = image.height
            var pixels = [UInt8](repeating: 0, count: w * h * 3)
            for yOut in 0..<w {
                for xOut in 0..<h {
                    let src = ((h - 1 - xOut) * w + yOut) * 3
                    let dst = (yOut * h + xOut) * 3
                    pixels[dst] = image.pixels[src]
                    pixels[dst + 1] = image.pixels[src + 1]
                    pixels[dst + 2] = image.pixels[src + 2]
                }
            }
            return RGBImage(width: h, height: w, pixels: pixels)
        }
    }
}

/// Why a benchmark could not be listed or one of its instances loaded.
public struct BenchmarkError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case missingFolder = "dataset_missing_folder"
        case badIndex = "dataset_bad_index"
        case missingFile = "dataset_missing_file"
        case sizeMismatch = "dataset_size_mismatch"
        case noSplit = "dataset_no_split"
        case empty = "dataset_empty"
    }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
}

/// One object to segment: an image, its ground-truth mask, and how to read them.
public struct BenchmarkInstance: Sendable, Equatable {
    /// The mask's file stem (`banana1`, `189011a`): unique within a benchmark.
    public var name: String
    public var imagePath: String
    public var maskPath: String
    /// Berkeley's BSDS300 split (`train` / `test`); nil for GrabCut.
    public var split: BenchmarkSplit?
    public var imageTransform: ImageTransform
    public var maskRule: GroundTruthMask.Rule

    public init(name: String, imagePath: String, maskPath: String, split: BenchmarkSplit?,
                imageTransform: ImageTransform, maskRule: GroundTruthMask.Rule) {
        self.name = name
        self.imagePath = imagePath
        self.maskPath = maskPath
        self.split = split
        self.imageTransform = imageTransform
        self.maskRule = maskRule
    }

    /// Decodes the image (with its transform) and the ground truth, and checks that their sizes agree.
    public func load(maxPixels: Int? = nil) throws -> (image: RGBImage, truth: GroundTruthMask) {
        let image = imageTransform.apply(try ImageDecoder.decodeFile(atPath: imagePath, maxPixels: maxPixels))
        let truth = try GroundTruthMask.load(path: maskPath, rule: maskRule, maxPixels: maxPixels)
        guard image.width == truth.width, image.height == truth.height else {
            throw BenchmarkError(.sizeMismatch, "\(name): image is \(image.width)x\(image.height) but its mask is "
                                 + "\(truth.width)x\(truth.height)")
        }
        return (image, truth)
    }
}

public extension GroundTruthMask.Rule {
    /// A short name for reports.
    var name: String {
        switch self {
        case .grabCut: return "128=ignore,>128=object"
        case .threshold127: return ">127=object"
        case .labels(let object, let ignore):
            let objectText: String
            switch object {
            case .nonZero: objectText = "non-zero=object"
            case .value(let v): objectText = "\(v)=object"
            }
            return (ignore.map { "\($0)=ignore," } ?? "") + objectText
        }
    }
}

/// Lists the instances of a benchmark folder.
public enum BenchmarkDataset {
    /// The instances of `kind` under `root` (the dataset's own folder, e.g. `../shared/datasets/GrabCut`), sorted by
    /// name, restricted to `split`.
    public static func instances(_ kind: BenchmarkKind, root: String, split: BenchmarkSplit = .all) throws
        -> [BenchmarkInstance] {
        let all: [BenchmarkInstance]
        switch kind {
        case .grabcut:
            guard split == .all else {
                throw BenchmarkError(.noSplit, "GrabCut has no train/test split: use --split all")
            }
            all = try grabCut(root: root)
        case .berkeley:
            all = try berkeley(root: root).filter { split == .all || $0.split == split }
        case .davis:
            guard split == .all else {
                throw BenchmarkError(.noSplit, "DAVIS has no train/test split: use --split all")
            }
            all = try davis(root: root)
        case .folder:
            throw BenchmarkError(.missingFolder, "--dataset folder takes --images DIR and --masks DIR, not --root")
        }
        guard !all.isEmpty else { throw BenchmarkError(.empty, "no instances found under \(root)") }
        return all
    }

    /// DAVIS-345 (RITM/f-BRS layout): `img/<stem>.jpg` and `gt/<stem>.png`, object = any non-zero label (a pixel's
    /// largest channel, as RITM's loader reads the palette PNGs).
    public static func davis(root: String) throws -> [BenchmarkInstance] {
        let layout = FolderLayout(images: (root as NSString).appendingPathComponent("img"),
                                  masks: (root as NSString).appendingPathComponent("gt"))
        return try folder(layout, imageExtensions: ["jpg", "jpeg"], maskExtensions: ["png"])
    }

    /// A user's folders: every mask (PNG or BMP) must have exactly one image (PNG, JPEG or BMP) with its stem and
    /// every image a mask; unmatched stems are one error that lists them. With `instances`, one instance per
    /// distinct object value of each mask, named `<stem>_<value>`.
    public static func folder(_ layout: FolderLayout, imageExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp"],
                              maskExtensions: Set<String> = ["png", "bmp"]) throws -> [BenchmarkInstance] {
        func files(_ folder: String, _ extensions: Set<String>, _ what: String) throws -> [String: String] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw BenchmarkError(.missingFolder, "the \(what) folder \(folder) does not exist")
            }
            var byStem: [String: String] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: folder).sorted() {
                let ext = (name as NSString).pathExtension.lowercased()
                guard extensions.contains(ext), !name.hasPrefix(".") else { continue }
                let stem = (name as NSString).deletingPathExtension
                if let other = byStem[stem] {
                    throw BenchmarkError(.badIndex, "\(what) folder \(folder): two files for stem '\(stem)' "
                                         + "(\((other as NSString).lastPathComponent), \(name))")
                }
                byStem[stem] = (folder as NSString).appendingPathComponent(name)
            }
            return byStem
        }
        let images = try files(layout.images, imageExtensions, "image")
        let masks = try files(layout.masks, maskExtensions, "mask")
        let unmatched = Set(images.keys).symmetricDifference(masks.keys).sorted()
        guard unmatched.isEmpty else {
            let shown = unmatched.prefix(20).map { stem in
                images[stem] != nil ? "\(stem) (image without mask)" : "\(stem) (mask without image)"
            }
            throw BenchmarkError(.missingFile, "\(unmatched.count) unmatched stem(s): " + shown.joined(separator: ", ")
                                 + (unmatched.count > 20 ? ", …" : ""))
        }
        var result: [BenchmarkInstance] = []
        for stem in masks.keys.sorted() {
            let imagePath = images[stem]!, maskPath = masks[stem]!
            guard layout.instances else {
                let object: GroundTruthMask.ObjectValue = layout.objectValue.map { .value($0) } ?? .nonZero
                result.append(BenchmarkInstance(name: stem, imagePath: imagePath, maskPath: maskPath, split: nil,
                                                imageTransform: .none,
                                                maskRule: .labels(object: object, ignore: layout.ignoreValue)))
                continue
            }
            let mask = try ImageDecoder.decodeFile(atPath: maskPath)
            var present = Set<UInt8>()
            for i in 0..<(mask.width * mask.height) { present.insert(GroundTruthMask.labelValue(mask, i)) }
            present.remove(0)
            if let ignore = layout.ignoreValue { present.remove(ignore) }
            for value in present.sorted() {
                result.append(BenchmarkInstance(name: "\(stem)_\(value)", imagePath: imagePath, maskPath: maskPath,
                                                split: nil, imageTransform: .none,
                                                maskRule: .labels(object: .value(value), ignore: layout.ignoreValue)))
            }
        }
        guard !result.isEmpty else { throw BenchmarkError(.empty, "no instances found in \(layout.masks)") }
        return result
    }

    /// GrabCut: images in `data_GT/` (`.jpg`, `.JPG`, `.bmp`), masks in `boundary_GT/<stem>.bmp` (0 background,
    /// 255 object, 128 ignore). Every mask must have exactly one image with the same stem.
    public static func grabCut(root: String) throws -> [BenchmarkInstance] {
        let imageFolder = (root as NSString).appendingPathComponent("data_GT")
        let maskFolder = (root as NSString).appendingPathComponent("boundary_GT")
        let images = try listFiles(imageFolder)
        let masks = try listFiles(maskFolder)
        var imageByStem: [String: String] = [:]
        for file in images where isImageFile(file) {
            let stem = (file as NSString).deletingPathExtension
            if let other = imageByStem[stem] {
                throw BenchmarkError(.badIndex, "GrabCut: two images for \(stem): \(other) and \(file)")
            }
            imageByStem[stem] = file
        }
        var result: [BenchmarkInstance] = []
        for file in masks where isImageFile(file) {
            let stem = (file as NSString).deletingPathExtension
            guard let image = imageByStem[stem] else {
                throw BenchmarkError(.missingFile, "GrabCut: no image in \(imageFolder) for mask \(file)")
            }
            result.append(BenchmarkInstance(
                name: stem, imagePath: (imageFolder as NSString).appendingPathComponent(image),
                maskPath: (maskFolder as NSString).appendingPathComponent(file), split: nil,
                imageTransform: .none, maskRule: .grabCut))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// Berkeley: `pairs.tsv` (header `mask image bsds300_split image_transform_to_match_mask`) maps each mask to
    /// its image, split and orientation fix. Masks are thresholded at > 127.
    public static func berkeley(root: String) throws -> [BenchmarkInstance] {
        let indexPath = (root as NSString).appendingPathComponent("pairs.tsv")
        guard let text = try? String(contentsOfFile: indexPath, encoding: .utf8) else {
            throw BenchmarkError(.missingFolder, "Berkeley: cannot read \(indexPath)")
        }
        var lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard let header = lines.first?.split(separator: "\t").map(String.init) else {
            throw BenchmarkError(.badIndex, "Berkeley: \(indexPath) is empty")
        }
        let wanted = ["mask", "image", "bsds300_split", "image_transform_to_match_mask"]
        let columns = wanted.map { header.firstIndex(of: $0) }
        guard let maskColumn = columns[0], let imageColumn = columns[1], let splitColumn = columns[2],
              let transformColumn = columns[3] else {
            throw BenchmarkError(.badIndex, "Berkeley: \(indexPath) needs the columns \(wanted.joined(separator: ", "))")
        }
        lines.removeFirst()
        var result: [BenchmarkInstance] = []
        for (number, line) in lines.enumerated() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let row = number + 2
            guard fields.count == header.count else {
                throw BenchmarkError(.badIndex, "Berkeley: \(indexPath) line \(row) has \(fields.count) fields")
            }
            guard let split = BenchmarkSplit(rawValue: fields[splitColumn]), split != .all else {
                throw BenchmarkError(.badIndex, "Berkeley: line \(row): unknown split '\(fields[splitColumn])'")
            }
            guard let transform = ImageTransform(rawValue: fields[transformColumn]) else {
                throw BenchmarkError(.badIndex, "Berkeley: line \(row): unknown transform '\(fields[transformColumn])'")
            }
            let maskPath = (root as NSString).appendingPathComponent(fields[maskColumn])
            let imagePath = (root as NSString).appendingPathComponent(fields[imageColumn])
            for path in [maskPath, imagePath] where !FileManager.default.fileExists(atPath: path) {
                throw BenchmarkError(.missingFile, "Berkeley: line \(row): \(path) does not exist")
            }
            let name = ((fields[maskColumn] as NSString).lastPathComponent as NSString).deletingPathExtension
            result.append(BenchmarkInstance(name: name, imagePath: imagePath, maskPath: maskPath, split: split,
                                            imageTransform: transform, maskRule: .threshold127))
        }
        return result.sorted { $0.name < $1.name }
    }

    private static func listFiles(_ folder: String) throws -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            throw BenchmarkError(.missingFolder, "cannot list \(folder) (is --root the dataset's own folder?)")
        }
        return names.sorted()
    }

    private static func isImageFile(_ name: String) -> Bool {
        ["jpg", "jpeg", "png", "bmp"].contains((name as NSString).pathExtension.lowercased())
    }
}
