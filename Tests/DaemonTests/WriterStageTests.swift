import Foundation
import ProbattnClient
import ProbattnConfig
import ProbattnDaemon
import ProbattnSession
import ProbattnStages
import Testing

/// The config's `role: writer` stage selects the writer the daemon commits to, through its descriptor.
@Suite("Writer stage")
struct WriterStageTests {
    static let memoryPipeline = """
        pipeline:
          - {role: encoder, type: grid_features}
          - {role: adapter, type: attention}
          - {role: propagator, type: belief_propagation}
          - {role: writer, type: memory, options: {keep_every_version: false}}
        """

    @Test func theMemoryWriterServesWithoutADatabaseAndResumesNothing() throws {
        let daemon = try DaemonProcess(extraYAML: Self.memoryPipeline)
        try daemon.start()
        let client = try daemon.client()
        try client.openImage("img", bytes: try TestImages.png(), annotator: "alice").checked()
        let reply = try client.feedback("img", annotator: "alice",
                                        clicks: [WireClick(x: 80, y: 60, className: "object")]).checked()
        #expect(reply.version == 1)
        #expect(try reply.binaryMask()[60 * TestImages.width + 80])
        #expect(daemon.waitForLog("blas_threads"))
        daemon.stop()
        #expect(!FileManager.default.fileExists(atPath: daemon.storePath), "the memory writer opens no database")

        // The same config again: the sessions were in the process only.
        let again = try DaemonProcess(extraYAML: Self.memoryPipeline, folder: daemon.folder)
        try again.start()
        defer { again.stop() }
        #expect(try again.client().request("list_sessions").checked()["sessions"] == [])
    }

    @Test func theDaemonsWritersAreSQLiteAndMemory() throws {
        #expect(DaemonStages.writers.typeNames == ["sqlite", "memory"])
        #expect(DaemonConfig.defaultWriter.type == DaemonStages.writers.typeNames[0])
        #expect(throws: SegmentationError.self) {
            try DaemonStages.writers.validate(StageSpec(role: .writer, type: "sqlite", options: ["path": .string("x")]))
        }
    }
}
