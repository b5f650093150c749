import Foundation
import ProbattnJSON
import ProbattnSession

/// CVAT's interactor contract (docs/INTEGRATIONS.md, pinned to the CVAT commits named there): the body CVAT's lambda
/// manager posts to an interactor function, and the reply its UI decodes. Pure: no I/O.
enum CVATInteractor {
    /// What one call asks for.
    struct Prompt {
        var image: [UInt8]
        var positive: [(x: Int, y: Int)]
        var negative: [(x: Int, y: Int)]
        /// `obj_bbox` as pixels, clipped later to the image.
        var box: PixelBox?
    }

    /// Decodes the body `{"image": base64, "pos_points": [[x, y], …], "neg_points": [[x, y], …], "obj_bbox":
    /// null | [] | [[x1, y1], [x2, y2]], "threshold": …}`. Points are image pixels (floats; floored).
    static func prompt(_ body: JSONValue) throws -> Prompt {
        guard case .object = body else { throw IntegrationError(400, "the body is not a JSON object") }
        guard let text = body["image"]?.stringValue else {
            throw IntegrationError(400, "missing field 'image' (the frame's encoded bytes in base64)")
        }
        guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw IntegrationError(400, "field 'image' is not base64")
        }
        func points(_ name: String) throws -> [(x: Int, y: Int)] {
            guard let raw = body[name] else { throw IntegrationError(400, "missing field '\(name)'") }
            if raw == .null { return [] }
            guard let list = raw.arrayValue else { throw IntegrationError(400, "field '\(name)' must be an array of [x, y]") }
            return try list.enumerated().map { index, item in
                guard let pair = item.arrayValue, pair.count == 2, let x = pair[0].doubleValue, let y = pair[1].doubleValue,
                      x.isFinite, y.isFinite else {
                    throw IntegrationError(400, "\(name)[\(index)] must be [x, y] (numbers)")
                }
                return (Int(x.rounded(.down)), Int(y.rounded(.down)))
            }
        }
        let positive = try points("pos_points"), negative = try points("neg_points")
        var box: PixelBox?
        if let raw = body["obj_bbox"], raw != .null {
            guard let corners = raw.arrayValue else { throw IntegrationError(400, "field 'obj_bbox' must be [[x1, y1], [x2, y2]]") }
            if !corners.isEmpty {
                guard corners.count == 2, let a = corners[0].arrayValue, let b = corners[1].arrayValue, a.count == 2,
                      b.count == 2, let x1 = a[0].doubleValue, let y1 = a[1].doubleValue, let x2 = b[0].doubleValue,
                      let y2 = b[1].doubleValue else {
                    throw IntegrationError(400, "field 'obj_bbox' must be [[x1, y1], [x2, y2]]")
                }
                box = PixelBox(x0: Int(min(x1, x2).rounded(.down)), y0: Int(min(y1, y2).rounded(.down)),
                               x1: Int(max(x1, x2).rounded(.down)), y1: Int(max(y1, y2).rounded(.down)))
            }
        }
        if positive.isEmpty, box == nil {
            throw IntegrationError(400, "give at least one positive point (pos_points) or an obj_bbox")
        }
        return Prompt(image: [UInt8](data), positive: positive, negative: negative, box: box)
    }

    /// The core's `predict` request (object = class 0, background = class 1).
    static func request(_ prompt: Prompt) -> PromptRequest {
        let points = prompt.positive.map { WireClick(x: $0.x, y: $0.y, className: "object") }
            + prompt.negative.map { WireClick(x: $0.x, y: $0.y, className: "background") }
        return PromptRequest(bytes: prompt.image, classes: ["object", "background"], points: points, box: prompt.box,
                             annotator: "cvat")
    }

    /// CVAT's `InteractorResults` (cvat-core `lambda-manager.ts`): `mask` as rows of 0/255, cropped to the object's
    /// bounding box, and `bounds` = [xtl, ytl, xbr, ybr] (inclusive) where that crop sits in the frame. The UI finds
    /// the polygon with OpenCV on the mask and offsets it by `bounds`. Nil when the mask is empty (the UI cannot
    /// take an empty mask).
    static func reply(_ result: PredictResult) -> JSONValue? {
        replyBytes(result).flatMap { JSONValue.parse($0) }
    }

    /// The inclusive bounding box of the object's pixels (class 0), nil when there are none.
    static func objectBounds(_ result: PredictResult) -> (x0: Int, y0: Int, x1: Int, y1: Int)? {
        let w = result.width, h = result.height
        let labels = result.mask.mask.labels
        var x0 = w, y0 = h, x1 = -1, y1 = -1
        for y in 0..<h {
            for x in 0..<w where labels[y * w + x] == 0 {
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
            }
        }
        return x1 >= 0 ? (x0, y0, x1, y1) : nil
    }

    /// The same reply as JSON text, written directly (a 1280 × 960 object is about a million numbers: building
    /// JSON values for them and encoding those would cost more than the segmentation).
    static func replyBytes(_ result: PredictResult) -> [UInt8]? {
        let w = result.width
        let labels = result.mask.mask.labels
        guard let (x0, y0, x1, y1) = objectBounds(result) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity((x1 - x0 + 2) * (y1 - y0 + 1) * 4 + 64)
        out += Array("{\"bounds\":[\(x0),\(y0),\(x1),\(y1)],\"mask\":[".utf8)
        let on = Array("255".utf8)
        for y in y0...y1 {
            if y > y0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "["))
            for x in x0...x1 {
                if x > x0 { out.append(UInt8(ascii: ",")) }
                if labels[y * w + x] == 0 { out += on } else { out.append(UInt8(ascii: "0")) }
            }
            out.append(UInt8(ascii: "]"))
        }
        out += Array("]}".utf8)
        return out
    }

    /// The reply built as JSON values (the reference the direct writer is checked against).
    static func replyValue(_ result: PredictResult) -> JSONValue? {
        let w = result.width
        let labels = result.mask.mask.labels
        guard let (x0, y0, x1, y1) = objectBounds(result) else { return nil }
        var rows: [JSONValue] = []
        rows.reserveCapacity(y1 - y0 + 1)
        for y in y0...y1 {
            rows.append(.array((x0...x1).map { labels[y * w + $0] == 0 ? .int(255) : .int(0) }))
        }
        return ["mask": .array(rows), "bounds": [.int(x0), .int(y0), .int(x1), .int(y1)]]
    }
}
