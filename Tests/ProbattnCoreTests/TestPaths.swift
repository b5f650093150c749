import Foundation

/// Paths the tests use, found from this file's location (never absolute paths of a machine).
enum TestPaths {
    /// The repository root (this file is `Tests/ProbattnCoreTests/TestPaths.swift`).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The copied subset of reference cases that runs everywhere.
    static let fixtures: URL = repositoryRoot.appendingPathComponent("Tests/Fixtures/probattn")

    /// `../shared/reference/probattn` next to the repository, when present.
    static var sharedReferenceCases: URL? {
        let url = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/reference/probattn")
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url : nil
    }

    /// The case folders (those with a manifest.json) under `root`, sorted by name.
    static func caseFolders(in root: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.sorted().map { root.appendingPathComponent($0) }
            .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
    }
}
