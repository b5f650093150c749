import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the image files of a path-mode store (`store.image_bytes: path`) may be: inside one folder, the image root.
/// `SessionCore` calls `resolve` when `open_image` gives a `source_path` (a path outside is `bad_request`) and again
/// before it re-reads a stored path, so a file swapped for a symlink later cannot lead out either.
public enum ImagePaths {
    /// The real path (every symlink resolved) of `path`, when it names an existing regular file inside the real path
    /// of `root`; nil when it does not exist, is not a regular file, or lies outside (through `..` or a symlink).
    /// A relative `path` is taken relative to `root`. The same nil for every reason, so a client cannot learn
    /// whether a file outside the root exists.
    public static func resolve(_ path: String, inside root: String) -> String? {
        guard !path.isEmpty, !path.utf8.contains(0), let realRoot = realPath(root) else { return nil }
        let candidate = path.hasPrefix("/") ? path : (realRoot.hasSuffix("/") ? realRoot : realRoot + "/") + path
        guard let real = realPath(candidate) else { return nil }
        let prefix = realRoot.hasSuffix("/") ? realRoot : realRoot + "/"
        guard real.hasPrefix(prefix) else { return nil }
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return real
    }

    /// `realpath(3)`: the absolute path with every symlink, `.` and `..` resolved; nil when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
