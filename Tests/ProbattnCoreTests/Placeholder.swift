import Testing

@Test func ProbattnCoreTestsBuilds() { #expect(Bool(true)) }
