import Foundation
import ProbattnClient
import ProbattnImaging
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The web annotator in a real browser (issue 15): the real probattnd with its HTTP gateway, an image folder of real
/// PNG files, and Tests/Browser/annotator_test.py driving two headless Chromium pages (Debian's chromium through
/// /usr/bin/chromedriver) as two annotators. The script prints every measurement; a browser that cannot start is a
/// failure with its reason, never a skip. Screenshots go to .build/browser-screenshots/.
@Suite(.serialized) struct WebAnnotatorBrowserTests {
    @Test(.timeLimit(.minutes(5))) func twoAnnotatorsInChromium() throws {
        let root = WebFilesTests.repositoryRoot
        let folder = DaemonProcess.makeTemporaryFolder()
        let images = folder + "/images"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: images + "/square.png", contents: Data(try TestImages.png()))
        _ = FileManager.default.createFile(atPath: images + "/three.png", contents: Data(try Self.threeRegions()))
        _ = FileManager.default.createFile(atPath: images + "/notes.txt", contents: Data("not an image\n".utf8))
        let port = try Self.freeLoopbackPort()
        let daemon = try DaemonProcess(extraYAML: """
            http:
              listen: 127.0.0.1:\(port)
              image_folder: \(images)
              web_root: \(root)/Web
            """, folder: folder)
        try daemon.start()
        defer { daemon.stop() }
        let url = "http://127.0.0.1:\(port)"
        try Self.waitForHTTP(url, timeout: 30, daemon: daemon)
        let http = try HTTPConnection(endpoint: url, timeout: 10)
        defer { http.close() }
        func get(_ target: String) throws -> HTTPClientResponse { try http.request("GET", target) }

        // The page and the image folder on the real listener, next to the gateway's own routes.
        let page = try get("/")
        #expect(page.status == 200 && page.header("content-type") == "text/html; charset=utf-8")
        #expect(try get("/app.js").status == 200)
        let listing = try get("/api/v1/folder")
        #expect(listing.json?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["square.png", "three.png"])
        let image = try get("/api/v1/folder/square.png")
        let square = try TestImages.png()
        #expect(image.status == 200 && image.body == square)
        for bad in ["/api/v1/folder/..%2Fprobattnd.yaml", "/api/v1/folder/a%2Fb.png", "/api/v1/folder/.."] {
            let refused = try get(bad)
            #expect(refused.status == 400 && refused.errorCode == "bad_request", "\(bad): \(refused.status)")
        }
        #expect(try get("/api/v1/folder/notes.txt").status == 404)
        #expect(try get("/api/v1/health").json?["ok"]?.boolValue == true)
        #expect(try get("/missing.js").errorCode == "unknown_route")

        let shots = root + "/.build/browser-screenshots"
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        let outputPath = folder + "/browser.log"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let script = Process()
        script.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        script.arguments = ["python3", root + "/Tests/Browser/annotator_test.py", "--url", url, "--folder", images,
                            "--screenshots", shots]
        script.standardOutput = output
        script.standardError = output
        let finished = DispatchSemaphore(value: 0)
        script.terminationHandler = { _ in finished.signal() }
        try script.run()
        if finished.wait(timeout: .now() + 240) == .timedOut {
            script.terminate()
            _ = finished.wait(timeout: .now() + 30)
        }
        try output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        print("---- Tests/Browser/annotator_test.py ----\n\(text)----")
        #expect(script.terminationStatus == 0 && text.contains("\nPASS"),
                "the browser test failed (status \(script.terminationStatus)):\n\(text)\nDaemon log:\n\(daemon.log.suffix(4000))")
    }

    /// 160 × 120: sky (top 70 rows), grass below, and a white disc in the sky.
    static func threeRegions() throws -> [UInt8] {
        let width = 160, height = 120
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3, n = UInt8((x * 7 + y * 13) % 9)
                let colour: (UInt8, UInt8, UInt8)
                if (x - 110) * (x - 110) + (y - 40) * (y - 40) < 18 * 18 { colour = (240, 240, 230) }
                else if y < 70 { colour = (90 + n, 150 + n, 230) }
                else { colour = (40 + n, 150 + n, 50 + n) }
                (pixels[o], pixels[o + 1], pixels[o + 2]) = colour
            }
        }
        return try ImageEncoding.png(RGBImage(width: width, height: height, pixels: pixels))
    }

    /// A port nothing listens on now (bound to 0 and released).
    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        guard bound else { throw HarnessError("bind() to 127.0.0.1:0 failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Checks that the gateway answers `GET /api/v1/health` with 200 once the daemon logged that it listens
    /// (`DaemonProcess.start` waited for "Daemon ready", which comes after the bind), failing with the daemon's log.
    static func waitForHTTP(_ endpoint: String, timeout: Double, daemon: DaemonProcess) throws {
        guard daemon.waitForLog("HTTP listening", timeout: timeout) else {
            throw HarnessError("the daemon logged no 'HTTP listening' within \(timeout) s. Log:\n\(daemon.log)")
        }
        let connection = try HTTPConnection(endpoint: endpoint, timeout: timeout)
        defer { connection.close() }
        let response = try connection.request("GET", "/api/v1/health")
        guard response.status == 200 else {
            throw HarnessError("GET /api/v1/health gave \(response.status). Log:\n\(daemon.log)")
        }
    }
}
