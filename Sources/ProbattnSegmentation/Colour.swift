import Foundation
import ProbattnImaging

/// sRGB (8-bit, D65) to CIELAB conversion. Called by the encoder for every pixel and by the upsampler for the pixels
/// near a class boundary; L is in [0, 100], a and b roughly in [-110, 110] (ΔE units).
struct LabConverter: Sendable {
    /// sRGB byte → linear-light value.
    private let linear: [Float]

    init() {
        linear = (0..<256).map { i in
            let c = Double(i) / 255
            return Float(c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4))
        }
    }

    @inline(__always) private static func f(_ t: Float) -> Float {
        t > 0.008856 ? cbrtf(t) : 7.787 * t + 16.0 / 116.0
    }

    /// The (L, a, b) of one sRGB colour.
    @inline(__always) func lab(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> (Float, Float, Float) {
        let rl = linear[Int(r)], gl = linear[Int(g)], bl = linear[Int(b)]
        // sRGB → XYZ (D65), each divided by the white point.
        let x = (0.4124564 * rl + 0.3575761 * gl + 0.1804375 * bl) / 0.95047
        let y = 0.2126729 * rl + 0.7151522 * gl + 0.0721750 * bl
        let z = (0.0193339 * rl + 0.1191920 * gl + 0.9503041 * bl) / 1.08883
        let fx = Self.f(x), fy = Self.f(y), fz = Self.f(z)
        return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    }

    /// The whole image as three planes (L, a, b), each `width * height`.
    func planes(of image: RGBImage) -> (l: [Float], a: [Float], b: [Float]) {
        let n = image.width * image.height
        var l = [Float](repeating: 0, count: n), a = l, b = l
        image.pixels.withUnsafeBufferPointer { px in
            for i in 0..<n {
                let (ll, aa, bb) = lab(px[3 * i], px[3 * i + 1], px[3 * i + 2])
                l[i] = ll; a[i] = aa; b[i] = bb
            }
        }
        return (l, a, b)
    }
}

/// CIELAB of every sRGB colour quantised to 6 bits per channel (262 144 entries, built once on first use): the
/// upsampler's per-pixel colour look-up. The quantisation error (at most about 2 ΔE) is far below the bilateral
/// colour sigma.
enum QuantisedLab {
    static let table: [Float] = {
        let converter = LabConverter()
        var table = [Float](repeating: 0, count: 64 * 64 * 64 * 3)
        for r in 0..<64 {
            for g in 0..<64 {
                for b in 0..<64 {
                    let (l, a, bb) = converter.lab(UInt8(r * 4 + 2), UInt8(g * 4 + 2), UInt8(b * 4 + 2))
                    let o = ((r << 12) | (g << 6) | b) * 3
                    table[o] = l; table[o + 1] = a; table[o + 2] = bb
                }
            }
        }
        return table
    }()

    /// Index of the first of the three table entries for an 8-bit colour.
    @inline(__always) static func index(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> Int {
        ((Int(r >> 2) << 12) | (Int(g >> 2) << 6) | Int(b >> 2)) * 3
    }
}

/// exp(−x) for x ≥ 0 by table look-up with linear interpolation (0 beyond x = 16, where exp(−x) < 1.2e-7):
/// the upsampler evaluates it for every pixel near a class boundary and every neighbouring token.
enum NegativeExponential {
    static let table: [Float] = (0...(16 * 256 + 1)).map { Float(exp(-Double($0) / 256)) }

    @inline(__always) static func value(_ x: Float) -> Float { value(x, table: table) }

    /// `value(x)` with the table passed in (hoists the lazy global's access out of a hot loop): the array itself, or
    /// a raw buffer of it for loops that read everything through raw buffers.
    @inline(__always) static func value<Table: RandomAccessCollection>(_ x: Float, table: Table) -> Float
        where Table.Element == Float, Table.Index == Int {
        guard x < 16 else { return 0 }
        let position = max(0, x) * 256
        let i = Int(position)
        let f = position - Float(i)
        return table[i] + f * (table[i + 1] - table[i])
    }
}
