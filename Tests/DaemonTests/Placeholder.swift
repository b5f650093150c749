import Testing

@Test func DaemonTestsBuilds() { #expect(Bool(true)) }
