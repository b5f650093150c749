import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSession

/// The Label Studio ML backend's request and reply bodies (the `label-studio-ml` package's `api.py`, as Label Studio
/// 1.23 calls it; docs/INTEGRATIONS.md). Pure: no I/O.
enum LabelStudioBackend {
    /// The model version `/setup`, `/versions` and every prediction report.
    static let modelVersion = "probattn-predict-1"

    /// What one interactive `/predict` asks for.
    struct Prompt: Equatable {
        var taskID: Int?
        /// The task's image URL (`task.data[<Image value>]`).
        var imageURL: String
        /// `original_width`, `original_height` of the context's first region.
        var width: Int
        var height: Int
        /// Pixels, with `positive` true for object points.
        var points: [(x: Int, y: Int, positive: Bool)]
        var box: PixelBox?
        /// The label of the last context region.
        var label: String
        /// The first `<BrushLabels>` tag's `name` and `toName`.
        var fromName: String
        var toName: String

        static func == (a: Prompt, b: Prompt) -> Bool {
            a.taskID == b.taskID && a.imageURL == b.imageURL && a.width == b.width && a.height == b.height
                && a.points.map { [$0.x, $0.y, $0.positive ? 1 : 0] } == b.points.map { [$0.x, $0.y, $0.positive ? 1 : 0] }
                && a.box == b.box && a.label == b.label && a.fromName == b.fromName && a.toName == b.toName
        }
    }

    /// Percent of `size` to a pixel index: min(size − 1, floor(p · size / 100)); nil outside 0…100.
    static func pixel(_ percent: Double, _ size: Int) -> Int? {
        guard percent.isFinite, percent >= 0, percent <= 100 else { return nil }
        return min(size - 1, Int((percent * Double(size) / 100).rounded(.down)))
    }

    /// Decodes a `/predict` body into the prompt, or the reason (status 400).
    static func prompt(_ body: JSONValue) throws -> Prompt {
        guard case .object = body else { throw IntegrationError(400, "the body is not a JSON object") }
        guard let tasks = body["tasks"]?.arrayValue, let task = tasks.first, case .object = task else {
            throw IntegrationError(400, "field 'tasks' must be a non-empty array of tasks")
        }
        guard tasks.count == 1 else {
            throw IntegrationError(400, "an interactive prediction takes one task, got \(tasks.count)")
        }
        guard let config = body["label_config"]?.stringValue else {
            throw IntegrationError(400, "missing field 'label_config' (the project's labeling config)")
        }
        guard let brush = LabelConfigTags.first("BrushLabels", in: config),
              let fromName = brush["name"], let toName = brush["toName"] else {
            throw IntegrationError(400, "the labeling config has no <BrushLabels name=… toName=…> tag: probattn answers with brush masks")
        }
        guard let image = LabelConfigTags.all("Image", in: config).first(where: { $0["name"] == toName }),
              let value = image["value"], value.hasPrefix("$") else {
            throw IntegrationError(400, "the labeling config has no <Image name=\"\(toName)\" value=\"$…\"> for the BrushLabels")
        }
        let dataKey = String(value.dropFirst())
        guard let imageURL = task["data"]?[dataKey]?.stringValue, !imageURL.isEmpty else {
            throw IntegrationError(400, "the task has no image URL in data.\(dataKey)")
        }
        let context = body["params"]?["context"]
        guard let regions = context?["result"]?.arrayValue, !regions.isEmpty else {
            throw IntegrationError(400, "the context is empty: an interactive prediction needs keypointlabels or "
                                   + "rectanglelabels regions in params.context.result")
        }
        guard let width = regions[0]["original_width"]?.intValue, let height = regions[0]["original_height"]?.intValue,
              width > 0, height > 0 else {
            throw IntegrationError(400, "context.result[0] needs positive integers original_width and original_height")
        }
        var points: [(x: Int, y: Int, positive: Bool)] = []
        var box: PixelBox?
        var label: String?
        for (index, region) in regions.enumerated() {
            guard let type = region["type"]?.stringValue, let v = region["value"], case .object = v else {
                throw IntegrationError(400, "context.result[\(index)] needs 'type' and a 'value' object")
            }
            if let first = v[type]?.arrayValue?.first?.stringValue { label = first }
            switch type {
            case "keypointlabels":
                guard let px = v["x"]?.doubleValue, let py = v["y"]?.doubleValue else {
                    throw IntegrationError(400, "context.result[\(index)].value needs numbers x and y (percent)")
                }
                guard let x = pixel(px, width), let y = pixel(py, height) else {
                    throw IntegrationError(400, "context.result[\(index)] at (\(px)%, \(py)%) lies outside the image")
                }
                points.append((x, y, region["is_positive"]?.boolValue ?? false))
            case "rectanglelabels":
                guard let px = v["x"]?.doubleValue, let py = v["y"]?.doubleValue,
                      let pw = v["width"]?.doubleValue, let ph = v["height"]?.doubleValue, pw >= 0, ph >= 0 else {
                    throw IntegrationError(400, "context.result[\(index)].value needs numbers x, y, width, height (percent)")
                }
                guard let x0 = pixel(px, width), let y0 = pixel(py, height),
                      let x1 = pixel(min(100, px + pw), width), let y1 = pixel(min(100, py + ph), height),
                      px + pw <= 100.0001, py + ph <= 100.0001 else {
                    throw IntegrationError(400, "context.result[\(index)], the rectangle (\(px)%, \(py)%, \(pw)% × \(ph)%), "
                                           + "lies outside the image")
                }
                box = PixelBox(x0: x0, y0: y0, x1: x1, y1: y1)
            default:
                throw IntegrationError(400, "context.result[\(index)] has type '\(type)'; probattn takes keypointlabels "
                                       + "and rectanglelabels")
            }
        }
        return Prompt(taskID: task["id"]?.intValue, imageURL: imageURL, width: width, height: height, points: points,
                      box: box, label: label ?? "Object", fromName: fromName, toName: toName)
    }

    /// The session core's `predict` request for a prompt (object = class 0, background = class 1).
    static func request(_ prompt: Prompt, image: PromptRequest.Image, contentHash: String?) -> PromptRequest {
        let classes = ["object", "background"]
        let points = prompt.points.map { WireClick(x: $0.x, y: $0.y, className: $0.positive ? classes[0] : classes[1]) }
        switch image {
        case .bytes(let bytes):
            return PromptRequest(bytes: bytes, classes: classes, points: points, box: prompt.box, annotator: "label-studio")
        case .cached:
            return PromptRequest(contentHash: contentHash ?? "", classes: classes, points: points, box: prompt.box,
                                 annotator: "label-studio")
        }
    }

    /// The `/predict` reply: one prediction with one brushlabels region (the object class's pixels, in Label
    /// Studio's RLE), plus a `probattn` object with the content hash, whether the preparation was cached, whether
    /// the image was downloaded for this call, and the timings (the core's, plus `download` and `request_total`: the
    /// whole `/predict` from its arrival) (Label Studio passes the prediction on unchanged).
    static func reply(_ prompt: Prompt, _ result: PredictResult, downloaded: Bool, regionID: String) -> JSONValue {
        let foreground = result.mask.mask.labels.map { $0 == 0 }
        let region: JSONValue = [
            "id": .string(regionID), "from_name": .string(prompt.fromName), "to_name": .string(prompt.toName),
            "original_width": .int(result.width), "original_height": .int(result.height), "image_rotation": 0,
            "type": "brushlabels", "readonly": false,
            "value": ["format": "rle", "rle": .array(BrushRLE.encode(foreground, width: result.width,
                                                                      height: result.height).map(JSONValue.int)),
                      "brushlabels": [.string(prompt.label)]],
        ]
        let prediction: JSONValue = [
            "result": [region], "model_version": .string(modelVersion),
            "probattn": ["content_hash": .string(result.contentHash), "cached": .bool(result.cached),
                         "downloaded": .bool(downloaded),
                         "timings_ms": .object(result.timings.mapValues(JSONValue.ms)),
                         "pixels": .int(foreground.lazy.filter { $0 }.count)],
        ]
        return ["results": [prediction]]
    }

    /// label-studio-ml's error body (`exception_handler`): status, detail, request, result.
    static func error(_ status: Int, _ message: String) -> JSONValue {
        ["status": .int(status), "detail": .string(message), "request": [:], "result": [:]]
    }
}

/// Reads tags and their attributes out of a Label Studio labeling config (XML) without an XML library: enough for
/// `<Tag attr="value" …>`, which is all the config's tags are.
enum LabelConfigTags {
    static func all(_ name: String, in xml: String) -> [[String: String]] {
        var found: [[String: String]] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<" + name) {
            let after = rest[open.upperBound...]
            guard let next = after.first, next.isWhitespace || next == ">" || next == "/" else {
                rest = after
                continue
            }
            guard let close = after.firstIndex(of: ">") else { break }
            found.append(attributes(after[..<close]))
            rest = after[after.index(after: close)...]
        }
        return found
    }

    static func first(_ name: String, in xml: String) -> [String: String]? { all(name, in: xml).first }

    private static func attributes(_ text: Substring) -> [String: String] {
        var result: [String: String] = [:]
        var i = text.startIndex
        while i < text.endIndex {
            while i < text.endIndex, text[i].isWhitespace || text[i] == "/" { i = text.index(after: i) }
            let nameStart = i
            while i < text.endIndex, text[i] != "=", !text[i].isWhitespace { i = text.index(after: i) }
            let name = String(text[nameStart..<i])
            while i < text.endIndex, text[i].isWhitespace { i = text.index(after: i) }
            guard i < text.endIndex, text[i] == "=" else { continue }
            i = text.index(after: i)
            while i < text.endIndex, text[i].isWhitespace { i = text.index(after: i) }
            guard i < text.endIndex, text[i] == "\"" || text[i] == "'" else { continue }
            let quote = text[i]
            i = text.index(after: i)
            let valueStart = i
            while i < text.endIndex, text[i] != quote { i = text.index(after: i) }
            result[name] = String(text[valueStart..<i])
                .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
                .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
            if i < text.endIndex { i = text.index(after: i) }
        }
        return result
    }
}
