import ProbattnImaging

/// Synthetic pictures and a minimal BMP writer, so that decoding is tested on real files of every layout.
enum TestImages {
    /// A smooth RGB gradient with a disc (JPEG-friendly, but every pixel differs from its neighbours).
    static func gradient(width: Int, height: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3
                let inDisc = (x - width / 2) * (x - width / 2) + (y - height / 2) * (y - height / 2) < width * height / 16
                pixels[o] = UInt8(x * 255 / max(1, width - 1))
                pixels[o + 1] = UInt8(y * 255 / max(1, height - 1))
                pixels[o + 2] = inDisc ? 200 : 40
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Pseudo-random pixels (a fixed LCG), for exact lossless round trips.
    static func noise(width: Int, height: Int, seed: UInt32 = 12345) -> RGBImage {
        var state = seed
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in pixels.indices {
            state = state &* 1_664_525 &+ 1_013_904_223
            pixels[i] = UInt8(truncatingIfNeeded: state >> 24)
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    private static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    private static func le32(_ v: Int) -> [UInt8] {
        let u = UInt32(bitPattern: Int32(truncatingIfNeeded: v))
        return (0..<4).map { UInt8((u >> (8 * UInt32($0))) & 0xff) }
    }

    /// Writes a BITMAPINFOHEADER BMP. `bits` is 24 or 32 (direct colour, from `image`) or 1/4/8 (palettised: `indices`
    /// row-major, `palette` RGB triples). Rows are padded to 4 bytes; `topDown` writes a negative height.
    static func bmp(width: Int, height: Int, bits: Int, topDown: Bool = false, image: RGBImage? = nil,
                    indices: [UInt8] = [], palette: [(UInt8, UInt8, UInt8)] = [], compression: Int = 0) -> [UInt8] {
        let stride = (width * bits + 31) / 32 * 4
        let paletteBytes = bits <= 8 ? palette.count * 4 : 0
        let offset = 14 + 40 + paletteBytes
        var rows = [UInt8](repeating: 0, count: stride * height)
        for fileRow in 0..<height {
            let y = topDown ? fileRow : height - 1 - fileRow
            let base = fileRow * stride
            for x in 0..<width {
                switch bits {
                case 24, 32:
                    let (r, g, b) = image!.rgb(x: x, y: y)
                    let o = base + x * bits / 8
                    rows[o] = b; rows[o + 1] = g; rows[o + 2] = r
                    if bits == 32 { rows[o + 3] = 0xff }
                default:
                    let index = indices[y * width + x]
                    let perByte = 8 / bits
                    let shift = 8 - bits * (x % perByte + 1)
                    rows[base + x / perByte] |= index << UInt8(shift)
                }
            }
        }
        var out: [UInt8] = [0x42, 0x4D] + le32(offset + rows.count) + le32(0) + le32(offset)
        out += le32(40) + le32(width) + le32(topDown ? -height : height) + le16(1) + le16(bits) + le32(compression)
        out += le32(rows.count) + le32(2835) + le32(2835) + le32(bits <= 8 ? palette.count : 0) + le32(0)
        if bits <= 8 {
            for (r, g, b) in palette { out += [b, g, r, 0] }
        }
        return out + rows
    }
}

/// CRC-32 (ISO-HDLC, as in PNG chunks), for building hand-made PNG headers.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
