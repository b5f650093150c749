import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The web annotator's static files (the repository's `Web/` folder): served at `/` of the HTTP listener.
///
/// Only files directly in the folder are served (the page is three files and needs nothing else); a name with `/`,
/// `..` or a NUL, or one that resolves outside the folder, is not found.
public struct WebFiles: Sendable, Equatable {
    /// The folder, with symlinks resolved.
    public let root: String

    public init(root: String) { self.root = WebFiles.realPath(root) ?? root }

    /// The folder to serve: `configured` (`http.web_root`) when given; else `$PROBATTN_WEB_ROOT`; else the installed
    /// `<executable>/../share/probattn/web` (`make install`); else `Web/` in the source tree the executable was built
    /// in (the nearest ancestor of the executable's folder holding `Web/index.html`, as for `make run`). `nil` when
    /// none holds an `index.html`.
    public static func locate(configured: String?,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              executable: String = WebFiles.executablePath) -> WebFiles? {
        if let configured, !configured.isEmpty { return WebFiles(root: configured) }
        var candidates: [String] = []
        if let variable = environment[environmentVariable], !variable.isEmpty { candidates.append(variable) }
        let bin = (realPath(executable) ?? executable) as NSString
        let folder = bin.deletingLastPathComponent
        candidates.append(((folder as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("share/probattn/web"))
        var ancestor = folder
        for _ in 0..<6 {
            candidates.append((ancestor as NSString).appendingPathComponent("Web"))
            let parent = (ancestor as NSString).deletingLastPathComponent
            if parent == ancestor { break }
            ancestor = parent
        }
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate + "/index.html") {
            return WebFiles(root: candidate)
        }
        return nil
    }

    public static let environmentVariable = "PROBATTN_WEB_ROOT"

    public static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The file for a request path (`/` is `index.html`), with its content type; `nil` when there is none.
    public func file(forPath path: String) -> (bytes: [UInt8], contentType: String)? {
        let name = path == "/" || path.isEmpty ? "index.html" : String(path.drop(while: { $0 == "/" }))
        guard FolderNames.isPlain(name), let real = FolderNames.resolveInside(root, name),
              FolderNames.isRegularFile(real), let data = FileManager.default.contents(atPath: real) else { return nil }
        return ([UInt8](data), Self.contentType(of: name))
    }

    static func contentType(of name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "html": return "text/html; charset=utf-8"
        case "js": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "json": return "application/json"
        default: return "application/octet-stream"
        }
    }

    static func realPath(_ path: String) -> String? { FolderNames.realPath(path) }
}

/// `http.image_folder`: a folder of images the page lists and opens by name.
///
/// The listing holds only the regular files directly in the folder whose bytes start like a PNG, JPEG or BMP file
/// (symlinks count when they resolve to such a file inside the folder). A name containing `/` or `..` (or a NUL, or
/// empty), or one that resolves outside the folder, is a `badName`; a plain name that is missing or not an image
/// file is `notFound`.
public struct ImageFolder: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let bytes: Int
        public let contentType: String
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case badName(String)
        case notFound(String)
        case unreadable(String)

        public var code: String {
            switch self {
            case .badName: return "bad_request"
            case .notFound: return "not_found"
            case .unreadable: return "internal"
            }
        }

        /// The HTTP status of the gateway's error reply.
        public var status: Int {
            switch self {
            case .badName: return 400
            case .notFound: return 404
            case .unreadable: return 500
            }
        }

        public var description: String {
            switch self {
            case .badName(let name): return "image name \(Self.quoted(name)) is not a plain file name of the image folder"
            case .notFound(let name): return "no image \(Self.quoted(name)) in the image folder"
            case .unreadable(let reason): return "the image folder cannot be read: \(reason)"
            }
        }

        static func quoted(_ name: String) -> String {
            "\"" + (name.count > 80 ? String(name.prefix(80)) + "…" : name) + "\""
        }
    }

    /// The configured folder (as written) and its real path.
    public let path: String
    public let root: String

    public init(path: String) {
        self.path = path
        root = FolderNames.realPath(path) ?? path
    }

    /// The image files directly in the folder, sorted by name.
    public func list() throws(Failure) -> [Entry] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: root) } catch {
            throw .unreadable("\(path): \(error.localizedDescription)")
        }
        return names.sorted().compactMap { name in
            guard FolderNames.isPlain(name), let real = FolderNames.resolveInside(root, name),
                  FolderNames.isRegularFile(real), let type = Self.imageType(ofFile: real) else { return nil }
            return Entry(name: name, bytes: FolderNames.size(real), contentType: type)
        }
    }

    /// The bytes of one image of the listing, with its content type.
    public func read(name: String) throws(Failure) -> (bytes: [UInt8], contentType: String) {
        guard FolderNames.isPlain(name) else { throw .badName(name) }
        let candidate = (root as NSString).appendingPathComponent(name)
        guard let real = FolderNames.realPath(candidate) else { throw .notFound(name) }
        guard FolderNames.isInside(real, root) else { throw .badName(name) }
        guard FolderNames.isRegularFile(real), let type = Self.imageType(ofFile: real),
              let data = FileManager.default.contents(atPath: real) else { throw .notFound(name) }
        return ([UInt8](data), type)
    }

    /// The content type of a PNG, JPEG or BMP file by its first bytes; `nil` for anything else.
    static func imageType(ofFile path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "image/png" }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if head.starts(with: [0x42, 0x4D]) { return "image/bmp" }
        return nil
    }
}

/// File-name checks shared by the static files and the image folder.
enum FolderNames {
    /// A non-empty name without `/`, NUL or `..`, and not `.`.
    static func isPlain(_ name: String) -> Bool {
        !name.isEmpty && name != "." && !name.contains("/") && !name.contains("..") && !name.contains("\0")
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isInside(_ real: String, _ root: String) -> Bool {
        real.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    /// The real path of `root/name` when it resolves inside `root`.
    static func resolveInside(_ root: String, _ name: String) -> String? {
        guard let real = realPath((root as NSString).appendingPathComponent(name)), isInside(real, root) else {
            return nil
        }
        return real
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    static func size(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }
}
