import ProbattnImaging
import ProbattnSegmentation
import ProbattnStages

/// How masks are written on the wire and in the store (docs/PROTOCOL.md §3), without the wire's framing.
public enum MaskCodec {
    /// COCO RLE of the first class.
    public static func rle(_ mask: LabelMask) -> COCORLE { COCORLE(mask: mask, objectClass: 0) }

    /// `{class: RLE}` for sessions with more than two classes, nil otherwise.
    public static func classMasks(_ mask: LabelMask, classes: [String]) -> [String: COCORLE]? {
        guard classes.count > 2 else { return nil }
        var out: [String: COCORLE] = [:]
        for (index, name) in classes.enumerated() { out[name] = COCORLE(mask: mask, objectClass: UInt8(index)) }
        return out
    }

    /// The PNG of the protocol: first class = 255 for two classes, class index as grey value otherwise.
    public static func png(_ mask: LabelMask, classCount: Int) throws -> [UInt8] {
        classCount > 2 ? try ImageEncoding.png(labels: mask) : try ImageEncoding.png(mask: mask, objectClass: 0)
    }

    /// Rebuilds a class map from a stored mask version.
    public static func labels(from stored: StoredMask, width: Int, height: Int, classes: [String]) throws -> LabelMask {
        if let perClass = stored.classMasks, classes.count > 2 {
            var labels = [UInt8](repeating: 0, count: width * height)
            for (index, name) in classes.enumerated() {
                guard let counts = perClass[name] else { continue }
                let bits = try COCORLE(size: [height, width], counts: counts).decodeBinary()
                for i in 0..<min(bits.count, labels.count) where bits[i] { labels[i] = UInt8(index) }
            }
            return LabelMask(width: width, height: height, labels: labels)
        }
        return try COCORLE(size: [height, width], counts: stored.rleCounts).labelMask(objectClass: 0,
                                                                                    backgroundClass: 1)
    }
}

/// A mask with its encodings, computed once per version and shared by the store, the reply and the update.
public struct EncodedMask: Sendable {
    public let mask: LabelMask
    public let rle: COCORLE
    public let classMasks: [String: COCORLE]?

    public init(_ mask: LabelMask, classes: [String]) {
        self.mask = mask
        rle = MaskCodec.rle(mask)
        classMasks = MaskCodec.classMasks(mask, classes: classes)
    }
}
