import ProbattnImaging
import ProbattnEvaluation
import ProbattnJSON

/// A small deterministic generator (SplitMix64) so that synthetic test images are the same on every run.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// A two-region test scene: a textured disc (reddish, fine diagonal stripes) on a textured background (greenish,
/// coarse vertical stripes), both with pixel noise. `inside[y * width + x]` is the ground truth of the disc.
struct DiscScene {
    let image: RGBImage
    let inside: [Bool]
    let centre: (x: Int, y: Int)
    let radius: Double

    init(width: Int = 96, height: Int = 72, seed: UInt64 = 7) {
        var rng = SplitMix64(state: seed)
        let cx = width / 2 + 5, cy = height / 2 - 3
        let r = Double(min(width, height)) * 0.3
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        var inside = [Bool](repeating: false, count: width * height)
        func clamp(_ v: Double) -> UInt8 { UInt8(max(0, min(255, v.rounded()))) }
        for y in 0..<height {
            for x in 0..<width {
                let dx = Double(x - cx), dy = Double(y - cy)
                let isIn = dx * dx + dy * dy <= r * r
                let noise = (rng.unit() - 0.5) * 30
                let (red, green, blue): (Double, Double, Double)
                if isIn {
                    let stripe = ((x + y) / 2) % 2 == 0 ? 20.0 : -20.0
                    (red, green, blue) = (190 + stripe + noise, 70 + noise, 60 + stripe / 2 + noise)
                } else {
                    let stripe = (x / 4) % 2 == 0 ? 25.0 : -25.0
                    (red, green, blue) = (80 + noise, 150 + stripe + noise, 90 + noise)
                }
                let o = (y * width + x) * 3
                pixels[o] = clamp(red); pixels[o + 1] = clamp(green); pixels[o + 2] = clamp(blue)
                inside[y * width + x] = isIn
            }
        }
        self.image = RGBImage(width: width, height: height, pixels: pixels)
        self.inside = inside
        self.centre = (cx, cy)
        self.radius = r
    }

    /// IoU of `mask`'s class `objectClass` against the disc.
    func iou(_ mask: LabelMask, objectClass: UInt8 = 0) -> Double {
        var intersection = 0, union = 0
        for i in 0..<inside.count {
            let predicted = mask.labels[i] == objectClass
            if predicted && inside[i] { intersection += 1 }
            if predicted || inside[i] { union += 1 }
        }
        return union == 0 ? 1 : Double(intersection) / Double(union)
    }
}
