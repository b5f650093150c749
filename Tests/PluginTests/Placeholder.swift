import Testing

@Test func PluginTestsBuilds() { #expect(Bool(true)) }
