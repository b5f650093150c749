import Foundation
import ProbattnClient
import ProbattnConfig
import ProbattnFuzzing
import ProbattnJSON
import ProbattnZMQ
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Hostile input within bounds (issue 18): each case is a real input against the real binary — frames over the limit,
/// YAML alias bombs, limits that would overflow, over-long and non-UTF-8 headers, long config values — and costs no
/// more than the documented limits.
@Suite("Hostile input")
struct HostileInputTests {
    /// The peak resident set (`VmHWM`) of a running process, in bytes.
    private func peakRSS(pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kB = Int(line.split(separator: " ").dropFirst().first ?? "") else {
            throw HarnessError("no VmHWM in /proc/\(pid)/status")
        }
        return kB * 1024
    }

    /// F1: one `health` request with 16 payload frames of 100 MiB against the default `max_message_bytes` (64 MiB).
    /// libzmq refuses the first payload frame from its size field and drops the connection: no reply, the daemon never
    /// holds the frames, and the next connection is served. The test sends the 100 MiB buffer 16 times without
    /// copying it (calloc's pages stay shared zero pages), so it costs the test process little as well.
    @Test func framesOverTheLimitAreRefusedBeforeTheyAreBuffered() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let frameBytes = 100 << 20
        guard let buffer = calloc(1, frameBytes) else { throw HarnessError("calloc of 100 MiB failed") }
        defer { free(buffer) }
        // Both buffers outlive the socket's context (libzmq reads them until it has let go of the message).
        let headerBytes = JSONValue.object(["protocol": 1, "request_id": "huge", "kind": "health"]).serialized()
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: headerBytes.count, alignment: 1)
        header.copyBytes(from: headerBytes)
        defer { header.deallocate() }
        do {
            // The context terminates at the end of this block, before the buffers are freed.
            let context = try ZMQContext()
            let socket = try context.socket(.dealer)
            try socket.setLinger(0)
            try socket.connect(daemon.requests)
            let payload = UnsafeRawBufferPointer(start: buffer, count: frameBytes)
            try socket.send(unownedFrames: [UnsafeRawBufferPointer(header)] + Array(repeating: payload, count: 16))
            // A new connection is answered while the first one gets nothing.
            let other = try daemon.client(timeout: 30)
            try other.request("health").checked()
            #expect(try !socket.waitReadable(timeoutMilliseconds: 1000), "no reply to the oversized request")
            socket.close()
        }
        let peak = try peakRSS(pid: daemon.pid)
        #expect(peak < 200 << 20, "daemon peak RSS \(peak >> 20) MiB")
        print("F1: daemon peak RSS \(peak >> 20) MiB after 16 × 100 MiB frames")
    }

    /// F2: a 600-byte alias bomb inside a known stage option: `validate` refuses it with the cap's line, and the
    /// validating process stays small.
    @Test func anAliasBombIsRefusedWithTheCap() throws {
        var lines = ["pipeline:", "  - role: encoder", "    type: grid_features", "    options:",
                     "      a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"]
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            lines.append("      \(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ",") + "]")
            previous = name
        }
        lines += ["  - role: adapter", "    type: attention", "  - role: propagator", "    type: belief_propagation"]
        let yaml = lines.joined(separator: "\n") + "\n"
        #expect(yaml.utf8.count < 700)
        let run = try ChildRun.validate(yaml)
        #expect(run.status == 1)
        #expect(run.errorLines.count == 1, "\(run.errorLines)")
        #expect(run.stderr.contains("more than \(DaemonConfig.maxNodes) YAML nodes after alias expansion"),
                "\(run.stderr)")
        #expect(run.peakRSS < 100 << 20, "validate peak RSS \(run.peakRSS >> 20) MiB")
        print("F2: validate peak RSS \(run.peakRSS >> 20) MiB; \(run.stderr)")
    }

    /// F3: a limit that would overflow (`max_message_bytes: 2^62`) is refused by `validate` with exit 1 and one line.
    @Test func aLimitBeyondItsBoundIsRefusedByValidate() throws {
        let run = try ChildRun.validate("limits:\n  max_message_bytes: 4611686018427387904\n")
        #expect(run.status == 1)
        #expect(run.errorLines.count == 1, "\(run.errorLines)")
        #expect(run.stderr.contains("limits.max_message_bytes: must be at most 2147483648, found 4611686018427387904 (line 2)"),
                "\(run.stderr)")
        for (key, range) in DaemonConfig.Limits.ranges {
            #expect(throws: ConfigError.self, "\(key) above \(range.upperBound) is refused") {
                try DaemonConfig.decode(yaml: "limits:\n  \(key): \(range.upperBound + 1)\n")
            }
            var config = try DaemonConfig.decode(yaml: "limits:\n  \(key): \(range.upperBound)\n")
            try config.validate(plugins: nil)
            config.limits.maxMessageBytes = Int.max
            #expect(throws: ConfigError.self, "validate checks a limit set in code") { try config.validate(plugins: nil) }
        }
    }

    /// F4 and F5: a header over 1 MiB is refused naming the limit; a UTF-16 header is `bad_header`.
    @Test func overLongAndNonUTF8HeadersAreBadHeaders() throws {
        let daemon = try DaemonProcess()
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()
        let padding = String(repeating: "x", count: 1 << 20)
        let long = JSONValue.object(["protocol": 1, "request_id": "long", "kind": "health", "pad": .string(padding)])
        try client.sendRaw([long.serialized()])
        let reply = try client.receive()
        #expect(reply.errorCode == "bad_header")
        #expect(reply.errorMessage?.contains("limited to 1048576 bytes") == true, "\(reply.errorMessage ?? "")")

        let header = String(decoding: JSONValue.object(["protocol": 1, "request_id": "u16", "kind": "health"])
            .serialized(), as: UTF8.self)
        for encoding in [String.Encoding.utf16LittleEndian, .utf16BigEndian, .utf16, .utf32LittleEndian] {
            guard let data = header.data(using: encoding) else { continue }
            try client.sendRaw([[UInt8](data)])
            let reply = try client.receive()
            #expect(reply.errorCode == "bad_header", "\(encoding): \(reply.header)")
        }
        try client.request("health").checked()
    }

    /// F6: config errors that quote a long value stay one line of at most 500 characters, with the key path and
    /// the line number.
    @Test func configErrorLinesAreCapped() throws {
        let long = String(repeating: "v", count: 600_000)
        let cases: [(yaml: String, mustContain: [String])] = [
            ("logging:\n  level: \(long)\n", ["logging.level", "(line 2)", "…"]),
            ("limits:\n  \(long.prefix(1000)): 3\n", ["(line 2)", "valid keys in limits"]),
            ("limits:\n  \(long): 3\n", ["not valid YAML: 2:"]),  // libyaml caps plain keys at 1024 characters
            ("endpoints:\n  requests: tcp://\(long)\n", ["endpoints.requests"]),
            ("pipeline:\n  - {role: encoder, type: \(long)}\n  - {role: adapter, type: attention}\n"
                + "  - {role: propagator, type: belief_propagation}\n", ["pipeline[0].type"]),
            ("limits:\n  max_frames: [\(Array(repeating: long.prefix(1000), count: 200).joined(separator: ","))]\n",
             ["limits.max_frames", "(line 2)"]),
            ("logging: {level: \"\(long)\n", ["not valid YAML"]),
            ("store:\n  image_bytes: path\n  image_root: /\(long)\n", ["store.image_root"]),
            ("pipeline:\n  - role: encoder\n    type: grid_features\n    options: {stride: \"\(long)\"}\n"
                + "  - {role: adapter, type: attention}\n  - {role: propagator, type: belief_propagation}\n",
             ["pipeline[0]", "stride"]),
        ]
        for (index, item) in cases.enumerated() {
            let run = try ChildRun.validate(item.yaml)
            #expect(run.status == 1, "case \(index)")
            #expect(run.errorLines.count == 1, "case \(index): \(run.errorLines.map { $0.prefix(200) })")
            for line in run.errorLines {
                #expect(line.count <= 500, "case \(index): \(line.count) characters: \(line.prefix(200))")
            }
            for text in item.mustContain {
                #expect(run.stderr.contains(text), "case \(index) names \(text): \(run.stderr.prefix(600))")
            }
        }
    }

    /// A config file over 1 MiB is refused before it is parsed.
    @Test func anOversizedConfigFileIsRefused() throws {
        let run = try ChildRun.validate("# " + String(repeating: "x", count: DaemonConfig.maxFileBytes) + "\n")
        #expect(run.status == 1)
        #expect(run.stderr.contains("config files are limited to 1048576 bytes"), "\(run.stderr.prefix(300))")
    }
}

/// A child process run with `posix_spawn` and reaped with `wait4`, with its own peak RSS. `posix_spawn` starts the
/// child on the test runner's memory (vfork), and Linux carries the runner's peak into the child's `ru_maxrss` at
/// exec, so the child is measured by GNU time (`/usr/bin/time`, a real fork) when it is installed (`make deps`).
struct ChildRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// Peak resident set of the child, in bytes.
    var peakRSS: Int

    /// The non-empty lines of stderr.
    var errorLines: [String] { stderr.split(separator: "\n").map(String.init) }

    /// `probattnd validate --config FILE` on `yaml` written to a temporary file.
    static func validate(_ yaml: String) throws -> ChildRun {
        let folder = DaemonProcess.makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let config = folder + "/config.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let binary = DaemonProcess.productsFolder + "/probattnd"
        let time = "/usr/bin/time"
        guard FileManager.default.isExecutableFile(atPath: time) else {
            return try run(binary, ["validate", "--config", config], folder: folder)
        }
        let peakFile = folder + "/peak"
        var measured = try run(time, ["-q", "-f", "%M", "-o", peakFile, binary, "validate", "--config", config],
                               folder: folder)
        if let text = try? String(contentsOfFile: peakFile, encoding: .utf8),
           let kib = Int(text.split(whereSeparator: \.isNewline).last ?? "") {
            measured.peakRSS = kib * 1024
        }
        return measured
    }

    static func run(_ executable: String, _ arguments: [String], folder: String) throws -> ChildRun {
        let outPath = folder + "/stdout", errPath = folder + "/stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw HarnessError("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw HarnessError("wait4: \(String(cString: strerror(errno)))") }
        }
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
        return ChildRun(status: exit,
                        stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                        stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
                        peakRSS: usage.ru_maxrss * 1024)
    }
}

/// The committed seed corpora replayed through the fuzz targets (what `make fuzz` starts from), in the ordinary build:
/// every seed runs without a crash, and each corpus is there.
@Suite("Fuzz seed corpora")
struct FuzzCorpusTests {
    private static let corpora = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus").path

    @Test func everySeedRunsThroughItsTarget() {
        let targets: [(String, (UnsafeRawBufferPointer) -> Void)] = [
            ("request", FuzzTargets.requestParser), ("config", FuzzTargets.configDecoder),
            ("image", FuzzTargets.imageDecoders), ("rle", FuzzTargets.rleDecoder),
        ]
        for (name, target) in targets {
            let count = FuzzTargets.runCorpus([Self.corpora + "/" + name], target)
            #expect(count >= 4, "\(name): \(count) seeds")
        }
    }
}
