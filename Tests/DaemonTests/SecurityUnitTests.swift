import Foundation
@testable import ProbattnDaemon
import ProbattnConfig
import ProbattnKeys
import ProbattnSession
import ProbattnZMQ
import Testing

/// Runs a built executable (`probattn` or `probattnd`) from the products folder; returns status, stdout, stderr.
private func runTool(_ name: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: DaemonProcess.productsFolder + "/" + name)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outText = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, outText, errText)
}

private func mode(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1
}

@Suite("Keys and tokens")
struct KeyFileTests {
    @Test func generateWritesThreeFilesWithTheirModesAndListShowsThem() throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = folder + "/new/keys"  // created when missing
        let made = try runTool("probattn", ["keys", "generate", "alice", "--role", "annotate", "--out", out])
        #expect(made.status == 0, "stderr: \(made.err)")
        #expect(mode(out + "/alice.key_secret") == 0o600)
        #expect(mode(out + "/alice.token") == 0o600)
        #expect(mode(out + "/alice.key") == 0o644)
        let token = try TokenFile.load(path: out + "/alice.token")
        #expect(made.out.contains("token:       \(token)"), "the token is shown once")
        let publicFile = try PublicKeyFile.load(path: out + "/alice.key")
        #expect(publicFile.annotator == "alice" && publicFile.role == .annotate)
        #expect(publicFile.tokenSHA256 == HTTPToken.hash(token))
        #expect(!(try String(contentsOfFile: out + "/alice.key", encoding: .utf8)).contains(token),
                "the public file keeps only the token's hash")
        let secret = try SecretKeyFile.load(path: out + "/alice.key_secret")
        #expect(secret.publicKey == publicFile.publicKey)
        #expect(ZMQCurve.publicKey(forSecretKey: secret.secretKey) == publicFile.publicKey)

        let again = try runTool("probattn", ["keys", "generate", "alice", "--role", "view", "--out", out])
        #expect(again.status == 1 && again.err.contains("exists"), "never overwritten")
        #expect(try runTool("probattn", ["keys", "generate", "x", "--role", "boss", "--out", out]).status != 0)
        #expect(try runTool("probattn", ["keys", "generate", "../x", "--role", "view", "--out", out]).status != 0)
        #expect(try runTool("probattn", ["keys", "generate", "srv", "--server", "--out", out]).status == 0)

        let listed = try runTool("probattn", ["keys", "list", out])
        #expect(listed.status == 0)
        let lines = listed.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.contains { $0.hasPrefix("alice") && $0.contains("annotate") && $0.contains(publicFile.publicKey) })
        #expect(lines.contains { $0.hasPrefix("srv") && $0.contains("server") })
    }

    @Test func keyFilesAreReadStrictly() throws {
        let key = try ZMQCurve.generateKeyPair().publicKey
        #expect(throws: KeyError.self) { try PublicKeyFile.parse("public_key: \(key)\nannotator: a\n", file: "f") }
        #expect(throws: KeyError.self) { try PublicKeyFile.parse("public_key: short\n", file: "f") }
        #expect(throws: KeyError.self) {
            try PublicKeyFile.parse("public_key: \(key)\nannotator: a\nrole: boss\n", file: "f")
        }
        #expect(throws: KeyError.self) {
            try PublicKeyFile.parse("public_key: \(key)\nannotator: a\nrole: view\ncolour: red\n", file: "f")
        }
        #expect(throws: KeyError.self) {
            try PublicKeyFile.parse("public_key: \(key)\npublic_key: \(key)\n", file: "f")
        }
        let parsed = try PublicKeyFile.parse("# comment\n\npublic_key: \(key)\nannotator: a\nrole: view\n", file: "f")
        #expect(parsed.role == .view && parsed.tokenSHA256 == nil)
        #expect(try PublicKeyFile.parse("public_key: \(key)\r\nannotator: a\r\nrole: admin\r\n", file: "f").role == .admin,
                "CRLF line ends")
        let other = try ZMQCurve.generateKeyPair()
        #expect(throws: KeyError.self) {
            try SecretKeyFile.parse("public_key: \(key)\nsecret_key: \(other.secretKey)\n", file: "f")
        }
    }

    @Test func theAuthorizedSetRefusesDuplicatesAndServerKeys() throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let a = try KeyGenerator.generate(name: "a", role: .annotate, directory: folder + "/made")
        _ = try KeyGenerator.generate(name: "s", role: nil, directory: folder + "/made")
        try FileManager.default.createDirectory(atPath: folder + "/ok", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: a.publicKeyFile, toPath: folder + "/ok/a.key")
        try FileManager.default.copyItem(atPath: a.secretKeyFile, toPath: folder + "/ok/a.key_secret")  // ignored
        let set = try AuthorizedKeys.load(directory: folder + "/ok")
        #expect(set.entries.count == 1)
        #expect(set.principal(publicKey: a.publicKey) == Principal(identity: "a", role: .annotate))
        #expect(set.principal(token: try #require(a.token)) == Principal(identity: "a", role: .annotate))
        #expect(set.principal(token: String(repeating: "0", count: 64)) == nil)

        try FileManager.default.copyItem(atPath: a.publicKeyFile, toPath: folder + "/ok/a-copy.key")
        #expect(throws: KeyError.self) { try AuthorizedKeys.load(directory: folder + "/ok") }
        #expect(throws: KeyError.self) { try AuthorizedKeys.load(directory: folder + "/made") }  // s.key: a server key
        #expect(throws: KeyError.self) { try AuthorizedKeys.load(directory: folder + "/missing") }
    }
}

@Suite("ZAP handler and refusal log")
struct ZAPHandlerTests {
    private func request(mechanism: String = "CURVE", key: [UInt8]) -> [[UInt8]] {
        [Array("1.0".utf8), Array("7".utf8), Array("probattn".utf8), Array("127.0.0.1".utf8), [],
         Array(mechanism.utf8), key]
    }

    @Test func admitsOnlyKnownKeysWithTheKeyAsUserID() throws {
        let known = try ZMQCurve.generateKeyPair().publicKey
        let knownBytes = try #require(ZMQCurve.decode(known))
        let lookup: (String) -> Principal? = { $0 == known ? Principal(identity: "a", role: .view) : nil }
        let admitted = ZAPHandler.answer(request(key: knownBytes), lookup: lookup)
        #expect(admitted.refused == nil)
        #expect(admitted.reply.map { String(decoding: $0, as: UTF8.self) } == ["1.0", "7", "200", "OK", known, ""])

        let stranger = try #require(ZMQCurve.decode(try ZMQCurve.generateKeyPair().publicKey))
        let refused = ZAPHandler.answer(request(key: stranger), lookup: lookup)
        #expect(String(decoding: refused.reply[2], as: UTF8.self) == "400")
        #expect(refused.reply[4].isEmpty, "no User-Id for a refused key")
        #expect(refused.refused?.key == ZMQCurve.encode(stranger))
        #expect(String(decoding: ZAPHandler.answer(request(mechanism: "NULL", key: []), lookup: lookup).reply[2],
                       as: UTF8.self) == "400")
        #expect(String(decoding: ZAPHandler.answer([Array("0.9".utf8)], lookup: lookup).reply[2], as: UTF8.self) == "500")
    }

    @Test func refusalsAreLoggedOncePerKeyPerInterval() {
        var throttle = RefusalThrottle(interval: 60)
        let admitted = [throttle.admit("k", now: 0), throttle.admit("k", now: 59.9), throttle.admit("other", now: 10),
                        throttle.admit("k", now: 60)]
        #expect(admitted == [true, false, true, true])
        var small = RefusalThrottle(interval: 60)
        small.capacity = 4
        let flood = (0..<20).map { small.admit("key-\($0)", now: Double($0)) }
        #expect(flood.allSatisfy { $0 }, "distinct keys are each logged")
        #expect(small.count <= 4, "memory stays bounded under a flood of distinct keys")
    }
}

@Suite("Loopback rule")
struct LoopbackRuleTests {
    @Test func loopbackHostsAndLocalEndpoints() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "0:0:0:0:0:0:0:1"] {
            #expect(DaemonConfig.isLoopbackHost(host), "\(host)")
        }
        for host in ["*", "0.0.0.0", "::", "[::]", "10.0.0.1", "128.0.0.1", "eth0", "lo", "localhost.example.com",
                     "::ffff:127.0.0.1", ""] {
            #expect(!DaemonConfig.isLoopbackHost(host), "\(host)")
        }
        #expect(DaemonConfig.isLocalEndpoint("ipc:///run/probattn/requests.sock"))
        #expect(DaemonConfig.isLocalEndpoint("inproc://x"))
        #expect(DaemonConfig.isLocalEndpoint("tcp://127.0.0.1:5555"))
        #expect(DaemonConfig.isLocalEndpoint("tcp://[::1]:5555"))
        #expect(!DaemonConfig.isLocalEndpoint("tcp://*:5555"))
        #expect(!DaemonConfig.isLocalEndpoint("tcp://0.0.0.0:5555"))
    }

    @Test func validateRefusesAnOpenNonLoopbackEndpointAndAcceptsItSecured() throws {
        let folder = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try KeyGenerator.generate(name: "server", role: nil, directory: folder + "/server")
        let alice = try KeyGenerator.generate(name: "alice", role: .annotate, directory: folder + "/made")
        try FileManager.default.createDirectory(atPath: folder + "/authorized", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: alice.publicKeyFile, toPath: folder + "/authorized/alice.key")
        func validate(_ yaml: String) throws -> (status: Int32, out: String, err: String) {
            let path = folder + "/probattnd.yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            return try runTool("probattnd", ["validate", "--config", path])
        }
        let wide = "endpoints: {requests: \"tcp://0.0.0.0:5555\", results: \"tcp://127.0.0.1:5556\"}\n"
        let open = try validate(wide)
        #expect(open.status == 1)
        #expect(open.err.contains("endpoints.requests") && open.err.contains("not a loopback address"))
        #expect(try validate(wide + "security: {allow_insecure: true}\n").status == 0)
        // Relative paths: against the config file's folder.
        let secured = try validate(wide + "security: {server_secret_key: server/server.key_secret, authorized_keys: authorized}\n")
        #expect(secured.status == 0, "stderr: \(secured.err)")
        #expect(secured.out.contains("security CURVE, 1 client keys (1 annotate)"))
        #expect(try validate("endpoints: {results: \"tcp://*:5556\"}\n").err.contains("endpoints.results"))
        let wideHTTP = try validate("http: {listen: \"0.0.0.0:5580\"}\n")
        #expect(wideHTTP.status == 1 && wideHTTP.err.contains("http.listen"))
        #expect(try validate("http: {listen: \"[::1]:5580\"}\n").status == 0)
        let half = try validate("security: {authorized_keys: authorized}\n")
        #expect(half.status == 1 && half.err.contains("security.server_secret_key"))
        let missing = try validate("security: {server_secret_key: server/server.key_secret, authorized_keys: nowhere}\n")
        #expect(missing.status == 1 && missing.err.contains("does not exist"))
    }
}
