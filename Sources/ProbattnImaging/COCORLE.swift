/// A binary mask in COCO's compressed run-length encoding, byte-for-byte as pycocotools writes it
/// (`cocodataset/cocoapi common/maskApi.c`, `rleEncode` + `rleToString`): `{"size": [h, w], "counts": "..."}`.
///
/// The mask is read in column-major order (down each column, then the next column); the run lengths alternate
/// starting with a run of zeros (0 when the first pixel is set). Each count, minus the count two places back for the
/// 4th and later ones, is written as a little-endian base-32 number with a continuation bit and a sign bit, one
/// character (ASCII 48...111) per 5 bits.
///
/// Used for users' mask output (daemon replies, `--save-masks`) and readable back with `decodeBinary()`.
public struct COCORLE: Codable, Equatable, Sendable {
    /// `[height, width]`.
    public var size: [Int]
    /// The compressed counts.
    public var counts: String

    public init(size: [Int], counts: String) {
        self.size = size
        self.counts = counts
    }

    public var height: Int { size.count == 2 ? size[0] : 0 }
    public var width: Int { size.count == 2 ? size[1] : 0 }

    /// Encodes a row-major binary mask (`mask[y * width + x]`).
    public init(binary mask: [Bool], width: Int, height: Int) throws {
        guard width > 0, height > 0, mask.count == width * height else {
            throw ImageError.invalidArgument("RLE: \(mask.count) pixels for \(width)x\(height)")
        }
        self.size = [height, width]
        self.counts = COCORLE.compress(COCORLE.runs(binary: mask, width: width, height: height))
    }

    /// Encodes the pixels of class `objectClass` of a class map.
    public init(mask: LabelMask, objectClass: UInt8 = 0) {
        let binary = mask.labels.map { $0 == objectClass }
        size = [mask.height, mask.width]
        counts = COCORLE.compress(COCORLE.runs(binary: binary, width: mask.width, height: mask.height))
    }

    /// The uncompressed counts of a row-major binary mask: column-major runs, starting with zeros.
    public static func runs(binary mask: [Bool], width: Int, height: Int) -> [Int] {
        var runs: [Int] = []
        var current = false
        var length = 0
        for x in 0..<width {
            for y in 0..<height {
                let v = mask[y * width + x]
                if v != current {
                    runs.append(length)
                    length = 0
                    current = v
                }
                length += 1
            }
        }
        runs.append(length)
        return runs
    }

    /// `rleToString`: the compressed string of uncompressed counts.
    public static func compress(_ runs: [Int]) -> String {
        var scalars: [UInt8] = []
        scalars.reserveCapacity(runs.count * 2)
        for i in runs.indices {
            var x = runs[i]
            if i > 2 { x -= runs[i - 2] }
            var more = true
            while more {
                var c = x & 0x1f
                x >>= 5  // arithmetic shift, as on C's signed long
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                scalars.append(UInt8(c + 48))
            }
        }
        return String(decoding: scalars, as: UTF8.self)
    }

    /// `rleFrString`: the uncompressed counts of a compressed string. Throws on characters outside 48...111, a
    /// number cut off mid-way, or a negative count.
    public static func decompress(_ string: String) throws -> [Int] {
        var runs: [Int] = []
        var x = 0
        var k = 0
        for byte in string.utf8 {
            guard byte >= 48, byte <= 111 else {
                throw ImageError.corrupt("RLE: character \(byte) outside the alphabet 48...111")
            }
            let c = Int(byte) - 48
            guard k < 12 else { throw ImageError.corrupt("RLE: count too long") }
            x |= (c & 0x1f) << (5 * k)
            k += 1
            if c & 0x20 != 0 { continue }
            if c & 0x10 != 0 { x |= -1 << (5 * k) }
            if runs.count > 2 {
                let (sum, overflow) = x.addingReportingOverflow(runs[runs.count - 2])
                guard !overflow else { throw ImageError.corrupt("RLE: run length overflows") }
                x = sum
            }
            guard x >= 0 else { throw ImageError.corrupt("RLE: negative run length") }
            runs.append(x)
            x = 0
            k = 0
        }
        guard k == 0 else { throw ImageError.corrupt("RLE: counts end in the middle of a number") }
        return runs
    }

    /// The row-major binary mask. Throws when the counts do not add up to `height * width`.
    public func decodeBinary() throws -> [Bool] {
        let h = height, w = width
        guard h > 0, w > 0 else { throw ImageError.corrupt("RLE: size must be [height, width] with positive values") }
        let (pixelCount, sizeOverflow) = h.multipliedReportingOverflow(by: w)
        guard !sizeOverflow, pixelCount <= 1 << 34 else { throw ImageError.corrupt("RLE: size \(size) is too large") }
        let runs = try COCORLE.decompress(counts)
        var total = 0
        for run in runs {
            total += run
            guard total <= pixelCount else { throw ImageError.corrupt("RLE: counts exceed \(h)x\(w) pixels") }
        }
        guard total == pixelCount else {
            throw ImageError.corrupt("RLE: counts sum to \(total), expected \(pixelCount)")
        }
        var mask = [Bool](repeating: false, count: pixelCount)
        var position = 0
        var value = false
        for run in runs {
            if value {
                for p in position..<(position + run) {
                    mask[(p % h) * w + p / h] = true
                }
            }
            position += run
            value.toggle()
        }
        return mask
    }

    /// The mask as a class map: `objectClass` where set, `backgroundClass` elsewhere.
    public func labelMask(objectClass: UInt8 = 0, backgroundClass: UInt8 = 1) throws -> LabelMask {
        let binary = try decodeBinary()
        return LabelMask(width: width, height: height, labels: binary.map { $0 ? objectClass : backgroundClass })
    }

    /// The number of set pixels (computed on the runs).
    public func area() throws -> Int {
        let runs = try COCORLE.decompress(counts)
        var total = 0
        for i in stride(from: 1, to: runs.count, by: 2) {
            let (sum, overflow) = total.addingReportingOverflow(runs[i])
            guard !overflow else { throw ImageError.corrupt("RLE: area overflows") }
            total = sum
        }
        return total
    }
}
