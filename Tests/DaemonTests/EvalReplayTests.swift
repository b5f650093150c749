import Foundation
import ProbattnClient
import ProbattnEvaluation
import ProbattnImaging
import ProbattnJSON
import ProbattnSession
import Testing

/// `probattn eval` and the daemon run one click path (the session core): replaying an eval run's click sequences
/// through the real daemon binary gives the same mask at every click, pixel for pixel.
@Suite("Eval replayed through the daemon")
struct EvalReplayTests {
    /// `../shared/datasets/GrabCut` beside the repository (CI lays `../shared` there).
    static var grabCutRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/datasets/GrabCut").path
    }

    @Test func fiveGrabCutImagesGiveTheSameMasksThroughTheDaemon() throws {
        let root = Self.grabCutRoot
        guard FileManager.default.fileExists(atPath: root) else {
            Issue.record("GrabCut is not at \(root): this test needs ../shared beside the repository")
            return
        }
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }

        // 1. The eval run: 5 images, 20 clicks each, final masks saved.
        let report = daemon.folder + "/report"
        let (status, printed) = try DaemonProcess.runProduct("probattn", [
            "eval", "--dataset", "grabcut", "--root", root, "--limit", "5", "--max-clicks", "20", "--report", report,
            "--save-masks"])
        try #require(status == 0, "probattn eval failed:\n\(printed)")
        let results = try JSONDecoder().decode([InstanceResult].self,
                                               from: Data(contentsOf: URL(fileURLWithPath: report + "/instances.json")))
        let summary = try JSONValue.parse(Array(Data(contentsOf: URL(fileURLWithPath: report + "/summary.json"))))
        #expect(summary?["clicked_class_kept"]?.doubleValue == 1.0, "every click in force kept its class")
        #expect(results.count == 5)

        // 2. The same click sequences through the daemon, one feedback per click.
        let instances = Array(try BenchmarkDataset.instances(.grabcut, root: root).prefix(5))
        let client = try daemon.client(timeout: 120)
        for (instance, result) in zip(instances, results) {
            #expect(instance.name == result.name)
            let truth = try GroundTruthMask.load(path: instance.maskPath, rule: instance.maskRule)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: instance.imagePath)))
            try client.openImage(instance.name, bytes: bytes).checked()
            var last: [Bool] = []
            for (step, click) in result.clicks.enumerated() {
                let reply = try client.feedback(instance.name, annotator: "eval", clicks: [
                    WireClick(x: click.x, y: click.y, className: click.isPositive ? "object" : "background"),
                ]).checked()
                last = try reply.binaryMask()
                let iou = ClickMetrics.iou(truth: truth, prediction: last)
                #expect(iou == result.ious[step], "\(instance.name) click \(step + 1): IoU \(iou) through the daemon, \(result.ious[step]) in eval")
            }
            // The final mask, pixel for pixel, against the one eval saved.
            let saved = try JSONValue.parse(Array(Data(contentsOf: URL(fileURLWithPath: report + "/masks/\(instance.name).rle.json"))))
            let savedMask = try COCORLE(size: [truth.height, truth.width],
                                        counts: saved?["counts"]?.stringValue ?? "").decodeBinary()
            let differing = zip(savedMask, last).filter { $0 != $1 }.count
            #expect(differing == 0, "\(instance.name): \(differing) pixels differ from eval's final mask")
            try client.closeImage(instance.name).checked()
        }
    }
}
