import Foundation
import ProbattnCore
import ProbattnReferenceCases
import Testing

/// The operator reproduces the reference layer's outputs on the probattn-case-v1 cases.
@Suite struct ReferenceCaseTests {
    /// Checks one case: within 2e-5·max(1, max|ref|) of v_updated_f64ref and finite; `extra_sharp_*` finite only.
    static func check(_ folder: URL, kernel: AttentionKernel) throws {
        let reference = try ReferenceCase.load(from: folder.path)
        let output = try reference.run { $0.kernel = kernel }
        #expect(output.shape == reference.outputShape, "\(reference.name)")
        #expect(output.isFinite, "\(reference.name): output holds NaN or infinity")
        if reference.name.hasPrefix("extra_sharp") { return }
        let expected = try #require(reference.referenceFloat64, "\(reference.name) has no v_updated_f64ref")
        let tolerance = try #require(reference.tolerance)
        let error = try output.maxAbsDifference(expected)
        #expect(error <= tolerance, "\(reference.name) [\(kernel)]: max abs error \(error) > \(tolerance)")
    }

    @Test("fixture cases (copied subset) match the reference", arguments: TestPaths.caseFolders(in: TestPaths.fixtures))
    func fixtureCase(_ folder: URL) throws {
        try Self.check(folder, kernel: .plain)
    }

    @Test("all shared reference cases match the reference (when ../shared is present)")
    func sharedCases() throws {
        guard let root = TestPaths.sharedReferenceCases else { return }
        let folders = TestPaths.caseFolders(in: root)
        #expect(folders.count == 15)
        for folder in folders { try Self.check(folder, kernel: .plain) }
    }

    @Test func fixtureSubsetIsSmall() throws {
        var total = 0
        let enumerator = FileManager.default.enumerator(atPath: TestPaths.fixtures.path)
        while let path = enumerator?.nextObject() as? String {
            let attributes = try FileManager.default.attributesOfItem(
                atPath: TestPaths.fixtures.appendingPathComponent(path).path)
            if attributes[.type] as? FileAttributeType == .typeRegular { total += (attributes[.size] as? Int) ?? 0 }
        }
        #expect(total <= 3_000_000)
        #expect(TestPaths.caseFolders(in: TestPaths.fixtures).count >= 8)
    }
}
