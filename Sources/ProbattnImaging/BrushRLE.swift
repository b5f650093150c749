/// Label Studio's brush RLE (`label_studio_sdk.converter.brush.mask2rle`, a port of thi.ng `rle-pack`), which Label
/// Studio's editor decodes into an RGBA `ImageData` of the image's natural size. The mask is flattened to RGBA: every
/// pixel becomes four equal bytes (255 where the pixel is set, 0 elsewhere; the editor draws where alpha is not 0).
///
/// Bit stream, most significant bit first: a 53-bit header (32 bits: the number of values W·H·4; 5 bits: word size
/// − 1 = 7; four 4-bit fields: run-length field widths − 1 = 2, 3, 7, 15), then one chunk per run of equal values:
/// a run of 1 is a literal (`0 00 000` + the 8-bit value), 2…8 is `1 00` + 3-bit length − 1, 9…16 `1 01` + 4 bits,
/// 17…256 `1 10` + 8 bits, longer runs `1 11` + 16 bits (split into chunks of 65536, the rest also with 16 bits),
/// each followed by the value.
/// Like the SDK the stream is padded with `8 − (bits mod 8)` zero bits, so a stream already a multiple of 8 bits
/// long gets one more zero byte; the output is byte-identical to `mask2rle`.
public enum BrushRLE {
    /// The RLE bytes of a mask given as one flag per pixel (row-major, `width × height`).
    public static func encode(_ foreground: [Bool], width: Int, height: Int) -> [Int] {
        precondition(foreground.count == width * height, "BrushRLE: size mismatch")
        var writer = BitWriter()
        let count = width * height * 4
        writer.write(UInt64(count), bits: 32)
        writer.write(7, bits: 5)
        for size in [3, 4, 8, 16] { writer.write(UInt64(size - 1), bits: 4) }
        var index = 0
        while index < foreground.count {
            let value = foreground[index]
            var end = index + 1
            while end < foreground.count, foreground[end] == value { end += 1 }
            writeRun(&writer, length: (end - index) * 4, value: value ? 255 : 0)
            index = end
        }
        writer.padLikeSDK()
        return writer.bytes.map(Int.init)
    }

    private static func writeRun(_ writer: inout BitWriter, length: Int, value: UInt64) {
        switch length {
        case 1:
            writer.write(0, bits: 6)
        case 2...8:
            writer.write(0b100, bits: 3); writer.write(UInt64(length - 1), bits: 3)
        case 9...16:
            writer.write(0b101, bits: 3); writer.write(UInt64(length - 1), bits: 4)
        case 17...256:
            writer.write(0b110, bits: 3); writer.write(UInt64(length - 1), bits: 8)
        default:
            // As the SDK: chunks of 65536 while more remain, then the rest, all with the 16-bit length field
            // (even a rest of 256 or less).
            var remaining = length
            while remaining > 65536 {
                writer.write(0b111, bits: 3); writer.write(65535, bits: 16); writer.write(value, bits: 8)
                remaining -= 65536
            }
            writer.write(0b111, bits: 3); writer.write(UInt64(remaining - 1), bits: 16)
        }
        writer.write(value, bits: 8)
    }

    /// Decodes an RLE stream back to its values (W·H·4 bytes: RGBA per pixel), for tests and checks. Returns nil
    /// when the stream is truncated.
    public static func decode(_ rle: [Int]) -> [UInt8]? {
        var reader = BitReader(bytes: rle.map { UInt8(truncatingIfNeeded: $0) })
        guard let count = reader.read(32), let word = reader.read(5) else { return nil }
        var sizes: [Int] = []
        for _ in 0..<4 {
            guard let s = reader.read(4) else { return nil }
            sizes.append(Int(s) + 1)
        }
        let wordSize = Int(word) + 1
        var out: [UInt8] = []
        out.reserveCapacity(Int(count))
        while out.count < Int(count) {
            guard let flag = reader.read(1), let sizeIndex = reader.read(2),
                  let length = reader.read(sizes[Int(sizeIndex)]) else { return nil }
            let n = Int(length) + 1
            if flag == 1 {
                guard let v = reader.read(wordSize) else { return nil }
                out.append(contentsOf: repeatElement(UInt8(truncatingIfNeeded: v), count: n))
            } else {
                for _ in 0..<n {
                    guard let v = reader.read(wordSize) else { return nil }
                    out.append(UInt8(truncatingIfNeeded: v))
                }
            }
        }
        return Array(out.prefix(Int(count)))
    }

    private struct BitWriter {
        var bytes: [UInt8] = []
        var current: UInt8 = 0
        var used = 0

        mutating func write(_ value: UInt64, bits: Int) {
            for shift in stride(from: bits - 1, through: 0, by: -1) {
                current = current << 1 | UInt8((value >> UInt64(shift)) & 1)
                used += 1
                if used == 8 {
                    bytes.append(current)
                    current = 0
                    used = 0
                }
            }
        }

        /// `8 - (bits % 8)` zero bits: up to the byte boundary, or a whole zero byte when already on one.
        mutating func padLikeSDK() {
            write(0, bits: 8 - used)
        }
    }

    private struct BitReader {
        let bytes: [UInt8]
        var position = 0

        mutating func read(_ bits: Int) -> UInt64? {
            guard position + bits <= bytes.count * 8 else { return nil }
            var value: UInt64 = 0
            for _ in 0..<bits {
                let bit = (bytes[position >> 3] >> UInt8(7 - (position & 7))) & 1
                value = value << 1 | UInt64(bit)
                position += 1
            }
            return value
        }
    }
}
