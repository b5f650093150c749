import Foundation
import ProbattnConfig
import ProbattnDaemon
import ProbattnJSON
import Testing

/// `http.image_folder` and the web annotator's static files, on real files in a temporary folder.
@Suite struct WebFilesTests {
    /// A folder with two images, a text file, a subfolder with an image, a symlink to an image inside and one to an
    /// image outside, a dangling symlink and a file whose name ends in .png but that is not an image.
    final class Fixture {
        let base = DaemonProcess.makeTemporaryFolder()
        var folder: String { base + "/images" }

        init() throws {
            let fm = FileManager.default
            try fm.createDirectory(atPath: folder + "/nested", withIntermediateDirectories: true)
            let png = try TestImages.png()
            let jpegHead: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 0x4A, 0x46]
            _ = fm.createFile(atPath: folder + "/a.png", contents: Data(png))
            _ = fm.createFile(atPath: folder + "/b photo.jpg", contents: Data(jpegHead))
            _ = fm.createFile(atPath: folder + "/notes.txt", contents: Data("not an image".utf8))
            _ = fm.createFile(atPath: folder + "/fake.png", contents: Data("not a png".utf8))
            _ = fm.createFile(atPath: folder + "/nested/c.png", contents: Data(png))
            _ = fm.createFile(atPath: base + "/outside.png", contents: Data(png))
            try fm.createSymbolicLink(atPath: folder + "/inside-link.png", withDestinationPath: folder + "/a.png")
            try fm.createSymbolicLink(atPath: folder + "/outside-link.png", withDestinationPath: base + "/outside.png")
            try fm.createSymbolicLink(atPath: folder + "/dangling.png", withDestinationPath: base + "/missing.png")
        }

        deinit { try? FileManager.default.removeItem(atPath: base) }
    }

    @Test func listingHoldsOnlyTheImageFilesDirectlyInTheFolder() throws {
        let fixture = try Fixture()
        let listing = try ImageFolder(path: fixture.folder).list()
        #expect(listing.map(\.name) == ["a.png", "b photo.jpg", "inside-link.png"])
        #expect(listing.map(\.contentType) == ["image/png", "image/jpeg", "image/png"])
        #expect(listing[0].bytes == (try TestImages.png()).count)
    }

    @Test func readsAListedImage() throws {
        let fixture = try Fixture()
        let folder = ImageFolder(path: fixture.folder)
        let image = try folder.read(name: "a.png")
        #expect(image.bytes == (try TestImages.png()) && image.contentType == "image/png")
        #expect(try folder.read(name: "b photo.jpg").contentType == "image/jpeg")
        #expect(try folder.read(name: "inside-link.png").bytes == image.bytes)
    }

    @Test(arguments: ["nested/c.png", "../outside.png", "..", ".", "", "a.png/..", "x..y.png", "/etc/passwd",
                      "outside-link.png"])
    func refusesNamesWithSlashesDotsOrResolvingOutside(name: String) throws {
        let fixture = try Fixture()
        #expect(throws: ImageFolder.Failure.badName(name)) { try ImageFolder(path: fixture.folder).read(name: name) }
        #expect(ImageFolder.Failure.badName(name).status == 400)
    }

    @Test func refusesANameWithANul() throws {
        let fixture = try Fixture()
        #expect(throws: ImageFolder.Failure.badName("a\u{0}.png")) {
            try ImageFolder(path: fixture.folder).read(name: "a\u{0}.png")
        }
    }

    @Test(arguments: ["missing.png", "notes.txt", "fake.png", "nested", "dangling.png"])
    func aPlainNameThatIsNoImageIsNotFound(name: String) throws {
        let fixture = try Fixture()
        #expect(throws: ImageFolder.Failure.notFound(name)) { try ImageFolder(path: fixture.folder).read(name: name) }
        #expect(ImageFolder.Failure.notFound(name).status == 404)
    }

    @Test func aMissingFolderIsUnreadable() throws {
        let fixture = try Fixture()
        #expect(throws: ImageFolder.Failure.self) { try ImageFolder(path: fixture.base + "/nope").list() }
    }

    @Test func servesTheRepositoryWebFolder() throws {
        let root = Self.repositoryRoot + "/Web"
        let files = WebFiles(root: root)
        let index = try #require(files.file(forPath: "/"))
        #expect(index.contentType == "text/html; charset=utf-8")
        #expect(String(decoding: index.bytes, as: UTF8.self).contains("<script src=\"app.js\"></script>"))
        #expect(files.file(forPath: "/app.js")?.contentType == "text/javascript; charset=utf-8")
        #expect(files.file(forPath: "/app.css")?.contentType == "text/css; charset=utf-8")
        #expect(files.file(forPath: "/rle.js") != nil)
        for bad in ["/../Package.swift", "/missing.js", "/%2e%2e/Package.swift", "/sub/app.js"] {
            #expect(files.file(forPath: bad) == nil, "\(bad)")
        }
    }

    @Test func locatesTheWebRoot() throws {
        let fixture = try Fixture()
        // Installed layout: <prefix>/bin/probattnd and <prefix>/share/probattn/web/index.html.
        let prefix = fixture.base + "/prefix"
        try FileManager.default.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: prefix + "/share/probattn/web", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: prefix + "/bin/probattnd", contents: Data())
        _ = FileManager.default.createFile(atPath: prefix + "/share/probattn/web/index.html", contents: Data("x".utf8))
        let installed = WebFiles.locate(configured: nil, environment: [:], executable: prefix + "/bin/probattnd")
        #expect(installed?.root == FileManager.default.realPathForTests(prefix + "/share/probattn/web"))
        // Built in the source tree: .build/<triple>/debug/probattnd finds the repository's Web/.
        let built = WebFiles.locate(configured: nil, environment: [:],
                                    executable: DaemonProcess.productsFolder + "/probattnd")
        #expect(built?.root == FileManager.default.realPathForTests(Self.repositoryRoot + "/Web"))
        // The configured folder and the environment variable come first.
        #expect(WebFiles.locate(configured: fixture.folder, environment: [:])?.root
            == FileManager.default.realPathForTests(fixture.folder))
        #expect(WebFiles.locate(configured: nil, environment: [WebFiles.environmentVariable: prefix + "/share/probattn/web"],
                                executable: "/nonexistent/bin/probattnd")?.root
            == FileManager.default.realPathForTests(prefix + "/share/probattn/web"))
        #expect(WebFiles.locate(configured: nil, environment: [:], executable: "/nonexistent/bin/probattnd") == nil)
    }

    @Test func routesAnswerTheFolderAndThePageAndLeaveTheRestToTheGateway() throws {
        let fixture = try Fixture()
        let routes = WebRoutes(files: WebFiles(root: Self.repositoryRoot + "/Web"), folder: ImageFolder(path: fixture.folder))
        let listing = try #require(routes.response(method: "GET", target: "/api/v1/folder"))
        #expect(listing.status == 200 && listing.contentType == "application/json")
        let json = try #require(JSONValue.parse(listing.body))
        #expect(json["configured"]?.boolValue == true)
        #expect(json["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["a.png", "b photo.jpg", "inside-link.png"])
        let image = try #require(routes.response(method: "GET", target: "/api/v1/folder/b%20photo.jpg"))
        #expect(image.status == 200 && image.contentType == "image/jpeg")
        for bad in ["/api/v1/folder/nested%2Fc.png", "/api/v1/folder/nested/c.png", "/api/v1/folder/..%2Foutside.png",
                    "/api/v1/folder/%2E%2E", "/api/v1/folder/outside-link.png", "/api/v1/folder/%zz"] {
            let response = try #require(routes.response(method: "GET", target: bad))
            #expect(response.status == 400, "\(bad)")
            #expect(JSONValue.parse(response.body)?["error"]?["code"]?.stringValue == "bad_request", "\(bad)")
        }
        #expect(routes.response(method: "GET", target: "/api/v1/folder/notes.txt")?.status == 404)
        #expect(routes.response(method: "GET", target: "/")?.contentType == "text/html; charset=utf-8")
        #expect(routes.response(method: "HEAD", target: "/app.js?v=1")?.status == 200)
        #expect(routes.response(method: "GET", target: "/")?.cacheControl == "no-cache")
        for gateways in ["/api/v1/health", "/api/v1/images/x/ws", "/metrics", "/missing.js", "/a/b.js"] {
            #expect(routes.response(method: "GET", target: gateways) == nil, "\(gateways)")
        }
        #expect(routes.response(method: "POST", target: "/") == nil)
        #expect(routes.response(method: "POST", target: "/api/v1/folder") == nil)
    }

    @Test func withoutAFolderTheListingSaysSo() throws {
        let routes = WebRoutes(files: nil, folder: nil)
        let listing = try #require(routes.response(method: "GET", target: "/api/v1/folder"))
        #expect(JSONValue.parse(listing.body)?["configured"]?.boolValue == false)
        #expect(routes.response(method: "GET", target: "/api/v1/folder/a.png")?.status == 404)
        #expect(routes.response(method: "GET", target: "/") == nil)
    }

    @Test func configNamesTheImageFolderAndTheWebRoot() throws {
        let config = try DaemonConfig.decode(yaml: """
            http:
              listen: 127.0.0.1:5580
              image_folder: pictures
              web_root: site/web
            """)
        #expect(config.http?.imageFolder == "pictures" && config.http?.webRoot == "site/web")
        #expect(try DaemonConfig.decode(yaml: "http: {listen: \"127.0.0.1:5580\"}").http?.imageFolder == nil)
        #expect(throws: (any Error).self) {
            try DaemonConfig.decode(yaml: "http: {listen: \"127.0.0.1:5580\", image_folder: \"\"}")
        }
        #expect(throws: (any Error).self) {
            try DaemonConfig.decode(yaml: "http: {listen: \"127.0.0.1:5580\", image_dir: pictures}")
        }
    }

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }
}

extension FileManager {
    func realPathForTests(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }
}
