import Foundation
import ProbattnImaging
import Testing

/// COCO RLE against pycocotools. The expected strings were generated once with pycocotools 2.0 (`mask.encode` on
/// the Fortran-ordered uint8 masks built by the same formulas as `masks` below) and pasted here as literals.
@Suite struct COCORLETests {
    struct Case: Sendable, CustomStringConvertible {
        let name: String
        let width: Int
        let height: Int
        let expected: String
        let area: Int
        let pixel: @Sendable (Int, Int) -> Bool  // (x, y)
        var description: String { name }

        var mask: [Bool] {
            var m = [Bool](repeating: false, count: width * height)
            for y in 0..<height { for x in 0..<width { m[y * width + x] = pixel(x, y) } }
            return m
        }
    }

    static let cases: [Case] = [
        Case(name: "3x4 pattern", width: 4, height: 3, expected: "11110O30", area: 5) { x, y in
            [[false, true, true, false], [true, true, false, false], [false, false, false, true]][y][x]
        },
        Case(name: "all zeros", width: 7, height: 5, expected: "S1", area: 0) { _, _ in false },
        Case(name: "all ones", width: 3, height: 4, expected: "0<", area: 12) { _, _ in true },
        Case(name: "disc and box", width: 30, height: 20,
             expected: "Q41`06L2N2O000O20N10001N2N4Ja0=UO00000000000i1", area: 211) { x, y in
            (x - 12) * (x - 12) + (y - 9) * (y - 9) <= 36 || (20..<27).contains(x) && (3..<17).contains(y)
        },
        Case(name: "large with a hole", width: 300, height: 200,
             expected: "Xo0^fh0=[_WO4L4M2M4M2N2O0O2N2O0O2O0O2O000000000000000000000001N101N101N2N101N2N3L3N3L4LdYi0",
             area: 57755) { x, y in
            !((x - 150) * (x - 150) + (y - 100) * (y - 100) < 400 || x < 5)
        },
        Case(name: "stripes", width: 10, height: 9, expected: "0240O010O010O010O010O010O010O010O0", area: 34) { x, y in
            (x * 7 + y * 13) % 11 < 4
        },
    ]

    @Test(arguments: cases) func matchesPycocotools(_ c: Case) throws {
        let rle = try COCORLE(binary: c.mask, width: c.width, height: c.height)
        #expect(rle.counts == c.expected)
        #expect(rle.size == [c.height, c.width])
        #expect(try rle.area() == c.area)
    }

    @Test(arguments: cases) func decodesBackToTheSameMask(_ c: Case) throws {
        let rle = COCORLE(size: [c.height, c.width], counts: c.expected)
        #expect(try rle.decodeBinary() == c.mask)
    }

    @Test func runsAreColumnMajorAndStartWithZeros() {
        // Row-major [[1, 0], [1, 1]]: columns read (1, 1) then (0, 1): runs 0 zeros, 2 ones, 1 zero, 1 one.
        #expect(COCORLE.runs(binary: [true, false, true, true], width: 2, height: 2) == [0, 2, 1, 1])
        #expect(COCORLE.runs(binary: [false, false, false], width: 3, height: 1) == [3])
    }

    @Test func largeCountsAndDeltasRoundTrip() throws {
        let runs = [0, 1_000_000, 3, 999_990, 7, 1, 123_456, 2, 0]
        #expect(try COCORLE.decompress(COCORLE.compress(runs)) == runs)
    }

    @Test func labelMaskClassIsAParameter() throws {
        let mask = LabelMask(width: 3, height: 2, labels: [0, 1, 2, 2, 1, 0])
        let ofClass2 = COCORLE(mask: mask, objectClass: 2)
        #expect(try ofClass2.decodeBinary() == [false, false, true, true, false, false])
        let ofClass0 = COCORLE(mask: mask)
        #expect(try ofClass0.labelMask(objectClass: 0, backgroundClass: 1).labels == [0, 1, 1, 1, 1, 0])
    }

    @Test func jsonHasSizeAndCounts() throws {
        let rle = try COCORLE(binary: [true, false, false, true], width: 2, height: 2)
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(rle)) as? [String: Any]
        #expect(object?["size"] as? [Int] == [2, 2])
        #expect(object?["counts"] as? String == rle.counts)
        #expect(try JSONDecoder().decode(COCORLE.self, from: JSONEncoder().encode(rle)) == rle)
    }

    @Test func malformedStringsAreErrors() throws {
        #expect(throws: ImageError.self) { try COCORLE(size: [2, 2], counts: "1~").decodeBinary() }  // outside 48...111
        #expect(throws: ImageError.self) { try COCORLE(size: [2, 2], counts: "1P").decodeBinary() }  // unfinished number
        #expect(throws: ImageError.self) { try COCORLE(size: [2, 2], counts: "3").decodeBinary() }   // sums to 3, not 4
        #expect(throws: ImageError.self) { try COCORLE(size: [2, 2], counts: "O").decodeBinary() }   // negative run
        #expect(throws: ImageError.self) { try COCORLE(size: [2], counts: "4").decodeBinary() }      // bad size
        #expect(try COCORLE(size: [2, 2], counts: "4").decodeBinary() == [false, false, false, false])
    }
}
