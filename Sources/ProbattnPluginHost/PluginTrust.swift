// Which plugin files may be opened at all: dlopen runs a library's constructors before any ABI check, so a file
// that someone other than root or the daemon's user could have written must never reach it.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The trust check `PluginRegistry.load` runs on the plugin folder and on every `*.so` file in it, before `dlopen`.
/// The folder and each file (not their parents) must be owned by root or the process's effective user and carry no
/// group or other write bit; a symlink (the folder itself may be one) is followed, and a file's must resolve to a
/// regular file inside the folder. Each refusal is one line for operators.
enum PluginTrust {
    /// The folder's real path when it may be loaded from; else why not.
    static func checkFolder(_ directory: String) -> Result<String, PluginLoadFailure> {
        guard let real = realPath(directory) else {
            return .failure(PluginLoadFailure(file: directory, reason: "the plugin folder does not exist"))
        }
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            return .failure(PluginLoadFailure(file: directory, reason: "the plugin folder is not a folder"))
        }
        if let problem = untrusted(info, what: "the plugin folder") {
            return .failure(PluginLoadFailure(file: directory, reason: "refused, nothing loaded: " + problem))
        }
        return .success(real)
    }

    /// The real path to open for `file` (a name inside `folder`, the folder's real path), or why it is refused.
    static func checkFile(_ file: String, inFolder folder: String) -> Result<String, PluginLoadFailure> {
        let path = (folder as NSString).appendingPathComponent(file)
        func refuse(_ reason: String) -> Result<String, PluginLoadFailure> {
            .failure(PluginLoadFailure(file: file, reason: "refused before loading: " + reason))
        }
        guard let real = realPath(path) else { return refuse("a symlink to a missing file") }
        guard real.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") else {
            return refuse("a symlink resolving outside the plugin folder (to \(real))")
        }
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return refuse("not a regular file") }
        if let problem = untrusted(info, what: "the file") { return refuse(problem) }
        return .success(real)
    }

    /// Why an owner or mode is not trusted, or nil.
    private static func untrusted(_ info: stat, what: String) -> String? {
        let owner = info.st_uid, user = geteuid()
        guard owner == 0 || owner == user else {
            return "\(what) is owned by uid \(owner); it must be owned by root or the daemon's user (uid \(user))"
        }
        let mode = info.st_mode & 0o7777
        let octal = "0" + String(mode, radix: 8)
        if mode & S_IWOTH != 0 {
            return "\(what) is world-writable (mode \(octal)); it must not be writable by group or others"
        }
        if mode & S_IWGRP != 0 {
            return "\(what) is group-writable (mode \(octal)); it must not be writable by group or others"
        }
        return nil
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
