import Foundation
import ProbattnConfig
import ProbattnImaging
import ProbattnSession
import ProbattnWire

/// The fuzz targets: each passes one raw input to a real entry point that handles untrusted bytes. Called by the
/// libFuzzer executables in `Fuzz/` (`make fuzz`), once per generated input, and by `runCorpus` to replay files.
/// A target must never crash, trap or hang for any input; errors thrown by the entry point are the expected
/// outcome and are ignored.
public enum FuzzTargets {
    /// The byte pair that separates frames in a request-parser input (0xFF never occurs in UTF-8 text).
    public static let frameSeparator: [UInt8] = [0xFF, 0xFF]

    /// The request parser as the ZeroMQ transport calls it: the input is split into frames at `frameSeparator`,
    /// the envelope is split off, the rest is parsed with small limits, and the reply to the outcome is encoded.
    public static func requestParser(_ input: UnsafeRawBufferPointer) {
        var frames: [[UInt8]] = [[]]
        var index = input.startIndex
        while index < input.endIndex {
            if input[index] == 0xFF, index + 1 < input.endIndex, input[index + 1] == 0xFF {
                frames.append([])
                index += 2
            } else {
                frames[frames.count - 1].append(input[index])
                index += 1
            }
        }
        let (_, request) = RequestParser.splitEnvelope(frames)
        let parser = RequestParser(maxMessageBytes: 1 << 20, maxFrames: 4)
        switch parser.parse(request) {
        case .success(let parsed):
            _ = WireEncoding.replyFrames(RequestEcho(parsed), .failure(ProtocolError(.internal, "fuzz")))
        case .failure(let failure):
            _ = WireEncoding.replyFrames(failure.echo, .failure(failure.error))
        }
    }

    /// The config decoder as `probattnd validate` runs it: the input as UTF-8 text (other inputs are refused before
    /// decoding, as `DaemonConfig.load` does), decoded strictly, then every check that needs no plugins.
    public static func configDecoder(_ input: UnsafeRawBufferPointer) {
        guard input.count <= DaemonConfig.maxFileBytes,
              let text = String(validating: input, as: UTF8.self) else { return }
        do {
            let config = try DaemonConfig.decode(yaml: text)
            try config.validate(plugins: nil)
        } catch let error as ConfigError {
            precondition(error.message.count <= ConfigError.maxMessageLength, "an over-long config error line")
        } catch {}
    }

    /// The image decoders (PNG and JPEG through the C shims, BMP in Swift) as `open_image` calls them, with a
    /// 4-megapixel limit.
    public static func imageDecoders(_ input: UnsafeRawBufferPointer) {
        _ = try? ImageDecoder.decode([UInt8](input), maxPixels: 1 << 22)
    }

    /// The COCO RLE decoder: bytes 0–1 and 2–3 give the height and width (1–1024 each), the rest is the counts
    /// string.
    public static func rleDecoder(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 4 else { return }
        let height = (Int(input[0]) << 8 | Int(input[1])) % 1024 + 1
        let width = (Int(input[2]) << 8 | Int(input[3])) % 1024 + 1
        let counts = String(decoding: input.dropFirst(4), as: UTF8.self)
        let rle = COCORLE(size: [height, width], counts: counts)
        _ = try? rle.decodeBinary()
        _ = try? rle.area()
    }

    /// Replays files through `target`: every argument is a file or a folder of files (a corpus). Returns the number
    /// of inputs run. Used by the fuzz executables when built without the fuzzer, and by tests on the seed corpora.
    @discardableResult
    public static func runCorpus(_ paths: [String], _ target: (UnsafeRawBufferPointer) -> Void) -> Int {
        var count = 0
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                data.withUnsafeBytes { target($0) }
                count += 1
            }
        }
        return count
    }
}
