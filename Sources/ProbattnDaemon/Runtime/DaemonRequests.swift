import Foundation
import ProbattnJSON
import ProbattnPluginHost
import ProbattnSession
import ProbattnWire

/// What every transport of the daemon calls with a decoded request: `list_plugins` is answered here (it needs the
/// plugin registry, which the session core does not know), everything else goes to the session dispatcher. The answer
/// is the protocol's reply object and payload frames, encoded by `WireEncoding`, so the ZeroMQ and HTTP transports
/// answer with the same fields. Every answer is counted in `metrics` (by transport, kind and code, with the stage
/// timings of the result).
final class DaemonRequests: Sendable {
    let dispatcher: SessionDispatcher
    let metrics: DaemonMetrics
    private let plugins: PluginRegistry?

    init(dispatcher: SessionDispatcher, plugins: PluginRegistry?, metrics: DaemonMetrics) {
        self.dispatcher = dispatcher
        self.plugins = plugins
        self.metrics = metrics
    }

    /// Runs `request`; `answer` is called exactly once with the reply object (with `ok`) and any payload frames.
    /// `transport` (`zmq`, `http`, `ws`) labels the request in the metrics.
    func submit(_ request: Request, received: UInt64, transport: String,
                answer: @escaping @Sendable (_ reply: JSONValue, _ payloads: [[UInt8]]) -> Void) {
        let echo = RequestEcho(request)
        let metrics = self.metrics
        if case .listPlugins = request.body {
            // Answered here, not by the core, so the role check is made here.
            do { _ = try Authorization.authorize(request, openedBy: { _ in nil }) } catch {
                let failure = error as? ProtocolError ?? ProtocolError(.forbidden, "\(error)")
                metrics.countRequest(transport: transport, kind: echo.kind, code: failure.code.rawValue)
                answer(WireEncoding.reply(echo, .failure(failure)), [])
                return
            }
            metrics.countRequest(transport: transport, kind: echo.kind, code: "ok")
            answer(WireEncoding.reply(echo, .success(listPlugins())), [])
            return
        }
        let format: MaskFormat
        if case .getMask(_, let f) = request.body { format = f } else { format = .rle }
        dispatcher.submit(request, received: received) { result in
            switch result {
            case .success(let value):
                metrics.recordStages(of: value)
                do {
                    let (body, payloads) = try WireEncoding.body(value, format: format)
                    metrics.countRequest(transport: transport, kind: echo.kind, code: "ok")
                    answer(WireEncoding.reply(echo, .success(body)), payloads)
                } catch {
                    let failure = error as? ProtocolError ?? ProtocolError(.internal, "\(error)")
                    metrics.countRequest(transport: transport, kind: echo.kind, code: failure.code.rawValue)
                    answer(WireEncoding.reply(echo, .failure(failure)), [])
                }
            case .failure(let error):
                metrics.countRequest(transport: transport, kind: echo.kind, code: error.code.rawValue)
                answer(WireEncoding.reply(echo, .failure(error)), [])
            }
        }
    }

    /// The same, as ZeroMQ reply frames.
    func submit(_ request: Request, received: UInt64, frames: @escaping @Sendable ([[UInt8]]) -> Void) {
        submit(request, received: received, transport: "zmq") { reply, payloads in
            frames([reply.serialized()] + payloads)
        }
    }

    /// Counts a reply the transport gave itself (a request it could not decode, or `shutting_down`).
    func countRefusal(transport: String, echo: RequestEcho, error: ProtocolError) {
        metrics.countRequest(transport: transport, kind: echo.kind, code: error.code.rawValue)
    }

    /// The `list_plugins` reply body: the same facts `probattnd plugins` prints.
    func listPlugins() -> JSONValue {
        guard let plugins else { return ["directory": .null, "plugins": [], "failures": []] }
        return [
            "directory": .string(plugins.directory),
            "plugins": .array(plugins.variants.map { variant in
                [
                    "name": .string(variant.name), "file": .string(variant.file),
                    "abi_version": .int(Int(variant.abiVersion)), "summary": .string(variant.summary),
                    "options": .array(variant.options.map { option in
                        ["name": .string(option.name), "type": .string(option.type.rawValue),
                         "default": .string(option.defaultValue), "meaning": .string(option.meaning)]
                    }),
                ]
            }),
            "failures": .array(plugins.failures.map { ["file": .string($0.file), "reason": .string($0.reason)] }),
        ]
    }
}
