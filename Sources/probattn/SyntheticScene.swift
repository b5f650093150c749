import ProbattnCore
import ProbattnImaging

/// A synthetic photograph-like test image with a known object, for benchmarks: a smooth two-tone gradient
/// background with mild texture, a few distractor ellipses, and one object ellipse whose pixels are the ground truth
/// the simulated annotators click against. Deterministic for a given seed.
struct SyntheticScene {
    let image: RGBImage
    /// `isObject[y * width + x]`: whether the pixel belongs to the object.
    let isObject: [Bool]

    init(width: Int, height: Int, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        struct Ellipse { var cx, cy, rx, ry: Double; var colour: (Double, Double, Double) }
        func ellipse() -> Ellipse {
            let rx = Double(width) * random.uniform(0.10, 0.22)
            let ry = Double(height) * random.uniform(0.10, 0.22)
            return Ellipse(cx: random.uniform(rx, Double(width) - rx), cy: random.uniform(ry, Double(height) - ry),
                           rx: rx, ry: ry,
                           colour: (random.uniform(0, 255), random.uniform(0, 255), random.uniform(0, 255)))
        }
        let object = ellipse()
        let distractors = (0..<3).map { _ in ellipse() }
        let top = (random.uniform(20, 120), random.uniform(20, 120), random.uniform(60, 200))
        let bottom = (random.uniform(60, 200), random.uniform(40, 160), random.uniform(20, 120))

        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        var mask = [Bool](repeating: false, count: width * height)
        func inside(_ e: Ellipse, _ x: Int, _ y: Int) -> Bool {
            let dx = (Double(x) - e.cx) / e.rx, dy = (Double(y) - e.cy) / e.ry
            return dx * dx + dy * dy <= 1
        }
        for y in 0..<height {
            let t = height > 1 ? Double(y) / Double(height - 1) : 0
            for x in 0..<width {
                var colour = (top.0 + (bottom.0 - top.0) * t, top.1 + (bottom.1 - top.1) * t,
                              top.2 + (bottom.2 - top.2) * t)
                for distractor in distractors where inside(distractor, x, y) { colour = distractor.colour }
                if inside(object, x, y) {
                    colour = object.colour
                    mask[y * width + x] = true
                }
                // Texture: a fine stripe pattern plus noise, so the encoder sees more than flat regions.
                let texture = 12 * Double((x / 3 + y / 5) % 2) + random.uniform(-10, 10)
                let index = (y * width + x) * 3
                pixels[index] = UInt8(clamping: Int((colour.0 + texture).rounded()))
                pixels[index + 1] = UInt8(clamping: Int((colour.1 + texture).rounded()))
                pixels[index + 2] = UInt8(clamping: Int((colour.2 + texture).rounded()))
            }
        }
        image = RGBImage(width: width, height: height, pixels: pixels)
        isObject = mask
    }
}
