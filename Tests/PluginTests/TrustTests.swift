// Trusted plugins only: a plugin folder or file that someone else could have written, or a symlink leading out of
// the folder, is refused before dlopen, so the library's constructor never runs.

import Foundation
import ProbattnPluginHost
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A valid plugin whose constructor writes `marker` when the library is loaded.
private func markerPlugin(variant: String, marker: String) -> String {
    """
    #include <stdio.h>
    #include "probattn_plugin.h"
    __attribute__((constructor)) static void loaded(void) {
        FILE *f = fopen("\(marker)", "w");
        if (f) { fputs("loaded\\n", f); fclose(f); }
    }
    const uint32_t probattn_plugin_abi_version = PROBATTN_PLUGIN_ABI_VERSION;
    static int32_t attend(const probattn_attend_input *in, probattn_attend_output *out) { return 0; }
    static const probattn_variant variant = {"\(variant)", "writes a marker when loaded", NULL, 0, 0, attend};
    int32_t probattn_plugin_register(const probattn_registrar *r) { return r->register_variant(r->host, &variant); }
    """
}

@Suite struct TrustTests {
    /// A folder with one compiled marker plugin; the constructor's marker file goes into the same folder.
    private func folderWithMarkerPlugin(_ name: String) throws -> (folder: URL, marker: String) {
        let folder = try makeTemporaryDirectory()
        chmod(folder.path, 0o755)
        let marker = folder.appendingPathComponent("\(name).marker").path
        try compileSharedObject(markerPlugin(variant: name, marker: marker), named: "lib\(name).so", in: folder)
        chmod(folder.appendingPathComponent("lib\(name).so").path, 0o755)
        return (folder, marker)
    }

    @Test func aTrustedPluginLoadsAndItsConstructorRuns() throws {
        let (folder, marker) = try folderWithMarkerPlugin("trusted_marker")
        defer { try? FileManager.default.removeItem(at: folder) }
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.failures.isEmpty, "\(registry.failures)")
        #expect(registry.variantNames == ["trusted_marker"])
        #expect(FileManager.default.fileExists(atPath: marker), "the control case: loading runs the constructor")
    }

    @Test func aWorldWritableFolderLoadsNothing() throws {
        let (folder, marker) = try folderWithMarkerPlugin("world_folder_marker")
        defer { try? FileManager.default.removeItem(at: folder) }
        chmod(folder.path, 0o777)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.variants.isEmpty)
        #expect(registry.failures.count == 1, "\(registry.failures)")
        let line = registry.failures.first?.description ?? ""
        #expect(line.hasPrefix(folder.path) && line.contains("world-writable (mode 0777)"), "\(line)")
        #expect(!line.contains("\n"))
        #expect(!FileManager.default.fileExists(atPath: marker), "the constructor did not run")
    }

    @Test func aGroupWritableFileIsRefused() throws {
        let (folder, marker) = try folderWithMarkerPlugin("group_file_marker")
        defer { try? FileManager.default.removeItem(at: folder) }
        chmod(folder.appendingPathComponent("libgroup_file_marker.so").path, 0o775)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.variants.isEmpty)
        #expect(registry.failures.map(\.description)
                == ["libgroup_file_marker.so: refused before loading: the file is group-writable (mode 0775); it must not be writable by group or others"])
        #expect(!FileManager.default.fileExists(atPath: marker), "the constructor did not run")
    }

    @Test func aSymlinkOutOfTheFolderIsRefused() throws {
        // The library itself lies in /tmp, outside the plugin folder; the folder holds only a symlink to it.
        let (elsewhere, marker) = try folderWithMarkerPlugin("symlink_marker")
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let target = elsewhere.appendingPathComponent("libsymlink_marker.so").path
        #expect(target.hasPrefix(FileManager.default.temporaryDirectory.path))
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        chmod(folder.path, 0o755)
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("liblinked.so").path,
                                                   withDestinationPath: target)
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.variants.isEmpty)
        #expect(registry.failures.count == 1, "\(registry.failures)")
        let line = registry.failures.first?.description ?? ""
        #expect(line.hasPrefix("liblinked.so: refused before loading: a symlink resolving outside the plugin folder"),
                "\(line)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the constructor did not run")
    }

    @Test func aSymlinkInsideTheFolderLoads() throws {
        let (folder, _) = try folderWithMarkerPlugin("inside_link_marker")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("versions"),
                                                withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: folder.appendingPathComponent("libinside_link_marker.so"),
                                         to: folder.appendingPathComponent("versions/libinside_link_marker.so.1"))
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("libinside_link_marker.so").path,
                                                   withDestinationPath: "versions/libinside_link_marker.so.1")
        let registry = PluginRegistry.load(directory: folder.path)
        #expect(registry.failures.isEmpty, "\(registry.failures)")
        #expect(registry.variantNames == ["inside_link_marker"])
    }
}
