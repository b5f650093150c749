import ProbattnImaging
import XCTest

/// Label Studio's brush RLE against the vectors made with `label_studio_sdk.converter.brush.mask2rle` (SDK 2.1.2).
final class BrushRLETests: XCTestCase {
    private func rle(_ rows: [[Int]]) -> [Int] {
        BrushRLE.encode(rows.flatMap { $0.map { $0 != 0 } }, width: rows[0].count, height: rows.count)
    }

    func testSDKVectors() {
        XCTAssertEqual(rle([[0]]), [0, 0, 0, 4, 57, 27, 252, 96, 0])
        XCTAssertEqual(rle([[0, 0]]), [0, 0, 0, 8, 57, 27, 252, 224, 0])
        XCTAssertEqual(rle([[0, 255, 0]]), [0, 0, 0, 12, 57, 27, 252, 96, 17, 255, 198, 0])
        XCTAssertEqual(rle([[0, 0], [255, 255]]), [0, 0, 0, 16, 57, 27, 252, 224, 19, 255, 128])
        XCTAssertEqual(rle([[0, 255, 0], [255, 255, 255]]), [0, 0, 0, 24, 57, 27, 252, 96, 17, 255, 198, 1, 111, 252])
        let zeros = [[Int]](repeating: [Int](repeating: 0, count: 300), count: 300)
        XCTAssertEqual(rle(zeros), [0, 5, 126, 64, 57, 27, 255, 255, 255, 0, 255, 255, 224, 31, 255, 252, 3, 255, 255,
                                    128, 127, 255, 240, 14, 252, 126, 0])
    }

    func testRoundTripGivesRGBAOfTheMask() {
        var state: UInt64 = 7
        let w = 37, h = 23
        let mask = (0..<(w * h)).map { _ -> Bool in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (state >> 61) & 1 == 1
        }
        let decoded = BrushRLE.decode(BrushRLE.encode(mask, width: w, height: h))
        XCTAssertEqual(decoded, mask.flatMap { [UInt8](repeating: $0 ? 255 : 0, count: 4) })
    }
}
