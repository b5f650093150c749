import Testing

@Test func SegmentationTestsBuilds() { #expect(Bool(true)) }
