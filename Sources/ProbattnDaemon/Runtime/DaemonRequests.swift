import Foundation
import ProbattnJSON
import ProbattnPluginHost
import ProbattnSession
import ProbattnWire

/// What every transport of the daemon calls with a decoded request: `list_plugins` is answered here (it needs the
/// plugin registry, which the session core does not know), everything else goes to the session dispatcher. The answer
/// is the protocol's reply object and payload frames, encoded by `WireEncoding`, so the ZeroMQ and HTTP transports
/// answer with the same fields.
final class DaemonRequests: @unchecked Sendable {
    let dispatcher: SessionDispatcher
    private let plugins: PluginRegistry?

    init(dispatcher: SessionDispatcher, plugins: PluginRegistry?) {
        self.dispatcher = dispatcher
        self.plugins = plugins
    }

    /// Runs `request`; `answer` is called exactly once with the reply object (with `ok`) and any payload frames.
    func submit(_ request: Request, received: UInt64,
                answer: @escaping @Sendable (_ reply: JSONValue, _ payloads: [[UInt8]]) -> Void) {
        let echo = RequestEcho(request)
        if case .listPlugins = request.body {
            // Answered here, not by the core, so the role check is made here.
            do { _ = try Authorization.authorize(request, openedBy: { _ in nil }) } catch {
                answer(WireEncoding.reply(echo, .failure(error as? ProtocolError ?? ProtocolError(.forbidden, "\(error)"))), [])
                return
            }
            answer(WireEncoding.reply(echo, .success(listPlugins())), [])
            return
        }
        let format: MaskFormat
        if case .getMask(_, let f) = request.body { format = f } else { format = .rle }
        dispatcher.submit(request, received: received) { result in
            switch result {
            case .success(let value):
                do {
                    let (body, payloads) = try WireEncoding.body(value, format: format)
                    answer(WireEncoding.reply(echo, .success(body)), payloads)
                } catch {
                    answer(WireEncoding.reply(echo, .failure(error as? ProtocolError
                        ?? ProtocolError(.internal, "\(error)"))), [])
                }
            case .failure(let error):
                answer(WireEncoding.reply(echo, .failure(error)), [])
            }
        }
    }

    /// The same, as ZeroMQ reply frames.
    func submit(_ request: Request, received: UInt64, frames: @escaping @Sendable ([[UInt8]]) -> Void) {
        submit(request, received: received) { reply, payloads in frames([reply.serialized()] + payloads) }
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
