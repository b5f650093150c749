import Foundation
import ProbattnConfig
import ProbattnImaging
import ProbattnJSON
import ProbattnSession
import Testing
@testable import ProbattnDaemon

/// Decoding Label Studio's `/predict` body into a prompt (docs/INTEGRATIONS.md).
@Suite struct LabelStudioBackendTests {
    static func body(_ regions: [JSONValue], config: String = LabelStudioBodies.config) -> JSONValue {
        ["tasks": [["id": 7, "data": ["image": "/data/upload/1/x.png"]]], "label_config": .string(config),
         "params": ["context": ["result": .array(regions)]]]
    }

    static func region(_ type: String, _ value: [String: JSONValue], positive: Bool? = nil) -> JSONValue {
        var fields: [String: JSONValue] = ["type": .string(type), "original_width": 200, "original_height": 100,
                                           "value": .object(value)]
        if let positive { fields["is_positive"] = .bool(positive) }
        return .object(fields)
    }

    @Test func keypointsAndABox() throws {
        let prompt = try LabelStudioBackend.prompt(Self.body([
            Self.region("keypointlabels", ["x": 50, "y": 50, "keypointlabels": ["Object"]], positive: true),
            Self.region("keypointlabels", ["x": 100, "y": 0.99, "keypointlabels": ["Object"]]),
            Self.region("rectanglelabels", ["x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["Car"]]),
        ]))
        #expect(prompt.taskID == 7 && prompt.imageURL == "/data/upload/1/x.png")
        #expect(prompt.width == 200 && prompt.height == 100)
        // pixel = min(W - 1, floor(x * W / 100)); a missing is_positive is a background point.
        #expect(prompt.points.map { [$0.x, $0.y, $0.positive ? 1 : 0] } == [[100, 50, 1], [199, 0, 0]])
        #expect(prompt.box == PixelBox(x0: 20, y0: 20, x1: 80, y1: 60))
        #expect(prompt.label == "Car", "the last region's label")
        #expect(prompt.fromName == "tag" && prompt.toName == "image")
    }

    @Test func badContextsAreErrors() throws {
        let cases: [(JSONValue, String)] = [
            (Self.body([]), "context is empty"),
            (Self.body([Self.region("keypointlabels", ["x": 101, "y": 5], positive: true)]), "outside"),
            (Self.body([Self.region("polygonlabels", ["points": []])]), "polygonlabels"),
            (Self.body([Self.region("keypointlabels", ["x": 1, "y": 1])], config: "<View><Image name=\"image\" value=\"$image\"/></View>"),
             "BrushLabels"),
            (["tasks": []], "tasks"),
        ]
        for (body, words) in cases {
            do {
                _ = try LabelStudioBackend.prompt(body)
                Issue.record("accepted: \(body)")
            } catch let error as IntegrationError {
                #expect(error.status == 400)
                #expect(error.message.contains(words), "\(error.message)")
            }
        }
    }

    @Test func onlyLabelStudiosHostIsFetched() throws {
        let client = LabelStudioClient(settings: .init(), maxBytes: 1 << 20,
                                       environment: ["LABEL_STUDIO_URL": "http://ls.example:8080"])
        #expect(try client.resolve("/data/upload/1/a.png").absoluteString == "http://ls.example:8080/data/upload/1/a.png")
        #expect(try client.resolve("http://LS.example:8080/data/x.png").host?.lowercased() == "ls.example")
        for refused in ["http://ls.example:8081/a.png", "https://ls.example:8080/a.png", "http://other/a.png",
                        "file:///etc/passwd", "upload/1/a.png", "s3://bucket/a.png"] {
            #expect(throws: IntegrationError.self, "\(refused)") { try client.resolve(refused) }
        }
        // The config wins over /setup, which wins over the environment.
        client.setUp(hostname: "http://setup.example", token: "t")
        #expect(client.baseURL == "http://setup.example" && client.token == "t")
        var settings = DaemonConfig.LabelStudio()
        settings.url = "http://config.example"
        let configured = LabelStudioClient(settings: settings, maxBytes: 1, environment: ["LABEL_STUDIO_URL": "http://env"])
        configured.setUp(hostname: "http://setup.example", token: nil)
        #expect(configured.baseURL == "http://config.example")
    }

    @Test func personalAccessTokensAreRecognised() {
        // header.payload.signature with payload {"token_type":"refresh","exp":9999999999}.
        let payload = Data(#"{"token_type":"refresh","exp":9999999999}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "")
        #expect(LabelStudioClient.jwtClaims("eyJhbGciOiJIUzI1NiJ9.\(payload).c2ln")?["token_type"]?.stringValue == "refresh")
        #expect(LabelStudioClient.jwtClaims("0123456789abcdef0123456789abcdef01234567") == nil)
    }
}

/// CVAT's reply, written directly, is the same JSON as built from values.
@Suite struct CVATReplyTests {
    @Test func directJSONEqualsTheValueEncoding() throws {
        let w = 7, h = 5
        var labels = [UInt8](repeating: 1, count: w * h)
        for (x, y) in [(2, 1), (3, 1), (3, 2), (5, 3)] { labels[y * w + x] = 0 }
        let mask = EncodedMask(LabelMask(width: w, height: h, labels: labels), classes: ["object", "background"])
        let result = PredictResult(contentHash: "sha256:x", width: w, height: h, classes: ["object", "background"],
                                   mask: mask, cached: true, points: [], box: nil, timings: [:])
        let direct = try #require(CVATInteractor.reply(result))
        #expect(direct == CVATInteractor.replyValue(result))
        #expect(direct["bounds"] == [2, 1, 5, 3])
        #expect(direct["mask"] == [[255, 255, 0, 0], [0, 255, 0, 0], [0, 0, 0, 255]])
        let empty = PredictResult(contentHash: "sha256:x", width: w, height: h, classes: ["object", "background"],
                                  mask: EncodedMask(LabelMask(width: w, height: h, filledWith: 1), classes: ["object", "background"]),
                                  cached: true, points: [], box: nil, timings: [:])
        #expect(CVATInteractor.reply(empty) == nil)
    }
}
