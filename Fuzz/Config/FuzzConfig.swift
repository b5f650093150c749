// libFuzzer target for the config decoder (FuzzTargets.configDecoder). Built by `make fuzz` with -sanitize=fuzzer and
// PROBATTN_FUZZING defined: libFuzzer's main then calls LLVMFuzzerTestOneInput with every input it generates. Built
// without them (a plain `swift build`), the executable replays the files and folders named on its command line.
import ProbattnFuzzing

#if PROBATTN_FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.configDecoder(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let count = FuzzTargets.runCorpus(Array(CommandLine.arguments.dropFirst()), FuzzTargets.configDecoder)
        print("\(count) inputs replayed through the config decoder")
    }
}
#endif
