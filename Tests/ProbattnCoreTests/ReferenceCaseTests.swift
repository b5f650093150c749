import Foundation
import ProbattnCore
import ProbattnReferenceCases
import Testing

/// The operator reproduces the reference layer's outputs on the probattn-case-v1 cases.
@Suite struct ReferenceCaseTests {
    /// Checks one case: within 2e-5·max(1, max|ref|) of v_updated_f64ref and finite; `extra_sharp_*` finite only.
    static func check(_ folder: URL, kernel: AttentionKernel) throws {
        let reference = try ReferenceCase.load(from: folder.path)
        if kernel == .blocked && !blockedCovers(reference) {
            #expect(throws: ProbattnCoreError.self) { try reference.run { $0.kernel = .blocked } }
            return
        }
        let output = try reference.run { $0.kernel = kernel }
        #expect(output.shape == reference.outputShape, "\(reference.name)")
        #expect(output.isFinite, "\(reference.name): output holds NaN or infinity")
        if reference.name.hasPrefix("extra_sharp") { return }
        let expected = try #require(reference.referenceFloat64, "\(reference.name) has no v_updated_f64ref")
        let tolerance = try #require(reference.tolerance)
        let error = try output.maxAbsDifference(expected)
        #expect(error <= tolerance, "\(reference.name) [\(kernel)]: max abs error \(error) > \(tolerance)")
    }

    /// The blocked kernel covers every input but π, positional embeddings and weight masks.
    static func blockedCovers(_ reference: ReferenceCase) -> Bool {
        let i = reference.inputs
        return i.pi == nil && i.qPosEmb == nil && i.zetaPosEmb == nil && i.vPosEmb == nil && i.nonzeroWeightsMask == nil
    }

    @Test("fixture cases (copied subset) match the reference, plain and blocked",
          arguments: TestPaths.caseFolders(in: TestPaths.fixtures), [AttentionKernel.plain, .blocked])
    func fixtureCase(_ folder: URL, kernel: AttentionKernel) throws {
        try Self.check(folder, kernel: kernel)
    }

    @Test("all shared reference cases match the reference (when ../shared is present)")
    func sharedCases() throws {
        guard let root = TestPaths.sharedReferenceCases else { return }
        let folders = TestPaths.caseFolders(in: root)
        #expect(folders.count == 15)
        for folder in folders {
            try Self.check(folder, kernel: .plain)
            try Self.check(folder, kernel: .blocked)
        }
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
