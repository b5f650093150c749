import Foundation
import ProbattnImaging
import ProbattnJSON
import ProbattnSegmentation
import ProbattnSession
import ProbattnStages
import ProbattnWire
import Testing
import Synchronization

/// A value shared with closures that run on other threads, behind its own lock.
final class Locked<T: Sendable>: Sendable {
    private let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout T) -> R) -> R { mutex.withLock { body(&$0) } }
}

@Suite("Request parsing")
struct RequestParsingTests {
    let parser = RequestParser(maxMessageBytes: 1000, maxFrames: 3)

    private func header(_ fields: JSONValue) -> [UInt8] { fields.serialized() }

    private func code(_ frames: [[UInt8]]) -> String? {
        if case .failure(let failure) = parser.parse(frames) { return failure.error.code.rawValue }
        return nil
    }

    @Test func aValidFeedbackIsTyped() throws {
        let result = parser.parse([header(["protocol": 1, "request_id": "r1", "kind": "feedback", "image_id": "i",
                                           "annotator": "a", "clicks": [["x": 3, "y": 4, "class": "object"]]])])
        let request = try result.get()
        #expect(request.requestID == "r1")
        guard case let .feedback(imageID, annotator, clicks) = request.body else {
            Issue.record("not a feedback: \(request.body)")
            return
        }
        #expect(imageID == "i" && annotator == "a")
        #expect(clicks == [WireClick(x: 3, y: 4, className: "object")])
    }

    @Test func openImageDefaultsToObjectAndBackground() throws {
        let request = try parser.parse([header(["protocol": 1, "request_id": "r", "kind": "open_image",
                                                "image_id": "i"]), [1, 2, 3]]).get()
        guard case let .openImage(_, classes, annotator, _, publishPNG, bytes) = request.body else {
            Issue.record("not an open_image")
            return
        }
        #expect(classes == ["object", "background"])
        #expect(annotator == nil && !publishPNG && bytes == [1, 2, 3])
    }

    @Test func errorsHaveStableCodes() {
        #expect(code([]) == "bad_header")
        #expect(code([Array("{".utf8)]) == "bad_header")
        #expect(code([header(["request_id": "r", "kind": "health"])]) == "bad_request")
        #expect(code([header(["protocol": "1", "request_id": "r", "kind": "health"])]) == "bad_request")
        #expect(code([header(["protocol": 7, "request_id": "r", "kind": "health"])]) == "unsupported_protocol")
        #expect(code([header(["protocol": 1, "request_id": "", "kind": "health"])]) == "bad_request")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "dance"])]) == "unknown_kind")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "health"]), [1]]) == "bad_request")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "open_image", "image_id": "a\u{0}b"]), [1]])
                == "bad_request")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "open_image", "image_id": "i",
                              "classes": ["object"]]), [1]]) == "bad_request")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "open_image", "image_id": "i",
                              "classes": ["a", "a"]]), [1]]) == "bad_request")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "get_mask", "image_id": "i",
                              "format": "gif"])]) == "bad_request")
        #expect(code([[1], [2], [3], [4]]) == "too_many_frames")
        #expect(code([header(["protocol": 1, "request_id": "r", "kind": "health"]), [UInt8](repeating: 0, count: 1000)])
                == "message_too_large")
    }

    @Test func refusedMessagesStillEchoTheRequestID() {
        guard case .failure(let failure) = parser.parse([header(["protocol": 1, "request_id": "keep", "kind": "x"]),
                                                         [1], [2], [3]]) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.error.code == .tooManyFrames)
        #expect(failure.echo.requestID == "keep")
    }
}

@Suite("Runtime parts")
struct RuntimePartsTests {
    @Test func oneKeysJobsRunInOrderAndQueuesAreBounded() {
        let scheduler = WorkScheduler(workers: 2, perKeyLimit: 2, totalLimit: 100)
        let gate = DispatchSemaphore(value: 0)
        let order = Locked<[Int]>([])
        let started = DispatchSemaphore(value: 0)
        #expect(scheduler.submit(key: "a") { started.signal(); gate.wait(); order.withLock { $0.append(0) } })
        // Wait until a worker runs the first job, so that the next two are waiting (not running).
        #expect(started.wait(timeout: .now() + 10) == .success)
        #expect(scheduler.submit(key: "a") { order.withLock { $0.append(1) } })
        #expect(scheduler.submit(key: "a") { order.withLock { $0.append(2) } })
        #expect(!scheduler.submit(key: "a") {}, "a third waiting job exceeds the per-image depth of 2")
        let other = DispatchSemaphore(value: 0)
        #expect(scheduler.submit(key: "b") { other.signal() }, "another image is not blocked")
        #expect(other.wait(timeout: .now() + 10) == .success, "and runs while image a's job is blocked")
        gate.signal()
        scheduler.shutdown()
        #expect(order.withLock { $0 } == [0, 1, 2])
        #expect(scheduler.pendingCount == 0)
    }

    @Test func theTotalBoundRefusesToo() {
        let scheduler = WorkScheduler(workers: 1, perKeyLimit: 10, totalLimit: 2)
        let gate = DispatchSemaphore(value: 0)
        #expect(scheduler.submit(key: "a") { gate.wait() })
        #expect(scheduler.submit(key: "b") {})
        #expect(!scheduler.submit(key: "c") {})
        gate.signal()
        scheduler.shutdown()
    }

    private func prepared(bytes: Int) -> PreparedImage {
        let image = RGBImage(width: 1, height: 1, pixels: [0, 0, 0])
        let encoded = EncodedImage(image: image, tokenCount: 1, featureDimension: bytes / 4,
                                   features: [Float](repeating: 0, count: bytes / 4), grid: nil, tokenOfPixel: [0])
        return PreparedImage(encoded: encoded, adapted: AdaptedImage(unitCount: 0, keys: [], keysAdapted: false),
                             encodeSeconds: 0, adaptSeconds: 0)
    }

    @Test func theCacheEvictsTheLeastRecentlyUsed() {
        let cache = PreparedCache(budgetBytes: 10_000)
        cache.put(1, prepared(bytes: 4000))
        cache.put(2, prepared(bytes: 4000))
        _ = cache.get(1)                      // 2 is now the least recently used
        cache.put(3, prepared(bytes: 4000))   // 12 000+ bytes > budget: evict 2
        #expect(cache.contains(1) && !cache.contains(2) && cache.contains(3))
        #expect(cache.stats.evictions == 1)
        cache.put(4, prepared(bytes: 20_000))  // alone over budget: kept, everything else goes
        #expect(cache.contains(4) && !cache.contains(1) && !cache.contains(3))
    }

    @Test func sha256MatchesKnownDigests() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func topicsOfDifferentImagesAreNeverPrefixesOfEachOther() {
        let a = WireEncoding.topic("img1"), b = WireEncoding.topic("img10")
        #expect(!b.starts(with: a) && !a.starts(with: b))
    }
}

