import Foundation
import ProbattnReferenceCases
import Testing

/// Malformed cases give clear errors (the `probattn attend` command reports them and exits non-zero).
@Suite struct ReferenceCaseReaderTests {
    /// A scratch copy of the smallest fixture case, edited by `edit`.
    static func corruptedCopy(_ edit: (URL) throws -> Void) throws -> URL {
        let source = TestPaths.fixtures.appendingPathComponent("softmax_c32_h256")
        let target = FileManager.default.temporaryDirectory
            .appendingPathComponent("probattn-case-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: source, to: target)
        try edit(target)
        return target
    }

    static func editManifest(_ folder: URL, _ change: (inout String) -> Void) throws {
        let url = folder.appendingPathComponent("manifest.json")
        var text = try String(contentsOf: url, encoding: .utf8)
        change(&text)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    @Test func missingFolder() {
        #expect(throws: ReferenceCaseError.self) { try ReferenceCase.load(from: "/nonexistent-probattn-case") }
    }

    @Test func missingInputFile() throws {
        let folder = try Self.corruptedCopy { try FileManager.default.removeItem(at: $0.appendingPathComponent("zeta.f32")) }
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: ReferenceCaseError.missingFile(folder.appendingPathComponent("zeta.f32").path)) {
            try ReferenceCase.load(from: folder.path)
        }
    }

    @Test func wrongByteCount() throws {
        let folder = try Self.corruptedCopy { folder in
            let url = folder.appendingPathComponent("mu.f32")
            let data = try Data(contentsOf: url)
            try data.prefix(data.count - 4).write(to: url)
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: ReferenceCaseError.wrongByteCount(file: "mu.f32", expected: 4096, actual: 4092)) {
            try ReferenceCase.load(from: folder.path)
        }
    }

    @Test func unknownFlag() throws {
        let folder = try Self.corruptedCopy { folder in
            try Self.editManifest(folder) {
                $0 = $0.replacingOccurrences(of: "\"magnitude_priors\"", with: "\"magnitude_prior_typo\"")
            }
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: ReferenceCaseError.unknownFlag("magnitude_prior_typo")) {
            try ReferenceCase.load(from: folder.path)
        }
    }

    @Test func malformedJSONAndMissingScalar() throws {
        let broken = try Self.corruptedCopy { folder in try Self.editManifest(folder) { $0 = String($0.prefix(40)) } }
        defer { try? FileManager.default.removeItem(at: broken) }
        #expect(throws: ReferenceCaseError.self) { try ReferenceCase.load(from: broken.path) }
        let noAlpha = try Self.corruptedCopy { folder in
            try Self.editManifest(folder) { $0 = $0.replacingOccurrences(of: "\"alpha\":", with: "\"alfa\":") }
        }
        defer { try? FileManager.default.removeItem(at: noAlpha) }
        #expect(throws: ReferenceCaseError.self) { try ReferenceCase.load(from: noAlpha.path) }
    }

    @Test func float32FilesRoundTrip() {
        let values: [Float] = [0, -1.5, .pi, 1e-30, -.greatestFiniteMagnitude]
        let data = Float32File.encode(values)
        #expect(data.count == 20)
        #expect(Array(data.prefix(8)) == [0, 0, 0, 0, 0, 0, 0xC0, 0xBF])
        #expect(Float32File.decode(data) == values)
    }
}
