import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A message the socket thread must send: a reply on the ROUTER (with the requester's routing envelope) or an
/// update on the PUB socket.
public enum Outgoing: Sendable {
    case reply(envelope: [[UInt8]], frames: [[UInt8]])
    case publish(frames: [[UInt8]])
}

/// The hand-off from worker threads to the socket thread: a FIFO under a lock plus an eventfd the socket thread polls
/// (with `zmq_poll`) next to its sockets. One FIFO — rather than one inproc socket per worker — keeps the updates of
/// one image in the order the (serialised) jobs produced them.
public final class Outbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Outgoing] = []
    /// Readable when there is something to send.
    public let wakeDescriptor: Int32

    public init() throws {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw ProtocolError(.internal, "eventfd failed: \(String(cString: strerror(errno)))") }
        wakeDescriptor = fd
    }

    deinit { close(wakeDescriptor) }

    /// Queues messages (in order) and wakes the socket thread.
    public func post(_ messages: [Outgoing]) {
        guard !messages.isEmpty else { return }
        lock.lock()
        items.append(contentsOf: messages)
        lock.unlock()
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    /// Takes everything queued; called by the socket thread when the wake descriptor is readable (or on a timeout).
    public func drain() -> [Outgoing] {
        var counter: UInt64 = 0
        _ = read(wakeDescriptor, &counter, 8)
        lock.lock(); defer { lock.unlock() }
        let taken = items
        items.removeAll(keepingCapacity: true)
        return taken
    }

    public var isEmpty: Bool { lock.lock(); defer { lock.unlock() }; return items.isEmpty }
}
