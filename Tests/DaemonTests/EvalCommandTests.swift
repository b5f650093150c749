import Foundation
import ProbattnImaging
import ProbattnJSON
import Testing

/// `probattn eval --dataset folder` as a user runs it: the real binary on a generated folder.
@Suite struct EvalCommandTests {
    private func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try DaemonProcess.runProduct("probattn", arguments)
    }

    @Test func aFolderOfOwnImagesIsEvaluatedAndReported() throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/images", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/masks", withIntermediateDirectories: true)
        for seed in [UInt8(1), 2] {
            try ImageEncoding.write(try TestImages.png(seed: seed), toPath: folder + "/images/photo\(seed).png")
            var grey = [UInt8](repeating: 0, count: TestImages.width * TestImages.height * 3)
            for y in 0..<TestImages.height {
                for x in 0..<TestImages.width where TestImages.inside(x, y) {
                    for c in 0..<3 { grey[(y * TestImages.width + x) * 3 + c] = 1 }
                }
            }
            try ImageEncoding.write(try ImageEncoding.png(RGBImage(width: TestImages.width, height: TestImages.height,
                                                                   pixels: grey)),
                                    toPath: folder + "/masks/photo\(seed).png")
        }
        let (status, output) = try run(["eval", "--dataset", "folder", "--images", folder + "/images",
                                        "--masks", folder + "/masks", "--max-clicks", "3", "--report",
                                        folder + "/report"])
        #expect(status == 0, "\(output)")
        let summary = try JSONValue.parse(Array(Data(contentsOf: URL(fileURLWithPath: folder + "/report/summary.json"))))
        #expect(summary?["images"] == 2 && summary?["dataset"] == "folder")
        #expect((summary?["miou_at"]?.arrayValue?.first?.doubleValue ?? 0) > 0.9, "one click segments the rectangle")

        let (both, message) = try run(["eval", "--dataset", "folder", "--images", folder + "/images", "--masks",
                                       folder + "/masks", "--object-value", "1", "--instances"])
        #expect(both != 0 && message.contains("exclude each other"), "\(message)")
        let (noRoot, rootMessage) = try run(["eval", "--dataset", "grabcut"])
        #expect(noRoot != 0 && rootMessage.contains("--root"), "\(rootMessage)")
    }
}

/// Every shipped config runs: `probattn eval --config FILE` on two GrabCut images, three clicks each.
@Suite struct ShippedConfigsRun {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    @Test func everyFileInConfigValidatesAndEvaluates() throws {
        let root = EvalReplayTests.grabCutRoot
        guard FileManager.default.fileExists(atPath: root) else {
            Issue.record("GrabCut is not at \(root): this test needs ../shared beside the repository")
            return
        }
        let config = Self.repository.appendingPathComponent("Config")
        let examples = try FileManager.default.contentsOfDirectory(atPath: config.path + "/examples")
            .filter { $0.hasSuffix(".yaml") }.sorted().map { config.path + "/examples/" + $0 }
        #expect(examples.count >= 7)
        for file in [config.path + "/probattnd.yaml"] + examples {
            let (status, output) = try DaemonProcess.runProduct("probattn", [
                "eval", "--dataset", "grabcut", "--root", root, "--limit", "2", "--max-clicks", "3", "--config", file])
            #expect(status == 0, "\((file as NSString).lastPathComponent): \(output)")
            #expect(output.contains("grabcut (all): 2 images"), "\(output)")
            #expect(!output.contains("deprecated"), "\((file as NSString).lastPathComponent) uses the flat form")
        }
    }
}
