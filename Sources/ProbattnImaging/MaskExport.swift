import Foundation

/// Writes a final mask for users: a PNG (255 = object, 0 = everything else) and a COCO RLE JSON
/// (`{"size": [h, w], "counts": "..."}`, readable by pycocotools' `mask.decode`). Called by
/// `probattn eval --save-masks` and by tools that export a session's result.
public enum MaskExport {
    /// Writes `<directory>/<name>.png` and `<directory>/<name>.rle.json` for the pixels of `objectClass`, creating
    /// the directory if needed. Returns the two paths.
    @discardableResult
    public static func write(_ mask: LabelMask, objectClass: UInt8 = 0, name: String, directory: String) throws
        -> (png: String, rle: String) {
        guard !name.isEmpty, !name.contains("/") else { throw ImageError.invalidArgument("mask name '\(name)'") }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ImageError.io("cannot create \(directory): \(error.localizedDescription)")
        }
        let pngPath = (directory as NSString).appendingPathComponent(name + ".png")
        let rlePath = (directory as NSString).appendingPathComponent(name + ".rle.json")
        try ImageEncoding.write(try ImageEncoding.png(mask: mask, objectClass: objectClass), toPath: pngPath)
        try ImageEncoding.write(try rleJSON(mask, objectClass: objectClass), toPath: rlePath)
        return (pngPath, rlePath)
    }

    /// The COCO RLE JSON bytes of one class of a mask.
    public static func rleJSON(_ mask: LabelMask, objectClass: UInt8 = 0) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return [UInt8](try encoder.encode(COCORLE(mask: mask, objectClass: objectClass)))
        } catch {
            throw ImageError.invalidArgument("cannot encode RLE JSON: \(error)")
        }
    }
}
