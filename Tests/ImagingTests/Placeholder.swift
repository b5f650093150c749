import Testing

@Test func ImagingTestsBuilds() { #expect(Bool(true)) }
