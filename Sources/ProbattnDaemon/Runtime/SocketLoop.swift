import Foundation
import Logging
import ProbattnConfig
import ProbattnSession
import ProbattnWire
import ProbattnZMQ
import Synchronization

/// The ZeroMQ transport: the thread that owns the daemon's ZeroMQ sockets (the ROUTER for requests and the PUB for
/// updates). It receives requests, decodes them (`RequestParser`), hands them to the session dispatcher, and sends
/// what the dispatcher's completions and update listener post to the outbox, encoded by `WireEncoding`. ZeroMQ
/// sockets are not thread-safe, so nothing else touches them; workers wake this loop through the outbox's pipe.
///
/// Shutdown: `beginDraining()` makes new requests get `shutting_down`; the loop ends once every accepted request has
/// been answered (`pending == 0` and the outbox is empty).
///
/// Secured (`access` set, docs/SECURITY.md): both sockets are CURVE servers, the ZAP handler on this thread admits
/// only the keys of the current set, and every request is checked against the set as it is when the request arrives
/// (a key removed by a reload gets `forbidden` at once) and runs as that key's principal.
/// Unchecked `Sendable`: the ZeroMQ objects (`zap`, `resultsMonitor`, `boundResults`) are touched only by the socket
/// thread, `thread` only before it starts, the rest only under `stateLock`.
final class SocketLoop: @unchecked Sendable {
    struct Endpoints: Sendable { var requests: String; var results: String }

    private let context: ZMQContext
    private let endpoints: Endpoints
    private let requests: DaemonRequests
    private let scheduler: WorkScheduler
    private let outbox: Outbox
    private let notifier: SystemdNotifier
    private let watchdogEnabled: Bool
    private let logger: Logger
    private let access: AccessControl?
    /// Owned by the socket thread (secured daemons only).
    private var zap: ZAPHandler?
    private var resultsMonitor: ZMQSocket?
    private var boundResults = ""

    private let stateLock = NSLock()
    private var parser: RequestParser
    private var draining = false
    private var announcedReady = false
    private var rebindResults = false
    private var resultsUnbound = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    /// Why the socket thread could not bind (set by that thread before it signals `start()`).
    private let startFailure = Mutex<(any Error)?>(nil)

    init(endpoints: Endpoints, limits: DaemonConfig.Limits, requests: DaemonRequests, outbox: Outbox,
         notifier: SystemdNotifier, watchdog: Bool, logger: Logger, access: AccessControl? = nil) throws {
        context = try ZMQContext()
        self.access = access
        self.endpoints = endpoints
        self.requests = requests
        scheduler = requests.dispatcher.scheduler
        self.outbox = outbox
        self.notifier = notifier
        watchdogEnabled = watchdog
        self.logger = logger
        parser = RequestParser(maxMessageBytes: limits.maxMessageBytes, maxFrames: limits.maxFrames)
    }

    /// New limits from a reload. The frame count and the message size apply to the next request; the frame cap in
    /// libzmq (`ZMQ_MAXMSGSIZE`, set by the loop) to connections made after the reload.
    func setLimits(_ limits: DaemonConfig.Limits) {
        stateLock.lock(); defer { stateLock.unlock() }
        parser = RequestParser(maxMessageBytes: limits.maxMessageBytes, maxFrames: limits.maxFrames)
    }

    /// Starts the thread; returns once both sockets are bound, or throws why they could not be.
    func start() throws {
        let bound = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            let router: ZMQSocket, publisher: ZMQSocket
            do {
                (router, publisher) = try bindSockets()
            } catch {
                startFailure.withLock { $0 = error }
                bound.signal()
                finished.signal()
                return
            }
            bound.signal()
            loop(router: router, publisher: publisher)
            router.close()
            publisher.close()
            resultsMonitor?.close()
            zap?.socket.close()
            finished.signal()
        }
        thread.name = "probattnd-sockets"
        self.thread = thread
        thread.start()
        bound.wait()
        if let error = startFailure.withLock({ $0.take() }) { throw error }
    }

    /// Called once `READY=1` went out: watchdog pings start only then (systemd expects them from a started service).
    func markReady() {
        stateLock.withLock { announcedReady = true }
    }

    /// From now on new requests get `shutting_down`; in-flight ones still get their replies.
    func beginDraining() {
        stateLock.lock()
        draining = true
        stateLock.unlock()
        outbox.post([])  // no-op post; the loop notices the flag within one poll interval
    }

    /// After a reload removed keys: the loop unbinds the results socket (dropping every subscriber) and binds it
    /// again, so that each subscriber reconnects through a new handshake and removed keys receive nothing more.
    func rebindResultsSocket() {
        stateLock.withLock { rebindResults = true }
        outbox.post([])
    }

    /// Blocks until the loop has ended (after `beginDraining()`).
    func waitUntilFinished() { finished.wait() }

    private func bindSockets() throws -> (ZMQSocket, ZMQSocket) {
        if let access { zap = try ZAPHandler(context: context, access: access, logger: logger) }
        let router = try context.socket(.router)
        try secure(router)
        try router.setLinger(1000)
        try router.setRouterMandatory(true)
        try router.setSendHighWaterMark(10_000)
        try router.setReceiveHighWaterMark(10_000)
        // A frame over the limit is refused inside libzmq, from its size field, before it is allocated: the peer is
        // disconnected (docs/PROTOCOL.md §1.4). The limit is at most 2 GiB (DaemonConfig.Limits.ranges).
        try router.setMaxMessageSize(Int64(stateLock.withLock { parser.maxMessageBytes }))
        do { try router.bind(endpoints.requests) } catch {
            throw ProtocolError(.internal, "cannot bind the request socket to \(endpoints.requests): \(error)")
        }
        let publisher = try context.socket(.pub)
        try secure(publisher)
        try publisher.setLinger(1000)
        try publisher.setSendHighWaterMark(10_000)
        do { try publisher.bind(endpoints.results) } catch {
            throw ProtocolError(.internal, "cannot bind the results socket to \(endpoints.results): \(error)")
        }
        let requests = (try? router.lastEndpoint()) ?? endpoints.requests
        let results = (try? publisher.lastEndpoint()) ?? endpoints.results
        boundResults = results
        if access != nil {
            let monitor = "inproc://probattnd-results-monitor"
            try publisher.monitor(endpoint: monitor, events: ZMQMonitorEvent.closed)
            let socket = try context.socket(.pair)
            try socket.setLinger(0)
            try socket.setReceiveTimeout(2000)
            try socket.connect(monitor)
            resultsMonitor = socket
        }
        logger.info("Sockets bound", metadata: ["requests": "\(requests)", "results": "\(results)"])
        return (router, publisher)
    }

    private func loop(router: ZMQSocket, publisher: ZMQSocket) {
        let watchdogInterval = watchdogEnabled ? notifier.watchdogInterval.map(Self.seconds) : nil
        let watchdogTimeout = notifier.watchdogTimeout.map(Self.seconds) ?? .infinity
        var lastPing = 0.0
        var frameCap = stateLock.withLock { parser.maxMessageBytes }
        let items = [ZMQPoller.Item(socket: router), ZMQPoller.Item(fileDescriptor: outbox.wakeDescriptor)]
            + (zap.map { [ZMQPoller.Item(socket: $0.socket)] } ?? [])
        while true {
            let limit = stateLock.withLock { parser.maxMessageBytes }
            if limit != frameCap {
                do { try router.setMaxMessageSize(Int64(limit)) } catch {
                    logger.error("Cannot apply the new max_message_bytes to the socket", metadata: ["error": "\(error)"])
                }
                frameCap = limit
            }
            let ready: [Bool]
            do {
                ready = try ZMQPoller.poll(items, timeoutMilliseconds: 100)
            } catch {
                logger.critical("Polling the sockets failed", metadata: ["error": "\(error)"])
                return
            }
            if ready.count > 2, ready[2] { zap?.answerPending() }
            if stateLock.withLock({ rebindResults }) { rebind(publisher) }
            send(outbox.drain(), router: router, publisher: publisher)
            if ready[0] {
                // Take what is there now, but bounded, so replies keep flowing under load.
                for _ in 0..<256 {
                    let message: (frames: [[UInt8]], userID: String?)
                    do { message = try router.receiveWithUserID(dontWait: true) } catch { break }
                    handle(message.frames, userID: message.userID, router: router)
                }
            }
            let now = Self.now()
            if let interval = watchdogInterval, now - lastPing >= interval, stateLock.withLock({ announcedReady }) {
                // Ping only while the workers make progress: a job stuck longer than the watchdog timeout means the
                // pipeline is wedged, and systemd should restart the daemon.
                if scheduler.longestRunningSeconds < watchdogTimeout {
                    notifier.watchdog()
                    lastPing = now
                } else {
                    logger.error("A pipeline job is stuck; withholding the watchdog ping")
                }
            }
            let isDraining = stateLock.withLock { draining }
            if isDraining && scheduler.pendingCount == 0 && outbox.isEmpty {
                send(outbox.drain(), router: router, publisher: publisher)
                return
            }
        }
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// One inbound message: `[routing id][envelope…][header][payload…]`. The envelope (`RequestParser.splitEnvelope`:
    /// a REQ client's delimiter, a REQ_CORRELATE id and delimiter, a proxy's routing ids and the client's delimiter)
    /// is put back in front of the reply, after the routing id.
    /// `userID` is what the ZAP handler gave the connection (its public key).
    private func handle(_ frames: [[UInt8]], userID: String?, router: ZMQSocket) {
        guard let identity = frames.first else { return }
        let (inner, body) = RequestParser.splitEnvelope(Array(frames.dropFirst()))
        let envelope = [identity] + inner
        let received = DispatchTime.now().uptimeNanoseconds
        let (parser, isDraining) = stateLock.withLock { (self.parser, draining) }
        let parsed = parser.parse(body)
        var principal: Principal?
        if let access {
            // The key set as it is now: a key removed by a reload is refused even on a connection it opened before.
            guard let key = userID, let sender = access.principal(publicKey: key) else {
                let echo: RequestEcho
                switch parsed {
                case .failure(let failure): echo = failure.echo
                case .success(let request): echo = RequestEcho(request)
                }
                let error = ProtocolError(.forbidden, "this connection's key is not (or no longer) authorized")
                requests.countRefusal(transport: "zmq", echo: echo, error: error)
                if access.shouldLogRefusal(of: userID ?? "-") {
                    logger.notice("Request refused: \(error.message) (logged once per key per 60 s)",
                                  metadata: ["request": "\(echo.requestID ?? "-")", "key": "\(userID ?? "-")",
                                             "code": "\(error.code.rawValue)"])
                }
                send([.reply(envelope: envelope, frames: WireEncoding.replyFrames(echo, .failure(error)))],
                     router: router, publisher: nil)
                return
            }
            principal = sender
        }
        switch parsed {
        case .failure(let failure):
            logger.notice("Request refused: \(failure.error.message)",
                          metadata: ["request": "\(failure.echo.requestID ?? "-")", "code": "\(failure.error.code.rawValue)"])
            requests.countRefusal(transport: "zmq", echo: failure.echo, error: failure.error)
            send([.reply(envelope: envelope, frames: WireEncoding.replyFrames(failure.echo, .failure(failure.error)))],
                 router: router, publisher: nil)
        case .success(var request):
            request.principal = principal
            if isDraining {
                let refusal = ProtocolError(.shuttingDown, "the daemon is shutting down and accepts no new requests")
                requests.countRefusal(transport: "zmq", echo: RequestEcho(request), error: refusal)
                send([.reply(envelope: envelope, frames: WireEncoding.replyFrames(RequestEcho(request), .failure(refusal)))],
                     router: router, publisher: nil)
                return
            }
            let outbox = self.outbox, replyEnvelope = envelope
            requests.submit(request, received: received, frames: { frames in
                outbox.post([.reply(envelope: replyEnvelope, frames: frames)])
            })
        }
    }

    /// CURVE server settings on a socket of a secured daemon (before it is bound); nothing for an open one.
    private func secure(_ socket: ZMQSocket) throws {
        guard let access else { return }
        try socket.setZAPDomain(ZAPHandler.domain)
        try socket.setCurveServer(secretKey: access.serverKey.secretKeyBytes)
    }

    /// Unbinds the results socket, waits (at most 2 s) for libzmq to report the listener closed (so an `ipc://`
    /// file is not removed after the new bind), and binds it again at the same endpoint. A failed bind is retried on
    /// the next turn of the loop.
    private func rebind(_ publisher: ZMQSocket) {
        let endpoint = boundResults
        if !stateLock.withLock({ resultsUnbound }) {
            while (try? resultsMonitor?.receive(dontWait: true)) != nil {}  // events from before
            do { try publisher.unbind(endpoint) } catch {
                logger.error("Cannot unbind the results socket", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
            }
            stateLock.withLock { resultsUnbound = true }
            if let monitor = resultsMonitor {
                while let event = try? ZMQMonitorEvent.receive(from: monitor),
                      !(event.event == ZMQMonitorEvent.closed && event.endpoint == endpoint) {}
            }
        }
        do {
            try publisher.bind(endpoint)
        } catch {
            logger.error("Cannot bind the results socket again; retrying", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
            return
        }
        stateLock.withLock { rebindResults = false; resultsUnbound = false }
        logger.notice("Results socket bound again: subscribers reconnect and authenticate with the current keys",
                      metadata: ["results": "\(endpoint)"])
    }

    private func send(_ messages: [Outgoing], router: ZMQSocket, publisher: ZMQSocket?) {
        for message in messages {
            switch message {
            case .reply(let envelope, let frames):
                do { try router.send(envelope + frames, dontWait: true) } catch {
                    // The peer went away (EHOSTUNREACH) or stopped reading: its reply cannot be delivered.
                    logger.warning("Reply not delivered", metadata: ["error": "\(error)"])
                }
            case .publish(let frames):
                do { try publisher?.send(frames, dontWait: true) } catch {
                    logger.warning("Update not published", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
