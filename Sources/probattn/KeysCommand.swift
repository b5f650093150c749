import ArgumentParser
import Foundation
import ProbattnKeys
import ProbattnSession

/// `probattn keys`: makes and lists the CURVE keys and HTTP tokens of a secured daemon (docs/SECURITY.md).
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Generate and list client and server keys (docs/SECURITY.md).",
        subcommands: [KeysGenerateCommand.self, KeysListCommand.self])
}

/// `probattn keys generate NAME --role annotate|view|admin --out DIR` (or `--server`).
struct KeysGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write NAME.key_secret (0600), NAME.key and NAME.token (0600) into DIR.",
        discussion: """
            A client key: NAME.key_secret holds the CURVE key pair (give it to the annotator, keep it private), \
            NAME.key the public key with `annotator: NAME`, `role:` and the SHA-256 of the token (copy it into the \
            daemon's security.authorized_keys folder), NAME.token the HTTP token (shown once, here and in the file; \
            the daemon keeps only its hash). With --server, a key pair for the daemon itself: NAME.key_secret \
            (security.server_secret_key) and NAME.key (what clients connect with), no role and no token. DIR is \
            created (mode 0700) when missing; existing files are never overwritten.
            """)

    @Argument(help: "The annotator's name (1-64 of A-Z a-z 0-9 . _ -), also the file names.")
    var name: String

    @Option(help: ArgumentHelp("What the key may do: annotate, view or admin.", valueName: "role"))
    var role: String?

    @Flag(help: "Make the daemon's own key pair instead of a client key.")
    var server = false

    @Option(help: ArgumentHelp("The folder to write the files into.", valueName: "dir"))
    var out: String

    func validate() throws {
        do { try KeyName.validate(name) } catch { throw ValidationError("\(error)") }
        switch (role, server) {
        case (nil, false):
            throw ValidationError("--role is required for a client key (annotate, view or admin); use --server for the daemon's key")
        case (.some, true):
            throw ValidationError("--server keys have no role; drop --role")
        case (.some(let word), false):
            guard Principal.Role(rawValue: word) != nil else {
                throw ValidationError("--role must be one of: \(Principal.Role.allCases.map(\.rawValue).joined(separator: ", ")); found '\(word)'")
            }
        case (nil, true):
            break
        }
    }

    func run() throws {
        let generated: KeyGenerator.Generated
        do {
            generated = try KeyGenerator.generate(name: name, role: role.flatMap(Principal.Role.init(rawValue:)),
                                                  directory: out)
        } catch {
            FileHandle.standardError.write(Data("probattn keys generate: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print("public key:  \(generated.publicKey)")
        print("wrote \(generated.secretKeyFile) (secret, 0600)")
        print("wrote \(generated.publicKeyFile) (public\(server ? "; clients connect with it" : "; copy it into the daemon's authorized_keys folder"))")
        if let tokenFile = generated.tokenFile, let token = generated.token {
            print("wrote \(tokenFile) (HTTP token, 0600)")
            print("token:       \(token)")
            print("The token is shown only now; the daemon keeps its SHA-256 (in \(generated.publicKeyFile)).")
        }
    }
}

/// `probattn keys list DIR`: one line per `.key` file: name, role, public key.
struct KeysListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the public keys (.key files) of a folder: name, role, public key.")

    @Argument(help: "The folder (e.g. the daemon's security.authorized_keys).")
    var directory: String

    func run() throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { !$0.hasPrefix(".") && $0.hasSuffix("." + PublicKeyFile.fileExtension) }.sorted()
        } catch {
            FileHandle.standardError.write(Data("probattn keys list: cannot read \(directory): \(error.localizedDescription)\n".utf8))
            throw ExitCode(1)
        }
        var failed = false
        var rows: [(String, String, String, String)] = []
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                let file = try PublicKeyFile.load(path: path)
                let stem = String(name.dropLast(PublicKeyFile.fileExtension.count + 1))
                rows.append((file.annotator ?? stem, file.role?.rawValue ?? "server", file.publicKey,
                             file.tokenSHA256 == nil ? "" : "token"))
            } catch {
                FileHandle.standardError.write(Data("probattn keys list: \(error)\n".utf8))
                failed = true
            }
        }
        let width = max(4, rows.map(\.0.count).max() ?? 0)
        print("name".padding(toLength: width, withPad: " ", startingAt: 0) + "  role      public key")
        for (name, role, key, token) in rows {
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                  + role.padding(toLength: 8, withPad: " ", startingAt: 0) + "  " + key + (token.isEmpty ? "" : "  " + token))
        }
        if failed { throw ExitCode(1) }
    }
}
